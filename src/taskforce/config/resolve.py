# Over 450 lines: one job, a validated configuration to this host's tasks, a helper a key.
"""Resolve a validated configuration into the tasks this host runs, fully specified.

:func:`resolve` is pure: the roles, the environment and every fact about the host are
arguments. A problem in one task (a substitution loop, a bad count, an unknown user...)
leaves that task out and is returned with the task's key path; it never raises.
"""

from __future__ import annotations

import posixpath
from collections.abc import Collection, Container, Iterable, Iterator, Mapping
from dataclasses import dataclass, fields, replace
from types import MappingProxyType
from typing import Any, TypeVar

from taskforce.config.context import (
    ContextError,
    InstanceContext,
    MultipleValuesError,
    SharedContext,
    choose,
    expand,
    expand_one,
    substitute,
)
from taskforce.config.description import BUILTIN_COMMANDS
from taskforce.config.errors import Problem
from taskforce.config.host import HostFacts, UserInfo
from taskforce.config.model import (
    Config,
    EventConfig,
    LimitsConfig,
    LiveConfig,
    Pick,
    ReadyConfig,
    RestartConfig,
    Settings,
    TaskConfig,
    Value,
)
from taskforce.config.output import resolve_output
from taskforce.config.reuse import ResolveCache, TaskChanges
from taskforce.config.roles import Roles
from taskforce.config.sockets import resolve_sockets
from taskforce.config.validate import find_cycles
from taskforce.config.yaml_source import Path
from taskforce.core.spec import (
    NO_CGROUP_LIMITS,
    NO_LIMITS,
    TASK_PID_MARKER,
    CgroupLimits,
    DesiredState,
    Environ,
    EventSpec,
    InstanceSpec,
    LaunchSpec,
    LiveSpec,
    Pair,
    Policy,
    ProcessLimits,
    ReadySpec,
    ScheduleSpec,
    TaskSpec,
)
from taskforce.core.vocabulary import (
    RUN_TO_COMPLETION,
    Control,
    EventType,
    Placement,
    RestartPolicy,
)

__all__ = ["MAX_COUNT", "HostFacts", "UserInfo", "resolve"]

# More processes than this for one task is a typo, not a plan: refuse it rather than
# exhaust memory and pids.
MAX_COUNT = 10_000

T = TypeVar("T")


def resolve(
    config: Config,
    roles: Roles | None,
    environ: Mapping[str, str],
    host: HostFacts,
    cache: ResolveCache | None = None,
    changes: TaskChanges | None = None,
) -> tuple[DesiredState, tuple[Problem, ...]]:
    """The desired state for this host, and the problems of the tasks left out of it.

    `roles` is None when role processing is off: every task is then in scope. With a
    `cache` (the same one for each load), a task whose spec cannot have changed since the
    last resolve keeps it (see :mod:`taskforce.config.reuse`); `changes`, when known, says
    which tasks' configuration objects are not those of the configuration resolved last.
    """
    reused: dict[str, TaskSpec] = {}
    todo: frozenset[str] | None = None
    if cache is not None:
        host = cache.begin(config, roles, environ, host)
        todo = cache.todo(changes)
        if todo is None:
            reused = cache.reuse_all(config.tasks)
    shared: SharedContext | None = None  # built when a task must be resolved
    active = None if roles is None else frozenset(roles.names)
    tasks: dict[str, TaskSpec] = {}
    out_of_scope: set[str] = set()
    failed: list[str] = []
    # Keyed by place and message: a top-level problem is met once per task.
    problems: dict[tuple[str, str], Problem] = {}
    for name in config.tasks if todo is None else _in_order(todo, config.tasks):
        spec = reused.get(name)
        if spec is not None:
            tasks[name] = spec
            continue
        task = config.tasks.get(name)
        if task is None:
            continue  # removed since the last resolve
        if not in_scope(task, active, config.settings.all_roles):
            out_of_scope.add(name)
            continue
        if cache is not None and (spec := cache.reuse(name, task)) is not None:
            tasks[name] = spec
            continue
        if shared is None:
            shared = SharedContext(config, roles, environ, host)
        try:
            spec = _resolve_task(shared, name, task)
        except ContextError as err:
            problem = Problem(config.source, None, err.path or f"tasks.{name}", err.message)
            problems.setdefault((problem.path, problem.message), problem)
            failed.append(name)
            continue
        tasks[name] = spec
        if cache is not None:
            cache.keep(name, task, spec)
    if cache is not None and todo is not None:
        tasks, out_of_scope = cache.merged(config.tasks, tasks, out_of_scope)
    linked = cache.linked(config.tasks) if cache is not None else _linked(config.tasks)
    # Checks between tasks, on the specs as resolved or reused (a reused spec's links may
    # lead to tasks since removed or changed); only tasks with links can fail them.
    checked = dict(tasks) if linked else tasks
    checks = (_check_links, _check_onexit_targets, _check_cycles)
    for problem in (problem for check in checks for problem in check(config, checked, linked)):
        problems.setdefault((problem.path, problem.message), problem)
    top: Container[str] = ()
    if _has_conditionals(config.settings):
        shared = shared or SharedContext(config, roles, environ, host)
        top = shared.names()
    policy = _policy(config, top, problems)
    desired = DesiredState(checked, policy, frozenset(out_of_scope))
    if cache is not None:
        desired = cache.finish(config.tasks, tasks, frozenset(failed), linked, desired)
    return desired, tuple(problems.values())


