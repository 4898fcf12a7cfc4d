"""Likely mistakes in a configuration that loads: warnings for `taskforce -C`.

A ``{NAME}`` that nothing defines is kept as written, so a misspelt name passes every
check and reaches the process as braces. These are not errors (an environment may supply
the name on another host, or the braces may be meant), but `-C` points them out:

* a ``{NAME}`` that no scope of the configuration defines (defines and defaults at any
  level, for any role), that taskforce does not generate (``Task_*``) and that the
  environment `-C` runs in does not hold; except inside a conditional on that very name
  (``{DEBUG: [-d, "{DEBUG}"]}`` is used only where DEBUG is there);
* a ``${NAME}``: substitution is written ``{NAME}``, and the ``$`` stays in the value.

Pure: the document and the environment are arguments.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from taskforce.config.context import GENERATED, REFERENCE
from taskforce.config.errors import Problem, format_path
from taskforce.config.model import Value
from taskforce.config.shapes import did_you_mean
from taskforce.config.yaml_source import Document, Path

_DOLLAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_CONTEXT_MAPS = ("defines", "defaults")
_ROLE_CONTEXT_MAPS = ("role_defines", "role_defaults")
# Names set from the roles file (`name=value` lines): any role may have one.
_ROLE_VALUE = "Task_role_"


def warnings(document: Document, environ: Mapping[str, str]) -> list[Problem]:
    """The warnings about `document` (already validated) for this environment."""
    data = document.data
    defined = _defined_names(data)
    known = defined.union(GENERATED)
    found: list[Problem] = []
    for at, text, guards in _substituted_strings(data):
        for name in _DOLLAR.findall(text):
            hint = f"'${{{name}}}': substitution is written {{{name}}}; the '$' stays in the value"
            found.append(_warning(document, at, hint))
        for name in REFERENCE.findall(_DOLLAR.sub("", text)):
            if name in known or name in environ or name in guards:
                continue
            if name.startswith(_ROLE_VALUE):
                continue
            message = (
                f"{{{name}}} is defined by no scope of the configuration nor by the "
                f"environment: it stays as written{did_you_mean(name, known)}"
            )
            found.append(_warning(document, at, message))
    return found


def _warning(document: Document, at: Path, message: str) -> Problem:
    return Problem(
        document.source_at(at), document.mark_of(at), format_path(at), f"warning: {message}"
    )


def _defined_names(data: Mapping[str, Value]) -> frozenset[str]:
    """Every name a defines or defaults map sets, at the top or in a task, for any role."""
    names: set[str] = set()
    scopes: list[object] = [data]
    tasks = data.get("tasks")
    if isinstance(tasks, dict):
        scopes.extend(tasks.values())
    for scope in scopes:
        if not isinstance(scope, dict):
            continue
        for key in _CONTEXT_MAPS:
            if isinstance(mapping := scope.get(key), dict):
                names.update(mapping)
        for key in _ROLE_CONTEXT_MAPS:
            if isinstance(roles := scope.get(key), dict):
                for mapping in roles.values():
                    if isinstance(mapping, dict):
                        names.update(mapping)
    return frozenset(names)


def _substituted_strings(data: Mapping[str, Value]) -> Iterator[tuple[Path, str, frozenset[str]]]:
    """The strings of the document that substitution reads, each with its path and the
    names of the conditional maps it is inside."""
    roots: list[tuple[Path, Value]] = [((key,), data.get(key)) for key in _CONTEXT_MAPS]
    roots += [((key,), data.get(key)) for key in _ROLE_CONTEXT_MAPS]
    settings = data.get("settings")
    if isinstance(settings, dict):
        roots.append((("settings", "output"), settings.get("output")))
    tasks = data.get("tasks")
    if isinstance(tasks, dict):
        roots += [(("tasks", name), task) for name, task in tasks.items()]
    for at, value in roots:
        yield from _strings(at, value, frozenset())


# Keys of a task or of its parts whose maps are not conditionals: their keys are words of
# the configuration (or context names being set), not names being tested.
_PLAIN_MAPS = frozenset(
    (
        *("commands", "events", "ready", "live", "schedule", "restart", "output", "onexit"),
        *_CONTEXT_MAPS,
        *_ROLE_CONTEXT_MAPS,
    )
)


def _strings(
    at: Path, value: Value, guards: frozenset[str]
) -> Iterator[tuple[Path, str, frozenset[str]]]:
    # Recursion: the loader bounds the document's depth.
    if isinstance(value, str):
        if "{" in value:
            yield at, value, guards
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings((*at, index), item, guards)
    elif isinstance(value, dict):
        conditional = not _structural(at)
        for key, item in value.items():
            inner = guards.union((key,)) if conditional else guards
            yield from _strings((*at, key), item, inner)


def _structural(at: Path) -> bool:
    """Whether the map at `at` is part of the configuration's structure (a task, its
    events, a defines map...) rather than a conditional value."""
    if len(at) <= 2:
        return True  # the top-level maps, a task, the role maps' roles
    parent = at[-1]
    if isinstance(parent, int):
        return at[-2] in ("events", "onexit")  # an event, an onexit entry
    return parent in _PLAIN_MAPS or at[-2] in _ROLE_CONTEXT_MAPS
