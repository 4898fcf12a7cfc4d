# Over 450 lines: the single table of every key of the file, kept whole so that a key has one place.
"""The configuration file, key by key: shapes, requirements and documentation.

This is the single description of the file. :mod:`taskforce.config.validate` checks documents
against it and :mod:`taskforce.config.schema` renders it as JSON Schema. To add a key, add
one line to the right table here (and the matching field to :mod:`taskforce.config.model`).
"""

from __future__ import annotations

import re
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from taskforce.config.limits import LIMITS, Umask
from taskforce.config.listeners import HTTP_LISTENER, Flag
from taskforce.config.model import (
    Config,
    EnvFile,
    EventConfig,
    Fragment,
    LiveConfig,
    OnExitConfig,
    ReadyConfig,
    RestartConfig,
    Settings,
    SocketConfig,
    TaskConfig,
)
from taskforce.config.notify_targets import NOTIFY_TARGET, OnlyWith
from taskforce.config.output import OUTPUT, ByteSize
from taskforce.config.schedule import CRON_EXPRESSION, TIME_ZONE
from taskforce.config.shapes import (
    INVALID,
    Choice,
    Choices,
    Conditional,
    Defs,
    Invalid,
    JsonSchema,
    Name,
    Number,
    OneOf,
    Reporter,
    Scalar,
    Shape,
    Text,
    Whole,
    describe,
    did_you_mean,
    enum_choice,
)
from taskforce.config.shapes_compound import (
    ExactlyOne,
    Field,
    ListOf,
    MapOf,
    OnlyWhen,
    Record,
    Remembered,
)
from taskforce.config.sockets import DEFAULT_BACKLOG, FileMode, ListenText, Rolling, SocketName
from taskforce.config.yaml_source import Path
from taskforce.core.spec import ScheduleSpec
from taskforce.core.vocabulary import Control, EventType, Overlap, Placement

M = TypeVar("M")

# Commands every task has without defining them; an event may name them: `stop` stops
# (and so restarts a wait task), `start` runs a once or event task again.
BUILTIN_COMMANDS = ("stop", "start")


@dataclass(frozen=True)
class ContextName(Shape[str]):
    """A context (and so environment) name: `=` and NUL cannot appear in one."""

    def check(self, value: object, at: Path, report: Reporter) -> str | Invalid:
        if not isinstance(value, str):
            report.error(at, f"a context name must be a string, got {describe(value)}")
            return INVALID
        if not value:
            flaw = "is empty"
        elif "=" in value:
            flaw = "contains '='"
        elif "\0" in value:
            flaw = "contains a NUL character"
        else:
            return value
        report.error(at, f"the context name {value!r} {flaw}")
        return INVALID

    def json_schema(self, defs: Defs) -> JsonSchema:
        return {"type": "string", "pattern": r"^[^=\x00]+$"}


# Patterns shared by the checks and the schema, so both accept the same strings.
WHOLE_NUMBER = "[0-9]+"
SUBSTITUTION = r"\{[^{}]+\}"


@dataclass(frozen=True)
class Count(Shape[int | str]):
    """A process count: a whole number, or a string whose `{name}` substitution gives one."""

    def check(self, value: object, at: Path, report: Reporter) -> int | str | Invalid:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if isinstance(value, str) and re.fullmatch(WHOLE_NUMBER, value):
            return int(value)
        if isinstance(value, str) and re.search(SUBSTITUTION, value):
            return value  # resolved per host; the result must then be a whole number
        report.error(
            at,
            "expected a whole number of processes (0 or more) or a {name} substitution, "
            f"got {describe(value)}",
        )
        return INVALID

    def json_schema(self, defs: Defs) -> JsonSchema:
        return {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": f"^{WHOLE_NUMBER}$|{SUBSTITUTION}"},
            ]
        }


@dataclass(frozen=True)
class UserOrGroup(Shape[str | int]):
    """A user or group, by name or by numeric id."""

    def check(self, value: object, at: Path, report: Reporter) -> str | int | Invalid:
        if isinstance(value, str) and value:
            return value
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        report.error(at, f"expected a name or a numeric id (0 or more), got {describe(value)}")
        return INVALID

    def json_schema(self, defs: Defs) -> JsonSchema:
        return {"anyOf": [{"type": "string", "minLength": 1}, {"type": "integer", "minimum": 0}]}