def _in_order(names: Collection[str], tasks: Mapping[str, TaskConfig]) -> Iterable[str]:
    """`names` in the order of `tasks` (which their problems are reported in), those not
    in it (removed) last."""
    if len(names) < 2:
        return names
    return [*(name for name in tasks if name in names), *(n for n in names if n not in tasks)]


def _linked(tasks: Mapping[str, TaskConfig]) -> tuple[str, ...]:
    """The tasks with `requires` or `onexit`, in order."""
    return tuple(name for name, task in tasks.items() if task.requires or task.onexit)


def in_scope(task: TaskConfig, active: frozenset[str] | None, all_roles: bool = False) -> bool:
    """Whether a task runs with these active roles (None: role processing is off): when
    one role it lists is active, or with `all_roles` every one."""
    if active is None or not task.roles:  # no `roles` (or an empty list): always
        return True
    if all_roles:
        return all(role in active for role in task.roles)
    return any(role in active for role in task.roles)


def _resolve_task(shared: SharedContext, name: str, task: TaskConfig) -> TaskSpec:
    context = shared.task(name, task)
    first = context.instance(0)
    chosen = _chosen(task, first)
    count = _count(chosen.count, first.values, f"tasks.{name}.count")
    instances = [
        _instance(
            name,
            task,
            chosen,
            first if number == 0 else context.instance(number),
            shared.config,
            shared.env_pairs,
            shared.env_commons,
        )
        for number in range(count)
    ]
    # Task-level values use instance 0's context: it exists even when count is 0.
    values, at = first.values, f"tasks.{name}"
    events = (
        _event(event, values, f"{at}.events[{index}]", task)
        for index, event in enumerate(task.events)
    )
    if task.sockets:
        sockets = resolve_sockets(task.sockets, values, at)
        instances = [
            replace(i, launch=replace(i.launch, sockets=sockets)) if sockets else i
            for i in instances
        ]
    restart = task.restart
    return TaskSpec(
        name=name,
        control=chosen.control,
        instances=tuple(instances),
        requires=_requires(task, values, f"{at}.requires") if task.requires else (),
        start_delay=chosen.start_delay,
        time_limit=chosen.time_limit,
        onexit_start=_onexit(task, values, at) if task.onexit else (),
        events=tuple(event for event in events if event is not None),
        ready=_ready(task.ready, values, f"{at}.ready"),
        cluster=chosen.placement is Placement.CLUSTER,
        live=_live(task, chosen.control, values, f"{at}.live"),
        schedule=_schedule(task, chosen.control, at),
        restart=_restart(task.restart, values, f"{at}.restart") if task.restart else (),
        rolling=restart.rolling if restart is not None else None,
        overlap=restart is not None and restart.overlap,
        memory_restart=task.memory_restart,
    )


