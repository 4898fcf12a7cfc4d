# Over 450 lines: one job, a task's layered context and its templates' expansion (one precedence).
"""Task contexts: the environment, defines and defaults layered, then ``{name}`` substituted.

A context is a map of names to strings. It is built for each task instance from, in
order of precedence (highest first):

1. the ``Task_*`` values (name, instance, pid marker, host, roles file values, pidfile,
   cwd, user/uid, group/gid);
2. the task ``role_defines`` (active roles, in roles file order, the last one winning),
   then the task ``defines``, then the variables of the task's ``env_file``;
3. for a task of an included file, that file's ``defines``, then its ``env_file``;
4. the top-level ``role_defines``, then the top-level ``defines``, then the top-level
   ``env_file``;
5. the environment taskforce started with;
6. the task ``role_defaults``, then ``defaults``, then the included file's ``defaults``,
   then the top-level ``role_defaults``, then ``defaults`` (the first one that has a key
   wins).

Values from the configuration and the roles file are templates: ``{name}`` is replaced
by the value of ``name`` when the context has it, and everything else (unknown names,
lone braces, JSON) is kept as written. Templates may refer to other templates, to any
depth; a reference loop is a :class:`SubstitutionLoop`. Environment values (of the
environment taskforce started with, and of environment files) are literal.
The finished context is also the environment of the task's processes.

A define (or role define) that refers to its own name extends the value it overrides,
``PATH: "/opt/bin:{PATH}"``: there, ``{PATH}`` is the value the name has without this
define and the ones that override it, that is from the define it overrides (which may
extend another in turn: the map order above, a task's role defines over its defines over
the top-level role defines over the top-level defines), else the environment, else the
default that would apply. With none of these, it is kept as written, like an unknown name.
A default (or a task field, or a roles file value) that refers to its own name is a
:class:`SubstitutionLoop`, when it is used: nothing lies beneath a default.

Building is split so that the part every task shares is expanded once per resolve
(:class:`SharedContext`), the task's own layers once per task (:class:`TaskContext`) and
only what differs per instance once per instance.
"""

from __future__ import annotations

import contextlib
import re
from collections import ChainMap
from collections.abc import Container, Iterable, Iterator, Mapping
from typing import NamedTuple, TypeVar, cast

from taskforce.config.host import HostFacts, UserInfo
from taskforce.config.model import Config, FileScope, Pick, TaskConfig, Value
from taskforce.config.roles import Roles
from taskforce.core.spec import TASK_PID_MARKER

T = TypeVar("T")

REFERENCE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

# Values generated per task or per instance: they override any define of the same name.
_INSTANCE_KEYS = ("Task_name", "Task_instance", "Task_pid")
_FIELD_KEYS = {
    "pidfile": "Task_pidfile",
    "cwd": "Task_cwd",
    "user": "Task_user",
    "group": "Task_group",
}
_ALWAYS_KEYS = frozenset((*_INSTANCE_KEYS, "Task_uid", "Task_gid"))  # in every context
_TASK_KEYS = _ALWAYS_KEYS.union(_FIELD_KEYS.values())
# Names in the top-level context (that of settings), whatever the host, roles and environment.
SHARED_FACTS = frozenset(("Task_ppid", "Task_host", "Task_fqdn"))
# Names in the context of every task, likewise.
ALWAYS_PRESENT = _ALWAYS_KEYS.union(SHARED_FACTS)
# Every name taskforce generates (those of fields only when the task sets the field).
GENERATED = ALWAYS_PRESENT.union(_FIELD_KEYS.values())
# taskforce's own variables (its token, etcd password, internal state) are not inherited.
_OWN_PREFIX = "TASKFORCE_"
# Describe the user a process runs as: a task with `user` gets them from the user's entry
# (over the environment and defaults, not over defines), as login and su do.
_ACCOUNT_KEYS = ("HOME", "USER", "LOGNAME", "SHELL")


