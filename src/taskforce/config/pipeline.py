"""The loading pipeline: configuration files and roles to a desired state and its problems.

compose (load and validate the main file and what it includes) -> overrides -> resolve
-> keep what a refused entry ran -> place problems.
The legion runs it at start and on every reload; a dry run (`plan`) runs it on other text.
What validating and resolving found is kept between runs, so that a reload redoes only
what changed.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from taskforce.config import lint
from taskforce.config.errors import Problem
from taskforce.config.host import HostFacts
from taskforce.config.include import ComposedDocument, Composer
from taskforce.config.model import Config, Pick
from taskforce.config.resolve import resolve
from taskforce.config.reuse import ResolveCache
from taskforce.config.roles import Roles
from taskforce.config.shapes import Memo
from taskforce.core.spec import DesiredState
from taskforce.core.vocabulary import Control

# Temporary changes made through the control API: task -> field -> value.
Overrides = Mapping[str, Mapping[str, object]]


@dataclass(frozen=True, slots=True)
class Loaded:
    config: Config
    roles: Roles | None
    desired: DesiredState
    problems: tuple[Problem, ...]  # tasks left out because they could not be resolved
    # The composition (with its files and where each task is) or plain data, for status.
    data: object = None
    # In-scope tasks whose entry could not be resolved, with why: shown in status. One
    # that ran before keeps running as it was.
    refused: Mapping[str, str] = field(default_factory=dict)


class Pipeline:
    """Runs the pipeline on `config_file` and what it includes, remembering what earlier
    runs read, validated and resolved."""

    def __init__(self, config_file: str) -> None:
        self._memo = Memo()
        self._resolved = ResolveCache()
        # The main file and the files it includes, each read again only when changed.
        self.composer = Composer(config_file, self._memo)

    def run(
        self,
        text: str | None,
        source: str | None,
        read_roles: Callable[[], Roles | None],
        environ: Mapping[str, str],
        host: HostFacts,
        *,
        overrides: Overrides | None = None,
        previous: Loaded | None = None,
        desired_filter: Callable[[DesiredState], DesiredState] | None = None,
    ) -> Loaded:
        """The configuration (the main file's `text` named `source` when given, else read
        from disk) resolved for the roles `read_roles` gives (read once the configuration
        is known to be valid); ConfigError if unusable.
        A task whose new entry is refused keeps `previous`'s; `desired_filter` is applied
        to what resolves."""
        # Loading allocates hundreds of thousands of small acyclic objects: the cyclic
        # collector would walk the whole heap many times over for nothing.
        collecting = gc.isenabled()
        gc.disable()
        try:
            composition = self.composer.compose(text, source)
            document = composition.document
            config = with_overrides(composition.config, overrides or {})
            # An override makes new objects of the tasks it changes: then look at all.
            changes = composition.changes if config is composition.config else None
            roles = read_roles()
            desired, problems = resolve(config, roles, environ, host, self._resolved, changes)
            refused = _refused(config, desired, problems)
            if refused and previous is not None:
                desired = _keep_previous(desired, previous.desired, refused)
            if desired_filter is not None:
                desired = desired_filter(desired)
            placed = tuple(_placed(problems, document, config))
            return Loaded(config, roles, desired, placed, composition, refused)
        finally:
            if collecting:
                # What the load made and kept goes to the oldest generation at once,
                # rather than being walked by two younger collections first.
                gc.freeze()
                gc.unfreeze()
                gc.enable()

    def warnings(
        self, text: str | None, source: str | None, environ: Mapping[str, str]
    ) -> tuple[Problem, ...]:
        """Likely mistakes that do not stop the configuration from loading (see
        :mod:`taskforce.config.lint`); ConfigError when it does not load at all."""
        composition = self.composer.compose(text, source)
        # Names from environment files and included files' scopes are defined too.
        known = {**dict.fromkeys(composition.names, ""), **environ}
        return tuple(lint.warnings(composition.document, known))


def with_overrides(config: Config, overrides: Overrides) -> Config:
    if not overrides:
        return config
    tasks = dict(config.tasks)
    for name, changes in overrides.items():
        task = tasks.get(name)
        if task is None:
            continue
        control = changes.get("control", task.control)
        count = changes.get("count", task.count)
        assert isinstance(control, Control | Pick) and isinstance(count, int | str | Pick)
        tasks[name] = replace(task, control=control, count=count)
    return replace(config, tasks=tasks)


def _placed(
    problems: Iterable[Problem], document: ComposedDocument, config: Config
) -> list[Problem]:
    """Give problems found while resolving the position of the task they concern."""
    placed = []
    for problem in problems:
        if problem.mark is None and (name := _task_of(problem, config)) is not None:
            rest = problem.path[len("tasks.") :]
            tail = rest[len(name) + 1 :].split(".")[0].split("[")[0]
            at: tuple[str | int, ...] = ("tasks", name, tail) if tail else ("tasks", name)
            problem = replace(problem, source=document.source_at(at), mark=document.mark_of(at))
        elif problem.mark is None and problem.path.startswith("settings."):
            # settings.stop_timeout, settings.restart.factor: no list indexes there.
            problem = replace(problem, mark=document.mark_of(tuple(problem.path.split("."))))
        placed.append(problem)
    return placed


def _task_of(problem: Problem, config: Config) -> str | None:
    """The task a problem's key path is in (None for a top-level key)."""
    if not problem.path.startswith("tasks."):
        return None
    rest = problem.path[len("tasks.") :]
    names = [n for n in config.tasks if rest == n or rest.startswith(n + ".")]
    return max(names, key=len) if names else None


def _refused(config: Config, desired: DesiredState, problems: Iterable[Problem]) -> dict[str, str]:
    """Each in-scope task that resolving left out, with its problems (a task without one
    of its own was left out by a top-level key's)."""
    missing = [n for n in config.tasks if n not in desired.tasks and n not in desired.out_of_scope]
    if not missing:
        return {}
    own: dict[str | None, list[str]] = {}
    for problem in problems:
        own.setdefault(_task_of(problem, config), []).append(f"{problem.path}: {problem.message}")
    return {
        name: "; ".join(own.get(name) or own.get(None) or ["cannot resolve"]) for name in missing
    }


def _keep_previous(
    desired: DesiredState, previous: DesiredState, refused: Mapping[str, str]
) -> DesiredState:
    """`desired` with the tasks it refused that ran before kept as they were: a mistake
    in a task's new entry never stops what runs."""
    kept = {name: previous.tasks[name] for name in refused if name in previous.tasks}
    if not kept:
        return desired
    return replace(desired, tasks={**desired.tasks, **kept})