def _schedule(task: TaskConfig, control: Control, at: str) -> ScheduleSpec | None:
    if task.schedule is not None and control not in RUN_TO_COMPLETION:
        raise ContextError(
            f"a schedule runs a once or event task, and this one's control is {control} here",
            f"{at}.schedule",
        )
    return task.schedule


def _restart(
    restart: RestartConfig, context: Container[str], at: str
) -> tuple[tuple[str, float | int | None], ...]:
    """A task's own restart keys (those written and chosen here), in the task's context."""
    chosen = ((key, choose(getattr(restart, key), context, f"{at}.{key}")) for key in _RESTART_KEYS)
    return tuple((key, _restart_value(key, value)) for key, value in chosen if value is not None)


def _restart_value(key: str, value: float | int) -> float | int:
    return int(value) if key == "max_failures" else float(value)


def _requires(task: TaskConfig, context: Mapping[str, str], path: str) -> tuple[str, ...]:
    """The tasks `task` requires here: a list whose conditionals give any number of names.
    (That they exist is checked once all are resolved: see :func:`_check_links`.)"""
    names = expand(list(task.requires), context)
    if task.name in names:
        raise ContextError("a task cannot require itself", path)
    return tuple(dict.fromkeys(names))


def _onexit(task: TaskConfig, context: Mapping[str, str], at: str) -> tuple[str, ...]:
    """The tasks to start when `task` has exited: an entry whose target chooses nothing
    here is as if not written. (That each exists and is a once task is checked once all
    are resolved.)"""
    targets = []
    for index, entry in enumerate(task.onexit):
        target = choose(entry.task, context, f"{at}.onexit[{index}].task")
        if entry.type == "start" and target is not None:
            targets.append(substitute(target, context))
    return tuple(targets)


def _check_links(
    config: Config, tasks: dict[str, TaskSpec], linked: Iterable[str]
) -> Iterator[Problem]:
    """Leave out (with a problem) each task that requires or starts a task that does not
    exist: a name that substitution gave, or that a reload removed. (`linked`: the tasks
    with requires or onexit, in order; the others have nothing to check.)"""
    for name in linked:
        spec = tasks.get(name)
        if spec is None or not (spec.requires or spec.onexit_start):
            continue
        for required in spec.requires:
            if required not in config.tasks:
                path = f"tasks.{name}.requires"
                break
        else:
            missing = [target for target in spec.onexit_start if target not in config.tasks]
            if not missing:
                continue
            required = missing[0]
            path = _onexit_path(config.tasks[name], required)
        yield Problem(config.source, None, path, f"there is no task {required!r}")
        del tasks[name]


def _check_onexit_targets(
    config: Config, tasks: dict[str, TaskSpec], linked: Iterable[str]
) -> Iterator[Problem]:
    """Leave out (with a problem) each task whose onexit starts a task that is not a once
    task here. Only a target whose `control` is conditional is looked at: a plain one is
    checked when the file is loaded (and a temporary control override does not count)."""
    starting = [(name, spec) for name in linked if (spec := tasks.get(name)) is not None]
    for name, spec in [(name, spec) for name, spec in starting if spec.onexit_start]:
        for target in spec.onexit_start:
            other = tasks.get(target)
            configured = config.tasks[target].control  # it exists: see _check_links
            if other is None or not isinstance(configured, Pick):
                continue  # out of scope or left out: nothing will be started
            if other.control is not Control.ONCE:
                yield Problem(
                    config.source,
                    None,
                    _onexit_path(config.tasks[name], target),
                    f"onexit can only start a 'once' task, and {target!r} has control "
                    f"{other.control.value!r} here",
                )
                del tasks[name]
                break