@dataclass(frozen=True)
class SignalNumber(Shape[int]):
    """A signal written as HUP, SIGHUP, hup, 1 or '1', converted to its number."""

    def check(self, value: object, at: Path, report: Reporter) -> int | Invalid:
        number = signal_number(value)
        if number is not None:
            return number
        hint = ""
        if isinstance(value, str):
            names = [member.name.removeprefix("SIG") for member in signal.Signals]
            hint = did_you_mean(value.upper().removeprefix("SIG"), names)
        report.error(at, f"{describe(value)} is not a signal name or number{hint}")
        return INVALID

    def json_schema(self, defs: Defs) -> JsonSchema:
        return {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": signal.NSIG - 1},
                {"type": "string", "minLength": 1},
            ]
        }


_SIGNAL_DIGITS = 20


def signal_number(value: object) -> int | None:
    """The number of the signal `value` names, or None if it names none."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and re.fullmatch(WHOLE_NUMBER, value):
        # Past a few digits it is no signal, and int() refuses thousands of them.
        number = int(value) if len(value) <= _SIGNAL_DIGITS else 0
    elif isinstance(value, str):
        name = value.upper()
        member = signal.Signals.__members__.get(name if name.startswith("SIG") else "SIG" + name)
        return None if member is None else int(member)
    else:
        return None
    return number if 0 < number < signal.NSIG else None


@dataclass(frozen=True)
class EnvFileEntry(Shape[EnvFile]):
    """An `env_file` entry: a path (`-path`: optional), or {path, optional}."""

    record: Shape[EnvFile]

    def check(self, value: object, at: Path, report: Reporter) -> EnvFile | Invalid:
        if isinstance(value, str):
            optional = value.startswith("-")
            path = value[1:] if optional else value
            if not path:
                report.error(at, "expected a file path (a leading '-' makes it optional)")
                return INVALID
            return EnvFile(path, optional)
        if isinstance(value, dict):
            return self.record.check(value, at, report)
        report.error(
            at, f"expected a file path or a map with 'path' and 'optional', got {describe(value)}"
        )
        return INVALID

    def json_schema(self, defs: Defs) -> JsonSchema:
        return {"anyOf": [{"type": "string", "minLength": 1}, self.record.json_schema(defs)]}


# Build functions turn a record's checked values, named as the model's fields, into the model.


def _task(at: Path, values: dict[str, Any]) -> TaskConfig:
    return TaskConfig(name=str(at[-1]), **values)  # a task is named by its key


def _model(cls: Callable[..., M]) -> Callable[[Path, dict[str, Any]], M]:
    def build(at: Path, values: dict[str, Any]) -> M:
        return cls(**values)

    return build


CONTEXT_MAP = MapOf(Scalar(), key=ContextName())
# The context is the processes' environment, and `defines` sets it.
ENVIRONMENT_HABITS = {"env": "defines", "environment": "defines"}
ROLE_CONTEXT_MAP = MapOf(CONTEXT_MAP, key=Name("role name"))

EVENT = Record(
    {
        "type": Field(
            enum_choice(EventType),
            "What triggers the event: file_change (a file in `path` changed), self (the "
            "task's executable changed), python (a module of the task's Python program "
            "changed), restart (the task is being restarted).",
            required=True,
        ),
        "path": Field(
            Conditional(),
            "The file or files a file_change event watches; may use {name} substitutions "
            "and conditional maps.",
        ),
        "command": Field(
            OneOf(Text()),
            "The command to run when the event fires: one of the task's `commands` or the "
            "built-in `stop`.",
        ),
        "signal": Field(
            OneOf(SignalNumber()),
            "The signal to send to the task's processes when the event fires: HUP, SIGHUP, "
            "1 and '1' all mean the same.",
        ),
    },
    _model(EventConfig),
    rules=(
        OnlyWhen("path", "type", EventType.FILE_CHANGE.value),
        ExactlyOne(("command", "signal")),
    ),
    what="event (a map with 'type' and 'command' or 'signal')",
)

ONEXIT = Record(
    {
        "type": Field(
            Choice(("start",), str), "The operation: only 'start' is defined.", required=True
        ),
        "task": Field(OneOf(Text()), "The task to start; it must be a 'once' task.", required=True),
    },
    _model(OnExitConfig),
    what="onexit entry (a map with 'type' and 'task')",
)


def _probe_kinds(means: str, when: str, connections: str) -> dict[str, Field[Any]]:
    """The kinds of probe readiness and liveness both have (a command, tcp, http), described
    with what success `means` ("ready"), `when` ("once") and what tcp accepts."""
    return {
        "command": Field(
            Conditional(allow_scalar=False, non_empty=True),
            f"A command (a list, with {{name}} substitutions) whose exit status 0 means {means}.",
        ),
        "tcp": Field(OneOf(Text()), f"[host]:port: {means} {when} it accepts {connections}."),
        "http": Field(OneOf(Text()), f"An http:// or https:// URL: {means} {when} it answers 2xx."),
    }


READY = Record(
    {
        **_probe_kinds("ready", "once", "a TCP connection"),
        "pidfile": Field(
            OneOf(Flag()), "true: ready once the task's pidfile names a live process."
        ),
        "interval": Field(
            OneOf(Number(minimum=0, exclusive=True)),
            "Seconds before the first probe and between probes (doubling up to 2 s); 0.1 "
            "if not given.",
        ),
        "timeout": Field(
            OneOf(Number(minimum=0, exclusive=True)),
            "Seconds the process has to become ready before it is stopped and started again.",
        ),
    },
    _model(ReadyConfig),
    rules=(ExactlyOne(("command", "tcp", "http", "pidfile")),),
    what="readiness probe (a map with one of 'command', 'tcp', 'http' or 'pidfile')",
)

RESTART = Record(
    {
        "min_uptime": Field(
            OneOf(Number(minimum=0)),
            "Seconds a process must run for its exit not to count as a failure.",
        ),
        "initial_delay": Field(
            OneOf(Number(minimum=0)), "Seconds before restarting after a first failure."
        ),
        "factor": Field(
            OneOf(Number(minimum=1)), "How much the delay grows with each further failure in a row."
        ),
        "max_delay": Field(
            OneOf(Number(minimum=0)), "The longest delay before a restart, in seconds."
        ),
        "max_failures": Field(
            OneOf(Whole(1)),
            "Failures after which the task gives up: it is `failed`, not restarted until "
            "`taskforce start`, an event or a reload that changes it. Default: never give up.",
        ),
        "window": Field(
            OneOf(Number(minimum=0, exclusive=True)),
            "Seconds within which max_failures failures give up (default: failures in a row).",
        ),
    },
    _model(RestartConfig),
)

LIVE = Record(
    {
        **_probe_kinds("alive", "while", "TCP connections"),
        "interval": Field(
            OneOf(Number(minimum=0, exclusive=True)), "Seconds between probes (default 10)."
        ),
        "timeout": Field(
            OneOf(Number(minimum=0, exclusive=True)),
            "Seconds one probe may take before it counts as failed (default 2).",
        ),
        "failures": Field(
            Whole(1),
            "Failed probes in a row after which the process is restarted (default 3).",
        ),
        "initial_delay": Field(
            OneOf(Number(minimum=0)),
            "Seconds after the process is ready before the first probe (default: interval).",
        ),
    },
    _model(LiveConfig),
    rules=(ExactlyOne(("command", "tcp", "http")),),
    what="liveness probe (a map with one of 'command', 'tcp' or 'http')",
)

SCHEDULE = Record(
    {
        "cron": Field(
            CRON_EXPRESSION,
            "A cron expression (minute hour day-of-month month day-of-week, or @hourly, "
            "@daily...): the task runs at each time it names.",
        ),
        "timezone": Field(
            TIME_ZONE,
            "The time zone the cron expression is read in (an IANA name such as "
            "Europe/Paris); local time if not given.",
        ),
        "interval": Field(
            Number(minimum=0, exclusive=True), "Seconds between runs, counted from start."
        ),
        "run_on_start": Field(
            Flag(), "true: also run when taskforce starts (or the task is added). Default false."
        ),
        "overlap": Field(
            enum_choice(Overlap),
            "When a run is due while the previous one still runs: skip (the default) drops "
            "it, queue runs it when the previous one ends (one pending run at most).",
        ),
    },
    _model(ScheduleSpec),
    rules=(ExactlyOne(("cron", "interval")), OnlyWith("timezone", "cron")),
    what="schedule (a map with 'cron' or 'interval')",
)


def _socket(at: Path, values: dict[str, Any]) -> SocketConfig:
    return SocketConfig(name=str(at[-1]), **values)  # a socket is named by its key


SOCKET = Record(
    {
        "listen": Field(
            OneOf(ListenText()),
            "host:port, [IPv6]:port (port 0: the kernel picks one), or an absolute path for "
            "a unix socket; {name} substitutions and conditionals allowed.",
            required=True,
        ),
        "backlog": Field(Whole(), f"Connections queued until accepted ({DEFAULT_BACKLOG})."),
        "reuseport": Field(Flag(), "true: bind with SO_REUSEPORT (TCP)."),
        "mode": Field(FileMode(), "A unix socket file's permissions, as a quoted octal string."),
        "owner": Field(UserOrGroup(), "A unix socket file's owner (name or uid)."),
        "group": Field(UserOrGroup(), "A unix socket file's group (name or gid)."),
    },
    _socket,
    what="socket (a map with 'listen', or the listen string alone)",
)


@dataclass(frozen=True)
class SocketEntry(Shape[SocketConfig]):
    """A socket: its listen string alone, or a map with `listen` and options."""

    def check(self, value: object, at: Path, report: Reporter) -> SocketConfig | Invalid:
        if isinstance(value, str):
            listen = ListenText().check(value, at, report)
            return listen if isinstance(listen, Invalid) else SocketConfig(str(at[-1]), listen)
        return SOCKET.check(value, at, report)

    def json_schema(self, defs: Defs) -> JsonSchema:
        return {"anyOf": [{"type": "string", "minLength": 1}, SOCKET.json_schema(defs)]}


TASK_RESTART = Record(
    {
        **RESTART.fields,
        "rolling": Field(
            Rolling(),
            "Replace the task's processes a few at a time, each new one started (and ready) "
            "before the old one stops: true (one at a time), a number at a time, or false. "
            "The default: one at a time when count is more than 1.",
        ),
        "overlap": Field(
            Flag(),
            "true: the task may run twice at once, so even a single process is replaced "
            "by starting the new one first.",
        ),
    },
    _model(RestartConfig),
)

ENV_FILE = ListOf(
    EnvFileEntry(
        Record(
            {
                "path": Field(Text(), "The file's path.", required=True),
                "optional": Field(Flag(), "true: a missing file is no error."),
            },
            _model(EnvFile),
            what="env_file entry (a map with 'path' and 'optional')",
        )
    ),
    single_ok=True,
)
ENV_FILE_DOC = (
    "Environment files (dotenv: KEY=VALUE lines, `export`, quotes, # comments) whose "
    "variables join the context just below the `defines` of the same level. A relative "
    "path is relative to the file naming it; a missing file is an error unless written "
    "'-path' or {path: ..., optional: true}."
)
INCLUDE = Field(
    ListOf(Text(), single_ok=True),
    "Configuration files whose tasks join these: paths and glob patterns, relative to the "
    "file naming them, read in sorted order. A pattern matching nothing is fine; a named "
    "file that is missing is an error. Included files may include others.",
)

TASK = Record(
    {
        "commands": Field(
            MapOf(
                Conditional(allow_scalar=False, non_empty=True, program=True),
                key=Name("command name"),
                required=("start",),
            ),
            "The commands that start and manage the task, by name. Each is a list: the "
            "program, then its arguments, with {name} substitutions and conditional maps. "
            "'start' is required; 'stop' replaces the built-in stop; others are run by events.",
            required=True,
        ),
        "control": Field(
            OneOf(enum_choice(Control)),
            "How the task is managed: wait (keep it running, restart it when it exits; the "
            "default), once (run once, never restarted), off (not run; tasks requiring it "
            "wait), suspend (not run; tasks requiring it go ahead), nowait, adopt, event.",
        ),
        "count": Field(
            OneOf(Count()),
            "How many processes of the task to run, 1 if not given. Each has its own "
            "Task_instance, from 0.",
        ),
        "cwd": Field(OneOf(Text()), "The working directory of the task's processes."),
        "defaults": Field(
            CONTEXT_MAP, "Context entries for this task, used only where none is set yet."
        ),
        "defines": Field(CONTEXT_MAP, "Context entries for this task, overriding others."),
        "role_defaults": Field(
            ROLE_CONTEXT_MAP, "Per-role context entries for this task, used only where unset."
        ),
        "role_defines": Field(
            ROLE_CONTEXT_MAP, "Per-role context entries for this task, overriding others."
        ),
        "events": Field(
            ListOf(EVENT),
            "What to do when something happens: run a command or send a signal.",
        ),
        "group": Field(OneOf(UserOrGroup()), "The group (name or gid) the processes run as."),
        "user": Field(OneOf(UserOrGroup()), "The user (name or uid) the processes run as."),
        "no_new_privs": Field(
            Flag(),
            "true: the processes (and everything they run) can gain no privileges through "
            "setuid programs or file capabilities (Linux no_new_privs). Default false.",
        ),
        "onexit": Field(
            ListOf(ONEXIT, single_ok=True),
            "What to do once every process of the task has exited after a stop: start a "
            "'once' task.",
        ),
        "pidfile": Field(
            OneOf(Text()),
            "Where the task's process writes its pid; also available as {Task_pidfile}.",
        ),
        "procname": Field(OneOf(Text()), "The argv[0] the start command's program is run with."),
        "requires": Field(
            ListOf(Choices(Text()), single_ok=True),
            "Tasks that must have run before this one starts: a 'once' task once it has "
            "exited, others once started and past their start_delay.",
        ),
        "roles": Field(
            ListOf(Name("role name"), single_ok=True),
            "The roles the task runs in; without this key it runs whatever the roles.",
        ),
        "start_delay": Field(
            OneOf(Number(minimum=0)),
            "Seconds after this task starts before tasks requiring it may start.",
        ),
        "time_limit": Field(
            OneOf(Number(minimum=0, exclusive=True)),
            "Seconds a process of the task may run before it is stopped.",
        ),
        "ready": Field(
            READY,
            "How to tell the task is ready; tasks that require it wait for readiness (then "
            "for its start_delay).",
        ),
        "output": Field(
            OUTPUT,
            "Where the task's stdout and stderr go (default /dev/null); key by key over "
            "settings.output. A change applies to running processes without a restart.",
        ),
        "live": Field(
            LIVE,
            "wait tasks: how to tell a running process still works; after `failures` failed "
            "probes in a row it is restarted (and the `unhealthy` event notified).",
        ),
        "schedule": Field(
            SCHEDULE,
            "once and event tasks: run by a timer, on a cron expression or every `interval` "
            "seconds.",
        ),
        "sockets": Field(
            MapOf(SocketEntry(), key=SocketName()),
            "Listening sockets taskforce binds (before dropping to the task's user) and holds "
            "across restarts, passed to every process as descriptors 3, 4... in this order "
            "with LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES (systemd socket activation).",
        ),
        "restart": Field(
            TASK_RESTART,
            "This task's own restart policy, key by key over settings.restart (max_failures "
            "and window included), and how its processes are replaced by a restart, a file "
            "change or a changed configuration: rolling (a few at a time, new before old) "
            "and overlap.",
        ),
        "limits": Field(
            LIMITS,
            "Limits of each process (rlimits: nofile, nproc, core, as, stack...) and of each "
            "instance's cgroup (memory, cpu, pids). A change restarts the processes.",
        ),
        "umask": Field(Umask(), "The file mode creation mask of the processes ('0027')."),
        "nice": Field(Whole(-20, 19), "The scheduling priority of the processes (-20 to 19)."),
        "oom_score_adj": Field(
            Whole(-1000, 1000),
            "How willingly the kernel's OOM killer picks the processes (-1000: never, "
            "1000: first).",
        ),
        "memory_restart": Field(
            ByteSize(),
            "Restart an instance whose memory (its cgroup's, else its process's resident "
            "memory) passes this size (400M).",
        ),
        "placement": Field(
            OneOf(enum_choice(Placement)),
            "Where the task runs: host (every host where it is in scope; the default) or "
            "cluster (one host of those, elected through etcd when the configuration comes "
            "from etcd; without etcd, this host is the whole cluster).",
        ),
        "env_file": Field(ENV_FILE, ENV_FILE_DOC),
    },
    _task,
    what="task (a map with at least 'commands')",
    habits=ENVIRONMENT_HABITS,
)

# Supervisor-wide settings: a new one is a line here plus a field of model.Settings.
SETTINGS = Record(
    {
        "restart": Field(RESTART, "How quickly processes that keep failing are restarted."),
        "stop_timeout": Field(
            OneOf(Number(minimum=0, exclusive=True)),
            "Seconds between asking a process to stop and killing it with SIGKILL.",
        ),
        "check_interval": Field(
            OneOf(Number(minimum=0, exclusive=True)),
            "nowait and adopt tasks: seconds between health checks (the check command, or "
            "signal 0 to the pid).",
        ),
        "check_timeout": Field(
            OneOf(Number(minimum=0, exclusive=True)),
            "nowait and adopt tasks: seconds a check command may take before it is killed "
            "and counted as failed.",
        ),
        "start_timeout": Field(
            OneOf(Number(minimum=0, exclusive=True)),
            "nowait and adopt tasks: seconds after the start command exits for the pidfile "
            "to name a live daemon.",
        ),
        "http": Field(
            ListOf(HTTP_LISTENER, single_ok=True),
            "Where the HTTP status and control service listens. Without this key, a unix "
            "socket next to the pidfile (owner only, control allowed); an empty list turns "
            "the service off. Read at start: changes apply when taskforce restarts.",
        ),
        "notify": Field(
            ListOf(NOTIFY_TARGET, single_ok=True),
            "Where task state changes are reported: webhooks (url) and commands (command). "
            "Changes apply at the next event after a reload.",
        ),
        "output": Field(
            OUTPUT,
            "The output of every task that does not set its own (key by key): stdout, "
            "stderr, max_bytes, backups, syslog_socket.",
        ),
        "memory_check_interval": Field(
            Number(minimum=0, exclusive=True),
            "Seconds between samples of the memory of tasks with memory_restart, where no "
            "cgroup event reports it (10 if not given; no timer without memory_restart).",
        ),
        "all_roles": Field(
            Flag(),
            "true: a task with `roles` runs only where every role it lists is active; "
            "false (the default): one of them is enough.",
        ),
    },
    _model(Settings),
)

CONFIG = Record(
    {
        "defines": Field(
            CONTEXT_MAP, "Context entries for every task, overriding the environment."
        ),
        "role_defines": Field(
            ROLE_CONTEXT_MAP, "Per-role context entries, added when the role is active."
        ),
        "defaults": Field(
            CONTEXT_MAP, "Context entries for every task, used only where none is set yet."
        ),
        "role_defaults": Field(
            ROLE_CONTEXT_MAP, "Per-role context entries, used only where none is set yet."
        ),
        "tasks": Field(
            # Remembered: a reload checks again only the tasks that changed.
            MapOf(Remembered(TASK), key=Name("task name")),
            "The tasks, by name.",
        ),
        "settings": Field(SETTINGS, "Supervisor-wide settings (a taskforce extension)."),
        "include": INCLUDE,
        "env_file": Field(ENV_FILE, ENV_FILE_DOC),
    },
    _model(Config),
    what="configuration map",
    habits=ENVIRONMENT_HABITS,
)

# An included file: tasks, with defines, defaults and env_file for those tasks alone.
FRAGMENT = Record(
    {
        "tasks": CONFIG.fields["tasks"],
        "defines": Field(
            CONTEXT_MAP, "Context entries for the tasks of this file, overriding the top level."
        ),
        "defaults": Field(
            CONTEXT_MAP, "Context entries for the tasks of this file, used only where unset."
        ),
        "include": INCLUDE,
        "env_file": Field(ENV_FILE, ENV_FILE_DOC),
    },
    _model(Fragment),
    what="included configuration map (with 'tasks', 'defines', 'defaults', 'include', "
    "'env_file'; settings and role maps belong to the main file)",
    habits=ENVIRONMENT_HABITS,
)
