"""The validated configuration: typed and immutable, but not yet resolved.

Values that the specification allows to be conditional (a map where a scalar is
expected) or to contain ``{name}`` substitutions are kept as raw :data:`Value` trees (a
:class:`Pick` for a key that takes one value); :mod:`taskforce.config.resolve` turns them
into concrete values for one host, one role set and one process instance.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Generic, TypeAlias, TypeVar

from taskforce.core.spec import ScheduleSpec
from taskforce.core.vocabulary import Control, EventType, Placement

# A raw value as the YAML document gave it. Maps inside lists are conditionals.
Value: TypeAlias = str | int | float | bool | list["Value"] | dict[str, "Value"] | None
# A key path into a document's Value: map keys are strings, list positions are integers.
Path: TypeAlias = tuple[str | int, ...]
# Deeper nesting than this is refused when a document is read: no configuration needs it,
# and building (then validating) the value would otherwise recurse until the interpreter
# gives up.
MAX_DEPTH = 100

# How configuration values are serialized to tell them apart (validation's memo, the
# composer's task entries): marshal's output tells apart what == does not (1, 1.0 and
# True) and is about twice as quick as repr. Version 2 writes no back-references, which
# depend on object sharing.
MARSHAL_VERSION = 2
# Values a YAML alias may copy in all: `&a [x, x]`, `&b [*a, *a]`... doubles with each
# line, and a few dozen lines would take all the memory there is ("billion laughs").
MAX_ALIAS_COPIES = 100_000

T_co = TypeVar("T_co", covariant=True)


@dataclass(frozen=True, slots=True)
class Pick(Generic[T_co]):
    """A key that takes one value, written conditionally ("Values and Lists" in the
    specification): a map, or a list of values and maps, whose leaves are each a T_co.

    Resolving for a task's context must choose one leaf (none: the key is as if not
    written; several: an error for that task).
    """

    tree: Value


@dataclass(frozen=True, slots=True)
class EventConfig:
    type: EventType
    # `path` for file_change: a string or list, possibly conditional; None otherwise.
    path: Value = None
    # Exactly one of command/signal is written; either may be conditional (a Pick).
    command: str | Pick[str] | None = None
    signal: int | Pick[int] | None = None


@dataclass(frozen=True, slots=True)
class OnExitConfig:
    type: str  # only "start" is defined
    task: str | Pick[str]


@dataclass(frozen=True, slots=True)
class ReadyConfig:
    """How to tell a started task is ready: exactly one of the probes."""

    command: Value = None  # an argv list: exit 0 means ready
    tcp: str | Pick[str] | None = None  # "[host]:port" accepting connections
    http: str | Pick[str] | None = None  # a URL answering 2xx
    pidfile: bool | Pick[bool] = False  # the task's pidfile names a live process
    # Seconds before the first probe and between probes (doubling up to 2 s).
    interval: float | Pick[float] = 0.1
    # Seconds to become ready before the process is stopped (and started again).
    timeout: float | Pick[float] | None = None


@dataclass(frozen=True, slots=True)
class LiveConfig:
    """How to tell a running task still works: exactly one of the probes."""

    command: Value = None  # an argv list: exit 0 means alive
    tcp: str | Pick[str] | None = None  # "[host]:port" accepting connections
    http: str | Pick[str] | None = None  # a URL answering 2xx
    interval: float | Pick[float] | None = None  # seconds between probes
    timeout: float | Pick[float] | None = None  # seconds one probe may take
    failures: int | None = None  # failed probes in a row that restart the process
    initial_delay: float | Pick[float] | None = None  # seconds before the first probe


@dataclass(frozen=True, slots=True)
class RestartConfig:
    """`restart`, under `settings` or of a task, as written: the keys of a
    :class:`~taskforce.core.vocabulary.RestartPolicy`, each possibly conditional (chosen in
    the top-level context for settings, in the task's for a task). A key left out is None:
    a task's falls back to the settings', the settings' to the built-in default."""

    min_uptime: float | Pick[float] | None = None
    initial_delay: float | Pick[float] | None = None
    factor: float | Pick[float] | None = None
    max_delay: float | Pick[float] | None = None
    max_failures: int | Pick[int] | None = None
    window: float | Pick[float] | None = None
    # A task's only: how its processes are replaced. None for `rolling` is the default
    # (rolling when count > 1).
    rolling: int | None = None
    overlap: bool = False


@dataclass(frozen=True, slots=True)
class OutputConfig:
    """`output`, of a task or under `settings` (the default for every task).

    A key left out is None: the task's own key wins over the one under `settings`, which
    wins over the built-in default. A destination is "null", "stderr", "syslog", "stdout"
    (stderr only) or a file path, possibly with {name} substitutions.
    """

    stdout: str | Pick[str] | None = None
    stderr: str | Pick[str] | None = None
    max_bytes: int | Pick[int] | None = None
    backups: int | Pick[int] | None = None
    syslog_socket: str | Pick[str] | None = None


@dataclass(frozen=True, slots=True)
class SocketConfig:
    """One of a task's `sockets` (see :mod:`taskforce.config.sockets`)."""

    name: str
    listen: str | Pick[str]
    backlog: int = 128  # config.sockets.DEFAULT_BACKLOG
    reuseport: bool = False
    mode: int | None = None
    owner: str | int | None = None
    group: str | int | None = None


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """`limits`: rlimits as (name, soft, hard), -1 for unlimited; the cgroup's limits."""

    rlimits: tuple[tuple[str, int, int], ...] = ()
    memory: int | None = None
    cpu: float | None = None
    pids: int | None = None


@dataclass(frozen=True, slots=True)
class EnvFile:
    """One `env_file` entry: a dotenv file whose variables join a context."""

    path: str  # as written, without the leading "-" of an optional file
    optional: bool = False  # a missing file is no error ("-path" or `optional: true`)


# The one empty mapping that every task's unused `defaults`, `defines`, `sockets`... share:
# an empty dict of each, six a task, was 384 bytes a task (3.7 MB with 10,000 tasks).
_NOTHING: Mapping[Any, Any] = MappingProxyType({})


def _nothing() -> Mapping[Any, Any]:
    return _NOTHING


@dataclass(frozen=True, slots=True)
class FileScope:
    """What an included file gives the tasks it holds: its `defines` and `defaults`, and
    the variables of its `env_file`s (read). `source` names the file."""

    source: str
    defines: Mapping[str, Value] = field(default_factory=_nothing)
    defaults: Mapping[str, Value] = field(default_factory=_nothing)
    env: Mapping[str, str] = field(default_factory=_nothing)


@dataclass(frozen=True, slots=True)
class TaskConfig:
    name: str
    # Command name -> argv list (raw, may hold conditionals). "start" is always present.
    commands: Mapping[str, Value]
    control: Control | Pick[Control] = Control.WAIT
    # An integer, or a string to substitute that must then give an integer.
    count: int | str | Pick[int | str] = 1
    cwd: str | Pick[str] | None = None
    defaults: Mapping[str, Value] = field(default_factory=_nothing)
    defines: Mapping[str, Value] = field(default_factory=_nothing)
    role_defaults: Mapping[str, Mapping[str, Value]] = field(default_factory=_nothing)
    role_defines: Mapping[str, Mapping[str, Value]] = field(default_factory=_nothing)
    events: tuple[EventConfig, ...] = ()
    user: str | int | Pick[str | int] | None = None
    group: str | int | Pick[str | int] | None = None
    # Set PR_SET_NO_NEW_PRIVS in the process before exec: setuid programs and file
    # capabilities then grant nothing to the task or its descendants.
    no_new_privs: bool = False
    onexit: tuple[OnExitConfig, ...] = ()
    pidfile: str | Pick[str] | None = None
    procname: str | Pick[str] | None = None
    # Task names, or conditionals giving any number of them (like a command list's words).
    requires: tuple[Value, ...] = ()
    # None: no `roles` key, the task is always in scope.
    roles: tuple[str, ...] | None = None
    start_delay: float | Pick[float] = 0.0
    time_limit: float | Pick[float] | None = None
    ready: ReadyConfig | None = None
    output: OutputConfig | None = None
    placement: Placement | Pick[Placement] = Placement.HOST
    live: LiveConfig | None = None
    schedule: ScheduleSpec | None = None
    # Listening sockets taskforce holds for the task, by name in the order written.
    sockets: Mapping[str, SocketConfig] = field(default_factory=_nothing)
    restart: RestartConfig | None = None
    limits: LimitsConfig | None = None
    umask: int | None = None
    nice: int | None = None
    oom_score_adj: int | None = None
    memory_restart: int | None = None
    env_file: tuple[EnvFile, ...] = ()
    # The variables of the env_files, read when the configuration is composed (see
    # :mod:`taskforce.config.include`).
    env: Mapping[str, str] = field(default_factory=_nothing)
    # The included file holding the task; None for a task of the main file.
    scope: FileScope | None = None


@dataclass(frozen=True, slots=True)
class HttpListener:
    """One address the HTTP status and control service listens on.

    `listen` is a unix socket path (it contains a `/`) or `[host][:port]` for TCP; see
    :func:`taskforce.config.listeners.parse_listen` for what it means.
    """

    listen: str
    # A PEM file with the certificate, its chain and its key: serve HTTPS.
    certfile: str | None = None
    # Without it only status paths answer; control paths get 403.
    allow_control: bool = False
    # Seconds a connection may take to send a request (or sit idle between requests).
    timeout: float = 10.0
    # The bearer token clients must send (`token_file` holds it instead, read at start).
    token: str | None = None
    token_file: str | None = None
    # Status paths need the token too.
    private: bool = False
    # Names clients may reach a TCP listener by, beyond its address and localhost (the
    # Host header is checked against DNS rebinding; "*" answers any name).
    hosts: tuple[str, ...] = ()


class NotifyEvent(StrEnum):
    """The state changes that notifications report (see Supervisor.emit)."""

    EXITED = "exited"  # a process exited unexpectedly, or failed for the first time
    FLAPPING = "flapping"  # it keeps failing: its restarts are backing off
    RECOVERED = "recovered"  # a failing process has run steadily again
    RELOAD_FAILED = "reload_failed"  # a new configuration could not be applied
    UNHEALTHY = "unhealthy"  # a liveness probe failed too often: the process is restarted
    FAILED = "failed"  # restart.max_failures reached: the task is no longer restarted


@dataclass(frozen=True, slots=True)
class NotifyTarget:
    """One destination of notifications: a webhook (`url`) or a command (`command`).

    Exactly one of `url` and `command` is set. Hashable: a reload that keeps a target
    keeps its queue.
    """

    url: str | None = None
    # argv, run without a shell, with the event in TASKFORCE_* environment variables.
    command: tuple[str, ...] | None = None
    # Extra request headers of a webhook (an Authorization header, say).
    headers: tuple[tuple[str, str], ...] = ()
    # The events sent to this target (an empty list mutes it).
    events: tuple[NotifyEvent, ...] = tuple(NotifyEvent)
    # Seconds one delivery attempt may take, and attempts per event before giving up.
    timeout: float = 10.0
    attempts: int = 3
    # Events waiting for delivery, at most: beyond it the oldest are dropped.
    queue: int = 100


@dataclass(frozen=True, slots=True)
class Settings:
    """Supervisor-wide settings. The timing values may be conditional: they are chosen in
    the top-level context (environment, top-level defines and defaults, role values)."""

    restart: RestartConfig = field(default_factory=RestartConfig)
    # Seconds between the stop request (SIGTERM or the stop command) and SIGKILL.
    stop_timeout: float | Pick[float] = 5.0
    # nowait/adopt tasks: seconds between health checks, and how long one may take.
    check_interval: float | Pick[float] = 10.0
    check_timeout: float | Pick[float] = 5.0
    # nowait/adopt tasks: seconds after the start command exits for the pidfile to name a
    # live daemon.
    start_timeout: float | Pick[float] = 10.0
    # None: not configured, so the default unix socket is offered; () turns HTTP off.
    http: tuple[HttpListener, ...] | None = None
    # Where task state changes are reported (webhooks, commands).
    notify: tuple[NotifyTarget, ...] = ()
    # The `output` of tasks that do not say (key by key).
    output: OutputConfig = field(default_factory=OutputConfig)
    # True: a task with `roles` is in scope only when every role it lists is active
    # (otherwise one of them is enough).
    all_roles: bool = False
    # Seconds between samples of memory for memory_restart where no cgroup event says.
    memory_check_interval: float = 10.0


@dataclass(frozen=True, slots=True)
class Config:
    source: str = "<config>"
    defines: Mapping[str, Value] = field(default_factory=dict)
    defaults: Mapping[str, Value] = field(default_factory=dict)
    role_defines: Mapping[str, Mapping[str, Value]] = field(default_factory=dict)
    role_defaults: Mapping[str, Mapping[str, Value]] = field(default_factory=dict)
    tasks: Mapping[str, TaskConfig] = field(default_factory=dict)
    settings: Settings = field(default_factory=Settings)
    # Files and glob patterns whose tasks join these (see :mod:`taskforce.config.include`).
    include: tuple[str, ...] = ()
    env_file: tuple[EnvFile, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)  # the env_files' variables, read


@dataclass(frozen=True, slots=True)
class Fragment:
    """An included file: tasks, and what applies to them alone."""

    tasks: Mapping[str, TaskConfig] = field(default_factory=dict)
    defines: Mapping[str, Value] = field(default_factory=dict)
    defaults: Mapping[str, Value] = field(default_factory=dict)
    include: tuple[str, ...] = ()
    env_file: tuple[EnvFile, ...] = ()