def _check_cycles(
    config: Config, tasks: dict[str, TaskSpec], linked: Iterable[str]
) -> list[Problem]:
    """Leave out (with a problem) the tasks of each requires cycle that conditionals make
    here. (A cycle of plain names is refused when the file is loaded.)"""
    linked = list(linked)
    if all(
        isinstance(item, str)
        for name in linked
        if (task := config.tasks[name]).requires
        for item in task.requires
    ):
        return []
    edges: dict[str, list[tuple[Path, str]]] = {
        name: [(("tasks", name, "requires"), other) for other in spec.requires if other in tasks]
        for name in linked
        if (spec := tasks.get(name)) is not None
    }
    found: dict[str, Problem] = {}
    for cycle, _ in find_cycles(edges):
        message = f"requires cycle here: {' -> '.join((*cycle, cycle[0]))}"
        for name in cycle:
            found.setdefault(name, Problem(config.source, None, f"tasks.{name}.requires", message))
    for name in found:
        del tasks[name]
    return list(found.values())


def _onexit_path(task: TaskConfig, target: str) -> str:
    """Where `task`'s onexit entry for `target` is written (the first that may give it)."""
    found = [index for index, entry in enumerate(task.onexit) if entry.task == target]
    # Else one whose target is chosen or substituted.
    found += [
        index
        for index, entry in enumerate(task.onexit)
        if isinstance(entry.task, Pick) or "{" in entry.task
    ]
    return f"tasks.{task.name}.onexit[{found[0]}].task" if found else f"tasks.{task.name}.onexit"


_SETTINGS_DEFAULTS = Settings()
_POLICY_KEYS = ("stop_timeout", "check_interval", "check_timeout", "start_timeout")
_RESTART_KEYS = tuple(field.name for field in fields(RestartPolicy))


def _has_conditionals(settings: Settings) -> bool:
    return any(isinstance(getattr(settings, key), Pick) for key in _POLICY_KEYS) or any(
        isinstance(getattr(settings.restart, key), Pick) for key in _RESTART_KEYS
    )


def _policy(
    config: Config, top: Container[str], problems: dict[tuple[str, str], Problem]
) -> Policy:
    """The supervisor-wide settings, conditionals chosen with the names of the top-level
    context (`top`): settings belong to no task. One that gives several values is a
    problem, and its default is used."""

    def one(owner: object, key: str, path: str) -> float | int | None:
        value = getattr(owner, key)
        try:
            found = choose(value, top, path)
        except ContextError as err:
            problem = Problem(config.source, None, err.path, err.message)
            problems.setdefault((problem.path, problem.message), problem)
            found = None
        return None if found is None else _restart_value(key, found)

    settings = config.settings
    written: dict[str, Any] = {}
    for key in _RESTART_KEYS:
        value = one(settings.restart, key, f"settings.restart.{key}")
        if value is not None:
            written[key] = value
    restart = RestartPolicy(**written)
    timing: dict[str, float] = {}
    for key in _POLICY_KEYS:
        value = one(settings, key, f"settings.{key}")
        timing[key] = float(getattr(_SETTINGS_DEFAULTS, key) if value is None else value)
    return Policy(restart=restart, memory_check_interval=settings.memory_check_interval, **timing)


@dataclass(frozen=True, slots=True)
class _Chosen:
    """The keys of a task that take one value and are not part of its context (those are
    chosen with it), as chosen for that context."""

    control: Control
    count: int | str
    procname: str | None
    start_delay: float
    time_limit: float | None
    placement: Placement


def _chosen(task: TaskConfig, first: InstanceContext) -> _Chosen:
    """The value of each key of `task` that may be a conditional, for instance 0's context
    (every instance's has the same names). A conditional that chooses nothing: the key is
    as if it were not written."""

    def one(key: str, value: T | Pick[T], default: T) -> T:
        found = choose(value, first.values, f"tasks.{task.name}.{key}")
        return default if found is None else found

    one_process: int | str = 1

    chosen = _Chosen(
        control=one("control", task.control, Control.WAIT),
        count=one("count", task.count, one_process),
        procname=one("procname", task.procname, None),
        start_delay=one("start_delay", task.start_delay, 0.0),
        time_limit=one("time_limit", task.time_limit, None),
        placement=one("placement", task.placement, Placement.HOST),
    )
    if chosen.control in (Control.NOWAIT, Control.ADOPT) and first.pidfile is None:
        raise ContextError(
            f"a {chosen.control} task is found through its pidfile, and none is chosen here",
            f"tasks.{task.name}.pidfile",
        )
    return chosen