class ContextError(Exception):
    """A value that cannot be resolved; `path` is the key path it comes from."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.path = path


class SubstitutionLoop(ContextError):  # noqa: N818 (the name the design documents use)
    def __init__(self, chain: tuple[str, ...], path: str = "") -> None:
        super().__init__("substitution loop: " + " -> ".join(chain), path)
        self.chain = chain


class MultipleValuesError(ContextError):
    def __init__(self, words: list[str], path: str = "") -> None:
        shown = ", ".join(repr(w) for w in words[:5]) + (", ..." if len(words) > 5 else "")
        super().__init__(f"expands to {len(words)} values ({shown}) where one is expected", path)
        self.words = words


# --- substitution and conditional values ------------------------------------------


def substitute(template: str, context: Mapping[str, str]) -> str:
    """Replace each ``{name}`` that `context` holds by its value, in one pass."""
    if "{" not in template:
        return template
    return REFERENCE.sub(lambda m: context.get(m[1], m[0]), template)


def scalar_text(value: Value) -> str | None:
    """A scalar as a string (None as "", booleans as true/false); None for a list or map."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):  # a tuple: `int | float` is rebuilt per call
        return str(value)
    return None


def select(value: Value, present: Container[str]) -> list[Value]:
    """The scalars a conditional value chooses, in order, not yet substituted.

    A list contributes its elements; a map, the values of its keys that are `present`
    (keys are names, never substituted); None contributes nothing.
    """
    if not isinstance(value, (list, dict)):
        return [] if value is None else [value]
    out: list[Value] = []
    # A stack of iterators rather than recursion: the nesting depth is the document's.
    stack = [iter(value if isinstance(value, list) else _chosen(value, present))]
    while stack:
        for item in stack[-1]:
            if type(item) is str:  # the common case, tested first
                out.append(item)
            elif isinstance(item, list):
                stack.append(iter(item))
                break
            elif isinstance(item, dict):
                stack.append(iter(_chosen(item, present)))
                break
            elif item is not None:
                out.append(item)
        else:
            stack.pop()
    return out


def _chosen(conditional: dict[str, Value], present: Container[str]) -> list[Value]:
    return [value for key, value in conditional.items() if key in present]


def choose(value: T | Pick[T], present: Container[str], path: str) -> T | None:
    """The value of a key that takes one, for a context holding the names in `present`.

    A conditional (:class:`Pick`) that chooses nothing gives None: the key is as if not
    written. One that chooses several is a :class:`MultipleValuesError` at `path`.
    """
    if not isinstance(value, Pick):
        return value
    leaves = select(value.tree, present)
    if len(leaves) > 1:
        raise MultipleValuesError([str(scalar_text(leaf)) for leaf in leaves], path)
    return cast(T, leaves[0]) if leaves else None


def expand(value: Value, context: Mapping[str, str]) -> list[str]:
    """A value (scalar, list or conditional map) as the list of words it stands for."""
    return [
        substitute(leaf if isinstance(leaf, str) else str(scalar_text(leaf)), context)
        for leaf in select(value, context)
    ]


def expand_one(value: Value, context: Mapping[str, str]) -> str | None:
    """A value that must give at most one word: None when it gives none."""
    words = expand(value, context)
    if len(words) > 1:
        raise MultipleValuesError(words)
    return words[0] if words else None


# --- templates and their expansion ---------------------------------------------------


# The longest value a context entry may expand to: Linux's limit on one argument or
# environment string (MAX_ARG_STRLEN).
MAX_VALUE = 128 * 1024


class Template(NamedTuple):  # a NamedTuple: thousands are made per resolve, cheaply
    text: str
    origin: str  # key path, for problems
    # A define that refers to its own name: there the name is the value it overrides.
    extends: bool = False
    # What an extending define overrides: a define, or None for the bottom (the
    # environment, else a default; see `_Expansion.bottoms`).
    below: Template | None = None
    # A value from an environment file: taken as written, like the environment's.
    literal: bool = False


