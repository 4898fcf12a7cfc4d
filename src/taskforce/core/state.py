"""Observed state: what taskforce knows about each task's processes.

Plain records. Only the planner (:mod:`taskforce.core.planner` and the modules it
composes) changes them, in response to facts the runtime reports (a process started,
exited, could not be started) and to the actions it decides; the runtime and the API only
read them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar, cast

from taskforce.core.spec import InstanceSpec, TaskSpec


class Phase(StrEnum):
    IDLE = "idle"  # no process in this slot
    STARTING = "starting"  # a start was asked for, its outcome not yet reported
    RUNNING = "running"
    STOPPING = "stopping"  # asked to exit, waiting for it (SIGKILL at kill_at)
    # nowait/adopt: the start command exited; looking for the daemon in the pidfile.
    DAEMONIZING = "daemonizing"


class Waiting(StrEnum):
    """Why a task that should run has a slot not started (see TaskState.waiting_for)."""

    BACKOFF = "backoff"  # a slot failed and waits out its restart delay
    REQUIRES = "requires"  # a required task has not started, finished or become ready
    # A slot failed restart.max_failures times: not restarted until started again.
    FAILED = "failed"


@dataclass(slots=True)
class ExitRecord:
    status: int  # the raw wait status
    at: float  # monotonic
    wall: float  # Unix time, for people
    uptime: float
    expected: bool  # we asked it to stop
    error: str | None = None  # the process could not be started: why
    cause: str | None = None  # what the status does not say (out of memory...)


@dataclass(slots=True)
class Rare:
    """The fields of an :class:`Instance` that only some tasks use (daemons, probes,
    rolling restarts): kept apart, made when one is first set to another value than its
    default. Inline, they took 112 bytes in each instance of every task."""

    # nowait/adopt: looking for the daemon in its pidfile, then checking it is alive.
    next_look: float = 0.0
    look_deadline: float = 0.0
    looks: int = 0
    next_check: float | None = None
    checking: bool = False
    # Readiness (tasks with a `ready` probe).
    next_probe: float = 0.0
    probing: bool = False
    probes: int = 0
    # Liveness (tasks with a `live` probe): failed probes in a row, the last one's error.
    next_live: float = 0.0
    live_probing: bool = False
    live_failures: int = 0
    live_error: str | None = None
    # Rolling restarts (see core/rolling.py): this process is a surge instance, started
    # to replace the one in slot `replaces`; or it is asked to be replaced (why).
    replaces: int | None = None
    replace_request: str | None = None


_DEFAULTS = Rare()
V = TypeVar("V")


class _Rarely(Generic[V]):
    """An Instance attribute kept in its Rare part: its default until set otherwise."""

    __slots__ = ("_name",)

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, inst: Instance, owner: type | None = None) -> V:
        rare = inst.rare
        return cast(V, getattr(_DEFAULTS if rare is None else rare, self._name))

    def __set__(self, inst: Instance, value: V) -> None:
        rare = inst.rare
        if rare is None:
            default = getattr(_DEFAULTS, self._name)
            if value is default or (type(value) is type(default) and value == default):
                return  # as good as set: most instances never leave their defaults
            rare = inst.rare = Rare()
        setattr(rare, self._name, value)


@dataclass(slots=True)
class Instance:
    slot: int
    phase: Phase = Phase.IDLE
    pid: int | None = None
    # What the running process was started from (its stop command comes from here too).
    spec: InstanceSpec | None = None
    started_at: float = 0.0  # monotonic
    started_wall: float = 0.0
    # Monotonic, read before the process was forked (started_at is read once its whole
    # burst has been spawned, seconds later on a loaded host): whatever the process forks,
    # a nowait/adopt daemon included, started after it.
    launched_at: float = 0.0
    # The program file the running process was executed from (for `self` events).
    executable: str | None = None
    # The control the running process was started under.
    control: str | None = None
    stop_reason: str | None = None
    # An event asked for this process to be stopped (and restarted, for wait tasks).
    stop_request: str | None = None
    kill_at: float | None = None
    killed: bool = False
    # Consecutive runs that ended sooner than the restart policy's min_uptime.
    failures: int = 0
    # When the recent failures happened (monotonic), for restart.window; at most
    # restart.max_failures of them are kept.
    failure_times: tuple[float, ...] = ()
    # restart.max_failures reached: the slot is not started again until revived.
    gave_up: bool = False
    not_before: float = 0.0  # backoff: no start before this monotonic time
    starts: int = 0
    last_exit: ExitRecord | None = None
    # For once tasks: the run generation this slot last started for.
    ran_generation: int = 0
    # nowait/adopt: `pid` is the start command, not yet the daemon.
    launcher: bool = False
    # The process is not our child (adopted, or found through a pidfile): its exit is
    # learnt another way than wait(2), and its status is unknown.
    foreign: bool = False
    # Readiness (tasks with a `ready` probe): ready once a probe succeeded.
    ready: bool = False
    # What few tasks use (see Rare), read and set as the attributes below.
    rare: Rare | None = None

    next_look = _Rarely[float]()
    look_deadline = _Rarely[float]()
    looks = _Rarely[int]()
    next_check = _Rarely[float | None]()
    checking = _Rarely[bool]()
    next_probe = _Rarely[float]()
    probing = _Rarely[bool]()
    probes = _Rarely[int]()
    next_live = _Rarely[float]()
    live_probing = _Rarely[bool]()
    live_failures = _Rarely[int]()
    live_error = _Rarely[str | None]()
    replaces = _Rarely[int | None]()
    replace_request = _Rarely[str | None]()

    @property
    def place(self) -> int:
        """The slot whose instance spec this process runs (a surge's: the one it replaces)."""
        return self.slot if self.replaces is None else self.replaces

    def ended(self, record: ExitRecord) -> None:
        """The process of this slot ended (or never started): forget it, keep the counters."""
        self.last_exit = record
        self.phase = Phase.IDLE
        self.pid = None
        self.kill_at = None
        self.killed = False
        self.stop_reason = None
        self.stop_request = None
        self.executable = None
        self.control = None
        self.launcher = False
        self.foreign = False
        self.ready = False
        rare = self.rare
        if rare is not None:
            rare.next_check = None
            rare.checking = False
            rare.probing = False
            rare.live_probing = False
            rare.live_failures = 0
            rare.replace_request = None


# Starts and exits remembered per task, for status timelines; bounded so that a flapping
# task cannot grow memory.
HISTORY_LENGTH = 200


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    wall: float  # Unix time
    slot: int
    kind: str  # "start", "exit", "failed" (could not start), "gave up"
    pid: int | None
    detail: str  # e.g. the wait status in words, or why a start failed


class History(list[HistoryEntry]):
    """The last HISTORY_LENGTH entries, oldest first.

    A list trimmed at the front rather than a deque(maxlen=...): an empty deque already
    takes a block of 64 slots (about 600 bytes), a short list a tenth of that, and most
    tasks have started once. Trimming moves at most HISTORY_LENGTH pointers.
    """

    __slots__ = ()

    def append(self, entry: HistoryEntry) -> None:
        super().append(entry)
        if len(self) > HISTORY_LENGTH:
            del self[: len(self) - HISTORY_LENGTH]

    def extend(self, entries: Iterable[HistoryEntry]) -> None:
        super().extend(entries)
        if len(self) > HISTORY_LENGTH:
            del self[: len(self) - HISTORY_LENGTH]


@dataclass(slots=True)
class Rolling:
    """A rolling restart under way: instances replaced so far, of how many."""

    started_at: float  # monotonic
    total: int
    done: int = 0
    # Replacements that did not come up in a row, and when the next may be tried.
    failures: int = 0
    not_before: float = 0.0


@dataclass(slots=True)
class TaskState:
    name: str
    instances: dict[int, Instance] = field(default_factory=dict)
    # The most recent desired spec, kept after the task leaves the configuration so that
    # its processes can still be stopped its way.
    spec: TaskSpec | None = None
    # For once tasks: runs wanted so far (onexit `start` asks for one more).
    generation: int = 1
    # Monotonic time the task went from no running process to at least one.
    up_since: float | None = None
    # Monotonic time the task became ready (started, or its probe first succeeded).
    ready_since: float | None = None
    # Why the task is not running when it should, and that reason in words for people.
    waiting: Waiting | None = None
    waiting_for: str | None = None
    history: History = field(default_factory=History)
    rolling: Rolling | None = None

    def running(self) -> int:
        return sum(1 for i in self.instances.values() if i.pid is not None)