def _ready(ready: ReadyConfig | None, context: Mapping[str, str], at: str) -> ReadySpec | None:
    """The readiness probe: none when the probe's key chooses nothing here (a command,
    nothing at all), as if `ready` were not written."""
    if ready is None:
        return None
    probe = _probe(ready, context, at)
    if probe is None and choose(ready.pidfile, context, f"{at}.pidfile"):
        probe = "pidfile", ""
    if probe is None:
        return None
    kind, target = probe
    interval = choose(ready.interval, context, f"{at}.interval")
    timeout = choose(ready.timeout, context, f"{at}.timeout")
    return ReadySpec(
        kind, target, _DEFAULT_READY.interval if interval is None else interval, timeout
    )


_DEFAULT_READY = ReadySpec("command")  # its interval


def _probe(
    probe: ReadyConfig | LiveConfig, context: Mapping[str, str], at: str
) -> tuple[str, str] | None:
    """The kind and target of a `ready` or `live` probe's tcp, http or command key (the
    first chosen here), or None."""
    tcp = choose(probe.tcp, context, f"{at}.tcp")
    http = choose(probe.http, context, f"{at}.http")
    if tcp is not None:
        return "tcp", substitute(tcp, context)
    if http is not None:
        return "http", substitute(http, context)
    if probe.command is not None and expand(probe.command, context):
        return "command", ""
    return None


_DEFAULT_LIVE = LiveSpec("command")


def _live(
    task: TaskConfig, control: Control, context: Mapping[str, str], at: str
) -> LiveSpec | None:
    """The liveness probe: none when its key chooses nothing here, as if not written."""
    live = task.live
    if live is None:
        return None
    if control is not Control.WAIT:
        raise ContextError(
            f"a liveness probe watches a wait task, and this one's control is {control} here", at
        )
    probe = _probe(live, context, at)
    if probe is None:
        return None

    def number(key: str, default: float | None) -> float | None:
        value = choose(getattr(live, key), context, f"{at}.{key}")
        return default if value is None else float(value)

    interval = number("interval", _DEFAULT_LIVE.interval)
    timeout = number("timeout", _DEFAULT_LIVE.timeout)
    assert interval is not None and timeout is not None
    return LiveSpec(
        probe[0],
        probe[1],
        interval,
        timeout,
        _DEFAULT_LIVE.failures if live.failures is None else live.failures,
        number("initial_delay", None),
    )


def _count(count: int | str, context: Mapping[str, str], path: str) -> int:
    if type(count) is int and 0 <= count <= MAX_COUNT:  # the usual case, first
        return count
    if isinstance(count, bool):  # YAML `true` is an int to Python
        raise ContextError("must be a whole number", path)
    if isinstance(count, str):
        text = substitute(count, context).strip()
        if not (text.isascii() and text.isdigit()) or len(text) > len(str(MAX_COUNT)):
            shown = text.replace(TASK_PID_MARKER, "{Task_pid}")
            raise ContextError(f"must be a whole number, 0 or more: got {shown!r}", path)
        count = int(text)
    if not 0 <= count <= MAX_COUNT:
        raise ContextError(f"must be between 0 and {MAX_COUNT}: got {count}", path)
    return count


# The variables that differ from one instance to the next: the rest of an instance's
# environment is shared (see spec.Environ).
_OWN_ENV = frozenset(("Task_name", "Task_instance"))
# The other commands of an instance whose task has only `start` (most): one empty map.
_NO_COMMANDS: Mapping[str, tuple[str, ...]] = MappingProxyType({})