class _Expansion:
    """Expands templates on demand, each once, depth first, without recursion.

    `done` holds finished values (literals from the start). A template is looked up in
    `templates`, then `fallback`. The values that extending defines override but that
    are not the name's value (overridden defines, the bottom) are kept in `lower`, by
    template origin; `bottoms` gives the bottom of each name: its environment value, else
    the default that would apply.
    """

    __slots__ = ("_fallback", "_templates", "blocked", "bottoms", "done", "finished", "lower")

    def __init__(
        self,
        done: dict[str, str],
        templates: Mapping[str, Template],
        fallback: Mapping[str, Template],
        bottoms: Mapping[str, str | Template],
        track: bool = False,
    ) -> None:
        self.done = done
        self._templates = templates
        self._fallback = fallback
        self.bottoms = bottoms
        self.lower: dict[str, str] = {}
        # Names that may not be referred to yet (Task_uid while Task_user is expanded).
        self.blocked: frozenset[str] = frozenset()
        self.finished: list[str] | None = [] if track else None

    def template(self, key: str) -> Template | None:
        found = self._templates.get(key)
        return self._fallback.get(key) if found is None else found

    def value(self, key: str) -> str | None:
        if key not in self.done:
            template = self.template(key)
            if template is None:
                return None
            self._run(key, template)
        return self.done[key]

    def _run(self, root: str, template: Template) -> None:
        # The chain being expanded, each with its template, the names still to see and
        # whether it is the name's value (else a value an extending define overrides:
        # those are reached only from the define above them, so never loop by themselves).
        path = [(root, template, _references(template), True)]
        on_path = {root}
        done = self.done
        while path:
            key, template, pending, final = path[-1]
            if not pending:
                path.pop()
                if final:
                    on_path.discard(key)
                self._finish(key, template, final)
                continue
            ref = pending.pop()
            if ref == key:
                if not template.extends:
                    raise SubstitutionLoop((key, key), template.origin)
                below = self.below(key, template)
                if isinstance(below, Template) and below.origin not in self.lower:
                    path.append((key, below, _references(below), False))
                continue
            if ref in done:
                continue
            if ref in on_path:
                chain = [item[0] for item in path]
                start = chain.index(ref)
                raise SubstitutionLoop((*chain[start:], ref), path[start][1].origin)
            if ref in self.blocked:
                chain = [item[0] for item in path]
                raise SubstitutionLoop((*chain, ref, root), path[0][1].origin)
            found = self.template(ref)
            if found is not None:
                path.append((ref, found, _references(found), True))
                on_path.add(ref)

    def below(self, key: str, template: Template) -> str | Template | None:
        """What an extending define overrides: a define, an environment value, a default
        or nothing."""
        return self.bottoms.get(key) if template.below is None else template.below

    def _finish(self, key: str, template: Template, final: bool) -> None:
        if template.extends:
            below = self.below(key, template)
            if isinstance(below, Template):
                below = self.lower[below.origin]  # expanded before: `_run` saw the reference
            value = _extend(template.text, key, below, self.done)
        elif template.literal:
            value = template.text
        else:
            value = substitute(template.text, self.done)
        if "\0" in value and "\0" in value.replace(TASK_PID_MARKER, ""):
            raise ContextError(f"{key} cannot hold a NUL character", template.origin)
        if len(value) > MAX_VALUE:
            # Doubling defines grow exponentially; the kernel refuses such a word anyway.
            raise ContextError(
                f"{key} expands to {len(value)} characters, over the limit of {MAX_VALUE}",
                template.origin,
            )
        if not final:
            self.lower[template.origin] = value
            return
        self.done[key] = value
        if self.finished is not None:
            self.finished.append(key)


def _extend(text: str, key: str, own: str | None, context: Mapping[str, str]) -> str:
    """`substitute`, but `{key}` is `own` (kept as written when None)."""

    def value(match: re.Match[str]) -> str:
        found = own if match[1] == key else context.get(match[1])
        return match[0] if found is None else found

    return REFERENCE.sub(value, text)


def _references(template: Template) -> list[str]:
    """The names a template refers to, last first (they are popped)."""
    text = template.text
    return REFERENCE.findall(text)[::-1] if "{" in text and not template.literal else []


def _template(key: str, value: Value, origin: str) -> Template:
    path = f"{origin}.{key}"
    if not key or "=" in key or "\0" in key:
        raise ContextError(f"{key!r} cannot be an environment variable name", path)
    text = scalar_text(value)
    if text is None:
        raise ContextError("must be a string, number or boolean", path)
    return Template(text, path)


# A map of defines: where it is written, its values, and whether they are literal (an
# environment file's variables).
Layer = tuple[str, Mapping[str, Value], bool]


def _defines(maps: Iterable[Layer], base: Mapping[str, Template]) -> dict[str, Template]:
    """Merge define maps into one, the later maps winning.

    A define that refers to its own name extends the one it overrides: the define of an
    earlier map, else the one in `base`, else (None) the bottom.
    """
    out: dict[str, Template] = {}
    for origin, mapping, literal in maps:
        for key, value in mapping.items():
            if literal:
                out[key] = Template(str(value), f"{origin}.{key}", literal=True)
                continue
            template = _template(key, value, origin)
            # Only a reference that substitution would see: `{a b}` names nothing.
            if "{" in template.text and key in _references(template):
                below = out.get(key)
                below = base.get(key) if below is None else below
                template = Template(template.text, template.origin, True, below)
            out[key] = template
    return out


