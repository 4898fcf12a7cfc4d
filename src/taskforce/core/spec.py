"""Resolved, per-host task specifications: what the planner wants running.

A :class:`TaskSpec` is the outcome of resolving one task's configuration for the active
roles, the environment and the host. Its :class:`LaunchSpec` per instance holds every
input that shapes a running process, so that comparing two specs by value says whether
a process must be restarted after a reload; everything else on :class:`TaskSpec` can
change under a running process.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast, overload

from taskforce.core.sockets import SocketSpec
from taskforce.core.vocabulary import Control, EventType, Overlap, RestartPolicy

# The process id is only known once the process exists. Resolution leaves this marker
# wherever `{Task_pid}` was substituted; the process layer replaces it with the real pid
# (in the child, just before exec, or with the running pid for commands run later).
# NUL can never occur in a real argument or environment value.
TASK_PID_MARKER = "\0Task_pid\0"

# An rlimit value meaning no limit (RLIM_INFINITY to the runtime).
UNLIMITED = -1


@dataclass(frozen=True, slots=True)
class ProcessLimits:
    """What a task's process is given before exec, beyond its credentials."""

    # (name, soft, hard) by the names of `limits` (nofile, as, cpu_time...); UNLIMITED.
    rlimits: tuple[tuple[str, int, int], ...] = ()
    umask: int | None = None
    nice: int | None = None
    oom_score_adj: int | None = None


@dataclass(frozen=True, slots=True)
class CgroupLimits:
    """The limits of a task instance's cgroup (where the controller exists)."""

    memory: int | None = None  # bytes
    cpu: float | None = None  # CPUs' worth of time
    pids: int | None = None  # processes and threads


NO_LIMITS = ProcessLimits()
NO_CGROUP_LIMITS = CgroupLimits()


Pair = tuple[str, str]


class Environ(Sequence[Pair]):
    """A process environment: (name, value) pairs in name order, as a tuple of them reads.

    Most variables are alike in thousands of instances (taskforce's own environment, the
    host's facts): those are one tuple, `common`, that all of them share; an instance
    holds only its own pairs (its name and number), each with the place it goes in
    `common`. A tuple of 50 pairs an instance is 450 bytes: 4.4 MB with 10,000 tasks.
    The own pairs are one flat tuple (index, name, value, index, name, value...): a tuple
    for each (index, pair) took 72 bytes more, and one for each pair 48.
    """

    __slots__ = ("_common", "_own")

    def __init__(self, common: tuple[Pair, ...], own: tuple[int | str, ...]) -> None:
        self._common = common
        # Each own pair after the index in common that it goes before, in order.
        self._own = own

    @classmethod
    def split(
        cls,
        pairs: Sequence[Pair],
        own: Collection[str],
        commons: dict[tuple[Pair, ...], tuple[Pair, ...]],
    ) -> Environ:
        """`pairs` (in name order), the names `own` held by the instance, the others
        shared through `commons` (equal common parts, one tuple)."""
        mine = [(index, pair) for index, pair in enumerate(pairs) if pair[0] in own]
        common = tuple(pair for pair in pairs if pair[0] not in own)
        common = commons.setdefault(common, common)
        flat = (
            item
            for n, (index, (name, value)) in enumerate(mine)
            for item in (index - n, name, value)
        )
        return cls(common, tuple(flat))

    def __iter__(self) -> Iterator[Pair]:
        common = self._common
        if not self._own:
            return iter(common)
        parts: list[Iterable[Pair]] = []
        start = 0
        own = self._own
        for at in range(0, len(own), 3):
            index = cast(int, own[at])
            parts.append(common[start:index])
            parts.append(((cast(str, own[at + 1]), cast(str, own[at + 2])),))
            start = index
        parts.append(common[start:])
        return itertools.chain.from_iterable(parts)

    def __len__(self) -> int:
        return len(self._common) + len(self._own) // 3

    @overload
    def __getitem__(self, index: int) -> Pair: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Pair, ...]: ...

    def __getitem__(self, index: int | slice) -> Pair | tuple[Pair, ...]:
        return tuple(self)[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Environ):
            if self._common is other._common:
                return self._own == other._own
            return tuple(self) == tuple(other)
        if isinstance(other, tuple):
            return tuple(self) == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __add__(self, other: tuple[Pair, ...]) -> tuple[Pair, ...]:
        return (*self, *other)

    def __repr__(self) -> str:
        return repr(tuple(self))


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """Everything that determines a process as started: a change means a restart."""

    # The program as configured (argv[0] before procname): a path, or a name to look up in
    # the PATH of `env`.
    program: str
    # argv as the process sees it (argv[0] is procname when one is configured).
    argv: tuple[str, ...]
    env: Environ | tuple[Pair, ...]
    cwd: str | None = None
    user: str | int | None = None
    group: str | int | None = None
    no_new_privs: bool = False
    # The listening sockets taskforce holds for the task and passes to the process (a
    # changed definition means a new socket, so a new process).
    sockets: tuple[SocketSpec, ...] = ()
    limits: ProcessLimits = NO_LIMITS
    cgroup: CgroupLimits = NO_CGROUP_LIMITS

    def env_value(self, key: str) -> str | None:
        for k, v in self.env:
            if k == key:
                return v
        return None