def _instance(
    name: str,
    task: TaskConfig,
    chosen: _Chosen,
    context: InstanceContext,
    config: Config,
    env_pairs: dict[tuple[str, str], tuple[str, str]],
    env_commons: dict[tuple[Pair, ...], tuple[Pair, ...]],
) -> InstanceSpec:
    values = context.values
    start_path = f"tasks.{name}.commands.start"
    argv = expand(task.commands.get("start"), values)
    if not argv:
        raise ContextError("the start command expands to nothing", start_path)
    if not argv[0]:
        raise ContextError("the program name expands to an empty string", start_path)
    program = argv[0]
    if chosen.procname is not None:
        procname = _one(chosen.procname, values, f"tasks.{name}.procname")
        if procname is not None:
            argv[0] = procname
    commands: Mapping[str, tuple[str, ...]] = _NO_COMMANDS
    if len(task.commands) > 1:
        named: dict[str, tuple[str, ...]] = {}
        for command, value in task.commands.items():
            # A command that a conditional reduces to nothing is simply not defined here.
            if command != "start" and (words := expand(value, values)):
                named[command] = tuple(words)
        commands = named or _NO_COMMANDS
    launch = LaunchSpec(
        program=program,
        argv=tuple(argv),
        env=Environ.split(
            [env_pairs.setdefault(pair, pair) for pair in sorted(values.items())],
            _OWN_ENV,
            env_commons,
        ),
        cwd=context.cwd,
        user=context.user,
        group=context.group,
        no_new_privs=task.no_new_privs,
        limits=_process_limits(task),
        cgroup=_cgroup_limits(task.limits),
    )
    ready_command = live_command = None
    if task.ready is not None and task.ready.command is not None:
        ready_command = tuple(expand(task.ready.command, values)) or None
    if task.live is not None and task.live.command is not None:
        live_command = tuple(expand(task.live.command, values)) or None
    output = resolve_output(
        task.output,
        config.settings.output,
        values,
        posixpath.dirname(config.source),
        f"tasks.{name}.output",
    )
    return InstanceSpec(
        launch=launch,
        commands=commands,
        pidfile=context.pidfile,
        output=output,
        ready_command=ready_command,
        live_command=live_command,
    )


def _process_limits(task: TaskConfig) -> ProcessLimits:
    if (task.limits, task.umask, task.nice, task.oom_score_adj) == (None, None, None, None):
        return NO_LIMITS
    return ProcessLimits(
        rlimits=() if task.limits is None else task.limits.rlimits,
        umask=task.umask,
        nice=task.nice,
        oom_score_adj=task.oom_score_adj,
    )


def _cgroup_limits(limits: LimitsConfig | None) -> CgroupLimits:
    if limits is None or (limits.memory is None and limits.cpu is None and limits.pids is None):
        return NO_CGROUP_LIMITS
    return CgroupLimits(memory=limits.memory, cpu=limits.cpu, pids=limits.pids)


def _one(value: Value, context: Mapping[str, str], path: str) -> str | None:
    try:
        text = expand_one(value, context)
    except MultipleValuesError as err:
        err.path = path
        raise
    if text == "":
        raise ContextError("expands to an empty string", path)
    return text


def _event(
    event: EventConfig, context: Mapping[str, str], at: str, task: TaskConfig
) -> EventSpec | None:
    """The event as it applies here; None when its command or signal chooses nothing (the
    event then does nothing)."""
    command = choose(event.command, context, f"{at}.command")
    signal = choose(event.signal, context, f"{at}.signal")
    if command is None and signal is None:
        return None
    if command is not None:
        command = substitute(command, context)
        if command not in task.commands and command not in BUILTIN_COMMANDS:
            raise ContextError(f"the task has no command {command!r}", f"{at}.command")
    path = f"{at}.path"
    paths: tuple[str, ...] = ()
    if event.type is EventType.FILE_CHANGE:
        paths = tuple(expand(event.path, context))
        for item in paths:
            if not item:
                raise ContextError("a path expands to an empty string", path)
            if TASK_PID_MARKER in item:
                raise ContextError("cannot use {Task_pid}: it is not known before the start", path)
    return EventSpec(type=event.type, paths=paths, command=command, signal=signal)