def _defaults(maps: Iterable[tuple[str, Mapping[str, Value]]]) -> dict[str, Template]:
    """Merge default maps into one, the first map that has a key winning."""
    out: dict[str, Template] = {}
    for origin, mapping in maps:
        for key, value in mapping.items():
            if key not in out:
                out[key] = _template(key, value, origin)
    return out


def _layers(
    item: Config | TaskConfig,
    active: tuple[str, ...],
    prefix: str,
    base: Mapping[str, Template],
) -> tuple[dict[str, Template], dict[str, Template]]:
    """The defines and the defaults of the configuration or of a task, each merged.

    Role maps apply in roles file order: the last role's define wins, the first role's
    default; role_defines beat defines, role_defaults come before defaults. `base` holds
    the defines that these defines override (a task's override the top-level ones).
    """
    scope = item.scope if isinstance(item, TaskConfig) else None
    if not (
        item.defines
        or item.defaults
        or item.role_defines
        or item.role_defaults
        or item.env
        or scope is not None
    ):
        return {}, {}
    role_defines = [
        (f"{prefix}role_defines.{r}", item.role_defines[r])
        for r in active
        if r in item.role_defines
    ]
    role_defaults = [
        (f"{prefix}role_defaults.{r}", item.role_defaults[r])
        for r in active
        if r in item.role_defaults
    ]
    own: list[Layer] = [
        (f"{prefix}env_file", item.env, True),
        (f"{prefix}defines", item.defines, False),
    ]
    below: list[Layer] = []
    later: list[tuple[str, Mapping[str, Value]]] = []
    if scope is not None:  # the included file holding the task
        below = [
            (f"{scope.source}: env_file", scope.env, True),
            (f"{scope.source}: defines", scope.defines, False),
        ]
        later = [(f"{scope.source}: defaults", scope.defaults)]
    role_layers: list[Layer] = [(origin, values, False) for origin, values in role_defines]
    defines = _defines([*below, *own, *role_layers], base)
    defaults = _defaults([*role_defaults, (f"{prefix}defaults", item.defaults), *later])
    return defines, defaults


def _withheld(key: str) -> bool:
    """Names never inherited from the environment: those taskforce generates (there they
    describe another process: taskforce started by a taskforce task), and taskforce's own,
    which may hold its secrets."""
    return key in _TASK_KEYS or key.startswith(("Task_role_", _OWN_PREFIX))


class _Present:
    """Whether a name will be in a context, before its values are expanded."""

    __slots__ = ("_parts",)

    def __init__(self, *parts: Container[str]) -> None:
        self._parts = parts

    def __contains__(self, key: object) -> bool:
        return any(key in part for part in self._parts)


# --- building contexts ------------------------------------------------------------------


class InstanceContext(NamedTuple):
    """One instance's context, with the task fields that were resolved along with it."""

    values: dict[str, str]  # the whole context, also the process environment
    pidfile: str | None = None
    cwd: str | None = None
    user: str | int | None = None  # as configured (an int stays an int), substituted
    group: str | int | None = None