# Output destinations: these words, or an absolute file path.
NULL = "null"  # /dev/null
STDERR = "stderr"  # taskforce's own stderr, each line prefixed with task[instance]
SYSLOG = "syslog"
SAME_AS_STDOUT = "stdout"  # (stderr only) into the same pipe as stdout, like 2>&1

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """Where the stdout and stderr of a task process go.

    Not part of :class:`LaunchSpec`: a new destination applies to running processes (their
    captured output is switched over); only whether a stream is captured at all, and
    whether stderr shares stdout's pipe, is fixed when a process starts.
    """

    stdout: str = NULL  # NULL, STDERR, SYSLOG or an absolute file path
    stderr: str = SAME_AS_STDOUT  # the same choices, or SAME_AS_STDOUT
    # A file destination is rotated when it would grow past this many bytes (0: never),
    # keeping `backups` older files as PATH.1 (the newest) to PATH.N.
    max_bytes: int = 10 * MIB
    backups: int = 5
    # The syslog socket; None: the first of the usual places that exists.
    syslog_socket: str | None = None

    @property
    def stderr_target(self) -> str:
        """Where stderr goes in the end (SAME_AS_STDOUT followed)."""
        return self.stdout if self.stderr == SAME_AS_STDOUT else self.stderr

    @property
    def captured(self) -> bool:
        """Whether taskforce reads the process's output (anything but /dev/null)."""
        return self.stdout != NULL or self.stderr_target != NULL


NO_OUTPUT = OutputSpec()


@dataclass(frozen=True, slots=True)
class InstanceSpec:
    launch: LaunchSpec
    # Other commands (stop, check, and named ones), expanded for this instance.
    commands: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    pidfile: str | None = None
    output: OutputSpec = NO_OUTPUT
    # The readiness probe command (ready: {command: ...}), expanded for this instance.
    ready_command: tuple[str, ...] | None = None
    # The liveness probe command (live: {command: ...}), expanded for this instance.
    live_command: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class EventSpec:
    type: EventType
    # Absolute or cwd-relative paths to watch (file_change; self and python fill these in
    # at watch time from the running program).
    paths: tuple[str, ...] = ()
    command: str | None = None
    signal: int | None = None


@dataclass(frozen=True, slots=True)
class ReadySpec:
    """How to tell a process is ready: `kind` is command, tcp, http or pidfile."""

    kind: str
    # The probe's target: "host:port", a URL, or "" (command and pidfile come from the
    # instance: its `ready` command, its pidfile).
    target: str = ""
    interval: float = 0.1
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class LiveSpec:
    """How to tell a running process still works: `kind` is command, tcp or http.

    Probed every `interval` seconds once ready (the first time `initial_delay` seconds
    after that); `failures` failed probes in a row restart the process.
    """

    kind: str
    target: str = ""  # "host:port" or a URL ("" for command: the instance's live command)
    interval: float = 10.0
    timeout: float = 2.0  # seconds one probe may take
    failures: int = 3
    initial_delay: float | None = None  # None: the interval


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """When a once or event task runs by itself: on a cron expression (in `timezone`, or
    local time) or every `interval` seconds."""

    cron: str | None = None
    timezone: str | None = None
    interval: float | None = None
    run_on_start: bool = False
    overlap: Overlap = Overlap.SKIP


