"""Resolve a validated configuration into the tasks this host runs, fully specified.

:func:`resolve` is pure: the roles, the environment and every fact about the host are
arguments. A problem in one task (a substitution loop, a bad count, an unknown user...)
leaves that task out and is returned with the task's key path; it never raises.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

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
from taskforce.config.errors import Problem
from taskforce.config.host import HostFacts, UserInfo
from taskforce.config.model import (
    Config,
    EventConfig,
    Pick,
    ReadyConfig,
    TaskConfig,
    Value,
)
from taskforce.config.output import resolve_output
from taskforce.config.reuse import ResolveCache
from taskforce.config.roles import Roles
from taskforce.core.spec import (
    TASK_PID_MARKER,
    DesiredState,
    EventSpec,
    InstanceSpec,
    LaunchSpec,
    Policy,
    ReadySpec,
    TaskSpec,
)
from taskforce.core.vocabulary import Control, EventType, Placement

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
) -> tuple[DesiredState, tuple[Problem, ...]]:
    """The desired state for this host, and the problems of the tasks left out of it.

    `roles` is None when role processing is off: every task is then in scope. With a
    `cache` (the same one for each load), a task whose spec cannot have changed since the
    last resolve keeps it (see :mod:`taskforce.config.reuse`).
    """
    if cache is not None:
        host = cache.begin(config, roles, environ, host)
    shared: SharedContext | None = None  # built when a task must be resolved
    active = None if roles is None else frozenset(roles.names)
    tasks: dict[str, TaskSpec] = {}
    out_of_scope: set[str] = set()
    # Keyed by place and message: a top-level problem is met once per task.
    problems: dict[tuple[str, str], Problem] = {}
    for name, task in config.tasks.items():
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
            continue
        tasks[name] = spec
        if cache is not None:
            cache.keep(name, task, spec)
    settings = config.settings
    policy = Policy(
        restart=settings.restart,
        stop_timeout=settings.stop_timeout,
        check_interval=settings.check_interval,
        check_timeout=settings.check_timeout,
        start_timeout=settings.start_timeout,
    )
    return DesiredState(tasks, policy, frozenset(out_of_scope)), tuple(problems.values())


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
            name, task, chosen, first if number == 0 else context.instance(number), shared.config
        )
        for number in range(count)
    ]
    # Task-level values use instance 0's context: it exists even when count is 0.
    events = [
        _event(event, first.values, f"tasks.{name}.events[{index}].path")
        for index, event in enumerate(task.events)
    ]
    return TaskSpec(
        name=name,
        control=chosen.control,
        instances=tuple(instances),
        requires=task.requires,
        start_delay=chosen.start_delay,
        time_limit=chosen.time_limit,
        onexit_start=tuple(item.task for item in task.onexit if item.type == "start"),
        events=tuple(events),
        ready=_ready(task.ready, first.values),
        cluster=chosen.placement is Placement.CLUSTER,
    )


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


def _ready(ready: ReadyConfig | None, context: Mapping[str, str]) -> ReadySpec | None:
    if ready is None:
        return None
    if ready.tcp is not None:
        kind, target = "tcp", substitute(ready.tcp, context)
    elif ready.http is not None:
        kind, target = "http", substitute(ready.http, context)
    elif ready.pidfile:
        kind, target = "pidfile", ""
    else:
        kind, target = "command", ""
    return ReadySpec(kind, target, ready.interval, ready.timeout)


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


def _instance(
    name: str, task: TaskConfig, chosen: _Chosen, context: InstanceContext, config: Config
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
    commands: dict[str, tuple[str, ...]] = {}
    if len(task.commands) > 1:
        for command, value in task.commands.items():
            # A command that a conditional reduces to nothing is simply not defined here.
            if command != "start" and (words := expand(value, values)):
                commands[command] = tuple(words)
    launch = LaunchSpec(
        program=program,
        argv=tuple(argv),
        env=tuple(sorted(values.items())),
        cwd=context.cwd,
        user=context.user,
        group=context.group,
        no_new_privs=task.no_new_privs,
    )
    ready_command = None
    if task.ready is not None and task.ready.command is not None:
        ready_command = tuple(expand(task.ready.command, values)) or None
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
    )


def _one(value: Value, context: Mapping[str, str], path: str) -> str | None:
    try:
        text = expand_one(value, context)
    except MultipleValuesError as err:
        err.path = path
        raise
    if text == "":
        raise ContextError("expands to an empty string", path)
    return text


def _event(event: EventConfig, context: Mapping[str, str], path: str) -> EventSpec:
    paths: tuple[str, ...] = ()
    if event.type is EventType.FILE_CHANGE:
        paths = tuple(expand(event.path, context))
        for item in paths:
            if not item:
                raise ContextError("a path expands to an empty string", path)
            if TASK_PID_MARKER in item:
                raise ContextError("cannot use {Task_pid}: it is not known before the start", path)
    return EventSpec(type=event.type, paths=paths, command=event.command, signal=event.signal)