class SharedContext:
    """What every task context of one resolve has in common, expanded once."""

    def __init__(
        self, config: Config, roles: Roles | None, environ: Mapping[str, str], host: HostFacts
    ) -> None:
        self.config = config
        self.host = host
        self.ids = str(host.uid), str(host.gid)
        # One (name, value) tuple per distinct pair of the tasks' environments: most come
        # from taskforce's own environment and are the same in every task.
        self.env_pairs: dict[tuple[str, str], tuple[str, str]] = {}
        # The variables alike in instances' environments, one tuple (see spec.Environ).
        self.env_commons: dict[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]] = {}
        # None (role processing off) and an empty roles file both apply no role_* maps.
        self.active: tuple[str, ...] = () if roles is None else roles.names
        self.error: ContextError | None = None  # a top-level problem: every task is concerned
        try:
            defines, defaults = _layers(config, self.active, "", {})
        except ContextError as err:
            self.error = err
            defines, defaults = {}, {}
        facts = {"Task_ppid": str(host.pid), "Task_host": host.hostname, "Task_fqdn": host.fqdn}
        role_values = {
            f"Task_role_{name}": Template(value, f"roles.{name}")
            for name, value in (roles.values.items() if roles is not None else ())
        }
        inherited = {k: v for k, v in environ.items() if not _withheld(k)}
        raw: dict[str, str | Template] = {
            **defaults,
            **inherited,
            **defines,
            **facts,
            **role_values,
        }
        self.templates = {k: v for k, v in raw.items() if isinstance(v, Template)}
        # A task default only fills a key that the environment and defines left absent.
        self.defined = frozenset(inherited).union(defines)
        # What extending defines extend: the top-level defines for those of a task, and
        # at the bottom the environment, else a default (a task's before these).
        self.defines = defines
        self.inherited = inherited
        self.bottoms: dict[str, str | Template] = {**defaults, **inherited}
        # Values always generated: no define or default of a task can replace them. (The
        # Task_* of a field replace a define only when the task sets that field.)
        self.reserved = _ALWAYS_KEYS.union(facts, role_values)
        literals = {k: v for k, v in raw.items() if isinstance(v, str)}
        self.done, self.unstable = self._expand(literals)

    def names(self) -> Container[str]:
        """The names in the top-level context (no task's): the environment, the top-level
        defines and defaults, role values and host facts."""
        return _Present(self.templates, self.done)

    def task(self, name: str, task: TaskConfig | None = None) -> TaskContext:
        if self.error is not None:
            raise self.error
        return TaskContext(self, name, self.config.tasks[name] if task is None else task)

    def _expand(self, literals: dict[str, str]) -> tuple[dict[str, str], tuple[str, ...]]:
        """Expand the shared templates; keep those no task or instance can change.

        A template is kept unless it refers, at any depth, to a name that some task
        defines or that differs per task (Task_name...). Those are expanded per instance.
        """
        volatile = set(_TASK_KEYS).union(_ACCOUNT_KEYS)
        scopes: dict[int, FileScope] = {}  # by identity: their maps are not hashable
        for task in self.config.tasks.values():
            # Most tasks have none of these: test before calling.
            if task.defines or task.defaults or task.env:
                volatile.update(task.defines, task.defaults, task.env)
            if task.scope is not None:
                scopes[id(task.scope)] = task.scope
            if task.role_defines or task.role_defaults:
                for maps in (task.role_defines, task.role_defaults):
                    for mapping in maps.values():
                        volatile.update(mapping)
        for scope in scopes.values():
            volatile.update(scope.defines, scope.defaults, scope.env)
        expansion = _Expansion(literals, self.templates, {}, self.bottoms, track=True)
        for key in self.templates:
            # A failure is expanded again for each task, which reports it (an override
            # in the task may even cure it).
            with contextlib.suppress(ContextError):
                expansion.value(key)
        assert expansion.finished is not None
        for key in expansion.finished:  # dependencies come first
            if any(ref in volatile for ref in self._dependencies(key)):
                volatile.add(key)
        # Sorted, so that each instance's environment is nearly sorted already.
        done = {
            k: v
            for k, v in sorted(expansion.done.items())
            if k not in volatile or k not in self.templates
        }
        return done, tuple(k for k in self.templates if k not in done)

    def _dependencies(self, key: str) -> Iterator[str]:
        """The names the value of `key` refers to, with those of the values it extends."""
        template: str | Template | None = self.templates[key]
        while isinstance(template, Template):
            refs = _references(template)
            yield from refs
            if not (template.extends and key in refs):
                return
            template = self.bottoms.get(key) if template.below is None else template.below