@dataclass(frozen=True, slots=True)
class TaskSpec:
    name: str
    control: Control
    instances: tuple[InstanceSpec, ...]
    requires: tuple[str, ...] = ()
    start_delay: float = 0.0
    time_limit: float | None = None
    onexit_start: tuple[str, ...] = ()
    events: tuple[EventSpec, ...] = ()
    ready: ReadySpec | None = None
    # Runs on one host of the fleet only (placement: cluster); the fleet filters it out of
    # the desired state of the hosts that do not hold it.
    cluster: bool = False
    live: LiveSpec | None = None
    schedule: ScheduleSpec | None = None
    # The task's own `restart` keys, over the settings' policy (key, value) by key.
    restart: tuple[tuple[str, float | int | None], ...] = ()
    # Replacing instances (restart, file change, changed configuration): how many at a
    # time, a new one started (and ready) before the old one stops. None: one at a time
    # when count > 1, as before otherwise; 0: never (stop, then start).
    rolling: int | None = None
    # The task can run twice at once: a single instance is replaced the same way.
    overlap: bool = False
    # Restart a process whose memory (its cgroup's, else its own RSS) passes this many bytes.
    memory_restart: int | None = None

    @property
    def count(self) -> int:
        return len(self.instances)

    @property
    def rolls(self) -> bool:
        """Whether instances are replaced by rolling restarts (see core/rolling.py)."""
        if self.control is not Control.WAIT or self.rolling == 0:
            return False
        return self.count > 1 or self.overlap

    @property
    def at_a_time(self) -> int:
        """How many instances a rolling restart replaces at once."""
        return max(1, self.rolling or 1)


@dataclass(frozen=True, slots=True)
class Policy:
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    stop_timeout: float = 5.0
    # nowait/adopt: seconds between health checks, and how long one may take.
    check_interval: float = 10.0
    check_timeout: float = 5.0
    # nowait/adopt: seconds after the start command exits for the pidfile to name the
    # daemon.
    start_timeout: float = 10.0
    # Seconds between samples of the memory of tasks with memory_restart, where no cgroup
    # event tells when it is passed.
    memory_check_interval: float = 10.0


def restart_policy(policy: Policy, spec: TaskSpec | None) -> RestartPolicy:
    """The restart policy of `spec`: the settings' with the task's own keys over them."""
    if spec is None or not spec.restart:
        return policy.restart
    overrides: dict[str, Any] = dict(spec.restart)
    return replace(policy.restart, **overrides)


@dataclass(frozen=True, slots=True, weakref_slot=True)
class DesiredState:
    """The tasks in scope on this host, by name, and the policy that governs them.

    A state made by :func:`derived` also knows which of its tasks differ from the state
    it was made from, so that whoever followed that one looks at those alone (see
    :func:`differing`): with thousands of tasks, a reload that changed one costs one.
    """

    tasks: Mapping[str, TaskSpec] = field(default_factory=dict)
    policy: Policy = field(default_factory=Policy)
    # Names of configured tasks that are out of scope (roles): requires on them is void.
    out_of_scope: frozenset[str] = frozenset()
    # Set by derived() only (replace() leaves them out): the state this one was made from
    # (weakly: states do not keep their ancestors alive) and the tasks that differ.
    _base: weakref.ref[DesiredState] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _changed: frozenset[str] = field(default=frozenset(), init=False, repr=False, compare=False)


def derived(
    base: DesiredState,
    changed: Iterable[str],
    tasks: Mapping[str, TaskSpec],
    policy: Policy,
    out_of_scope: frozenset[str],
) -> DesiredState:
    """A desired state whose tasks are those of `base` but for the names in `changed`
    (added, removed, or another spec): every other task has the very spec object it has
    in `base`, in the same order."""
    state = DesiredState(tasks, policy, out_of_scope)
    object.__setattr__(state, "_base", weakref.ref(base))
    object.__setattr__(state, "_changed", frozenset(changed))
    return state


def differing(old: DesiredState, new: DesiredState) -> Collection[str]:
    """The names of the tasks whose spec in `new` is not the very object it is in `old`
    (those added or removed included): from what :func:`derived` noted when `new` was
    made from `old`, else by looking at every task."""
    if new is old:
        return ()
    base = new._base
    if base is not None and base() is old:
        return new._changed
    before, after = old.tasks, new.tasks
    names = before.keys() | after.keys()
    return [name for name in names if before.get(name) is not after.get(name)]


class TaskSubset:
    """The names of the tasks of a desired state whose spec passes `test`, in its order:
    followed from one desired state to the next through the tasks that differ, so that
    a reload changing one task of thousands does not test them all again."""

    def __init__(self, test: Callable[[TaskSpec], bool]) -> None:
        self._test = test
        self._state: DesiredState | None = None
        self._names: tuple[str, ...] = ()
        self._members: frozenset[str] = frozenset()

    def of(self, desired: DesiredState) -> tuple[str, ...]:
        state = self._state
        if state is desired:
            return self._names
        if state is None or not self._same_members(state, desired):
            test = self._test
            self._names = tuple(name for name, spec in desired.tasks.items() if test(spec))
            self._members = frozenset(self._names)
        self._state = desired
        return self._names

    def _same_members(self, state: DesiredState, desired: DesiredState) -> bool:
        tasks, members, test = desired.tasks, self._members, self._test
        for name in differing(state, desired):
            spec = tasks.get(name)
            if (name in members) != (spec is not None and test(spec)):
                return False
        return True
