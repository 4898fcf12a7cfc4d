"""What the planner asks the runtime to do. Each action carries a reason for the log."""

from __future__ import annotations

from dataclasses import dataclass

from taskforce.core.spec import InstanceSpec, LaunchSpec


@dataclass(frozen=True, slots=True)
class Start:
    task: str
    slot: int
    spec: InstanceSpec
    reason: str


@dataclass(frozen=True, slots=True)
class Stop:
    """Ask a process to exit: run `command` if given, else SIGTERM its process group."""

    task: str
    slot: int
    pid: int
    reason: str
    command: tuple[str, ...] | None = None
    # A signal to send instead of SIGTERM (a `restart` event configured with `signal`).
    signal: int | None = None


@dataclass(frozen=True, slots=True)
class Kill:
    """The stop timeout passed: SIGKILL the process group."""

    task: str
    slot: int
    pid: int
    reason: str


@dataclass(frozen=True, slots=True)
class SendSignal:
    task: str
    slot: int
    pid: int
    signal: int
    reason: str


@dataclass(frozen=True, slots=True)
class RunCommand:
    """Run one of a task's named commands for one of its running instances."""

    task: str
    slot: int
    pid: int | None
    argv: tuple[str, ...]
    # The instance's launch spec: environment, cwd and identity the command runs with.
    launch: LaunchSpec
    reason: str


@dataclass(frozen=True, slots=True)
class LookForPid:
    """A nowait/adopt start command has exited: find the daemon through its pidfile."""

    task: str
    slot: int
    pidfile: str | None
    program: str
    # The start command (program first), to tell the daemon from another process of the
    # same interpreter.
    argv: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Check:
    """Probe a nowait/adopt process: run `command` (exit 0 = healthy), or signal 0."""

    task: str
    slot: int
    pid: int
    command: tuple[str, ...] | None
    timeout: float


@dataclass(frozen=True, slots=True)
class Release:
    """Stop tracking a process that stays running (adopt tasks when taskforce exits)."""

    task: str
    slot: int
    pid: int


@dataclass(frozen=True, slots=True)
class Probe:
    """Ask whether a started process is ready yet (its task's `ready` probe), or with
    `live`, whether it still works (its `live` probe)."""

    task: str
    slot: int
    pid: int
    kind: str  # command, tcp, http or pidfile
    target: str  # "host:port", URL, pidfile path, or ""
    command: tuple[str, ...] | None
    timeout: float | None = None  # seconds the attempt may take (None: the default)
    live: bool = False


Action = Start | Stop | Kill | SendSignal | RunCommand | LookForPid | Check | Release | Probe