class TaskContext:
    """One task's layers, from which each instance's context is built."""

    def __init__(self, shared: SharedContext, name: str, task: TaskConfig) -> None:
        self._shared = shared
        self.name = name
        self._origin = f"tasks.{name}"
        over = self._layers(task)
        # Task fields as configured (one scalar each, after conditionals), and Task_* for them.
        self._fields: dict[str, str | int] = {}
        present = _Present(over, shared.templates, shared.done, _ALWAYS_KEYS)
        for field, key in _FIELD_KEYS.items():
            raw = getattr(task, field)
            value = None if raw is None else choose(raw, present, f"{self._origin}.{field}")
            if value is not None:
                self._fields[field] = value
                over[key] = Template(str(value), f"{self._origin}.{field}")
        self._over = over
        self._ids = "user" in self._fields or "group" in self._fields
        self._drop = tuple(k for k in over if k in shared.done)  # shared values it replaces

    def _layers(self, task: TaskConfig) -> dict[str, Template]:
        shared = self._shared
        defines, defaults = _layers(task, shared.active, f"{self._origin}.", shared.defines)
        # What an extending define finds at the bottom: a task default beats a top-level
        # one (the environment beats both).
        bottoms: dict[str, str | Template]
        bottoms = {k: t for k, t in defaults.items() if k not in shared.inherited}
        self._bottoms: Mapping[str, str | Template] = (
            ChainMap(bottoms, shared.bottoms) if bottoms else shared.bottoms
        )
        # Task defaults come before the top-level ones but after everything else.
        over = {k: t for k, t in defaults.items() if k not in shared.defined}
        over.update(defines)
        self._defines = frozenset(defines)
        for key in shared.reserved.intersection(over):
            del over[key]
        return over

    def instance(self, number: int) -> InstanceContext:
        """The context of instance `number`; raises :class:`ContextError`."""
        done = self._shared.done.copy()
        for key in self._drop:
            done.pop(key, None)
        done["Task_name"] = self.name
        done["Task_instance"] = str(number)
        done["Task_pid"] = TASK_PID_MARKER
        done["Task_uid"], done["Task_gid"] = self._shared.ids  # unless a user or group is set
        expansion = _Expansion(done, self._over, self._shared.templates, self._bottoms)
        user, group = self._identity(expansion) if self._ids else (None, None)
        for key in self._shared.unstable:
            expansion.value(key)
        for key in self._over:
            expansion.value(key)
        return InstanceContext(
            done,
            pidfile=self._text(expansion, "pidfile"),
            cwd=self._text(expansion, "cwd"),
            user=user,
            group=group,
        )

    def _identity(self, expansion: _Expansion) -> tuple[str | int | None, str | int | None]:
        """Resolve user, then group: Task_uid depends on the user, Task_gid on both."""
        host, done = self._shared.host, expansion.done
        user, group = self._fields.get("user"), self._fields.get("group")
        del done["Task_uid"], done["Task_gid"]  # not known yet
        gid = host.gid
        if user is None:
            done["Task_uid"] = str(host.uid)
        else:
            expansion.blocked = frozenset(("Task_uid", "Task_gid"))
            text = str(self._text(expansion, "user"))
            user = user if isinstance(user, int) else text
            info = host.user_lookup(user)
            # An unknown user is not a configuration error here: accounts can be created
            # later, so starting the task fails (and is retried) until it exists.
            if info is not None:
                done["Task_uid"], gid = str(info.uid), info.gid
                self._account(done, info)
        if group is not None:
            expansion.blocked = frozenset(("Task_gid",))
            text = str(self._text(expansion, "group"))
            group = group if isinstance(group, int) else text
            found = host.group_lookup(group)
            expansion.blocked = frozenset()
            if found is None:
                return user, group  # like an unknown user: reported when the task starts
            gid = found
        expansion.blocked = frozenset()
        if user is None or "Task_uid" in done:
            done["Task_gid"] = str(gid)
        return user, group

    def _account(self, done: dict[str, str], info: UserInfo) -> None:
        """HOME, USER, LOGNAME and SHELL of the task's user, where no define sets them."""
        values = (info.home, info.name, info.name, info.shell)
        for key, value in zip(_ACCOUNT_KEYS, values, strict=True):
            if key not in self._shared.defines and key not in self._defines:
                done[key] = value

    def _text(self, expansion: _Expansion, field: str) -> str | None:
        if field not in self._fields:
            return None
        value = expansion.value(_FIELD_KEYS[field])
        path = f"{self._origin}.{field}"
        if not value:
            raise ContextError("expands to an empty string", path)
        if TASK_PID_MARKER in value:
            raise ContextError("cannot use {Task_pid}: it is not known before the start", path)
        return value


def build_context(
    config: Config,
    task_name: str,
    roles: Roles | None,
    environ: Mapping[str, str],
    host: HostFacts,
    instance: int = 0,
) -> dict[str, str]:
    """The context of one instance of one task; raises :class:`ContextError`.

    For many tasks, use :class:`SharedContext` directly: it shares the common work.
    """
    return SharedContext(config, roles, environ, host).task(task_name).instance(instance).values
