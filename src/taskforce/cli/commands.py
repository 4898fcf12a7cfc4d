# Over 450 lines: one short function per client subcommand, sharing the client and the renderers.
"""The client subcommands of `taskforce`: talk to a running taskforce over its HTTP API.

    taskforce status [--json] [--all] [TASK...]
    taskforce start|stop|restart TASK...
    taskforce signal SIG TASK...
    taskforce scale TASK N
    taskforce control TASK CONTROL
    taskforce reload
    taskforce logs TASK [-f] [-n N] [--json]

Exit codes: 0 done; 1 the server refused or failed the request (unknown task, not
allowed, unauthorized, bad answer); 2 bad usage; 4 the server cannot be reached (also
a timeout, or an untrusted TLS certificate); 130 interrupted; 141 stdout was closed.

This module is imported by the main parser on every run, the daemon included, so it only
builds argparse parsers; the HTTP client and the table renderer are imported when a
client command actually runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from taskforce.cli.parser import Parser

if TYPE_CHECKING:
    from taskforce.cli.client import Client

CLIENT_COMMANDS = frozenset(
    {
        "status",
        "start",
        "stop",
        "restart",
        "signal",
        "scale",
        "control",
        "reload",
        "logs",
        "upgrade",
    }
)

_EPILOG = (
    "exit status: 0 done, 1 refused or failed by the server (or not done in time), "
    "2 bad usage, 3 (status) a task is not in its wanted state, 4 the server cannot be reached"
)
_TASKS_HELP = "Task names, or 'all' for every task"
WAIT_DEFAULT = 60.0  # seconds stop and restart wait for the processes, without --timeout
_EXIT_NOT_WANTED = 3
# Tasks `status` lists in full when its output is not a terminal (else the terminal's height).
NOT_A_TERMINAL_ROWS = 50
_GLOB = re.compile(r"[*?[]")
_EXIT_FAILED = 1
_EXIT_BROKEN_PIPE = 141  # what a shell reports for a command killed by SIGPIPE
_EXIT_INTERRUPTED = 130


def add_client_commands(subparsers: argparse._SubParsersAction[Parser]) -> None:
    """Register the client subcommands on the `taskforce` command's subparsers."""
    common = _common_options()

    def command(name: str, what: str) -> argparse.ArgumentParser:
        return subparsers.add_parser(
            name, parents=[common], help=what, description=what, epilog=_EPILOG
        )

    p = command(
        "status",
        "Show the tasks of the running taskforce; exit 3 when one is not in its wanted "
        "state (stopped, backing off, failed...)",
    )
    p.add_argument("--json", action="store_true", help="Print the status as JSON")
    p.add_argument(
        "--all",
        action="store_true",
        help="List every task, however many (by default, more tasks than fit on the "
        f"terminal, or than {NOT_A_TERMINAL_ROWS} when not on one, show as a summary line and "
        "the tasks not in their wanted state)",
    )
    p.add_argument(
        "tasks", nargs="*", metavar="TASK", help="Only these tasks, or glob patterns (web-*)"
    )
    for action, what in (
        ("start", "Start tasks (also undoing a stop)"),
        ("stop", "Stop tasks, and wait until their processes are gone: their control "
                 "becomes 'off' until started again"),
        ("restart", "Stop and start the processes of tasks, and wait until new ones run"),
    ):  # fmt: skip
        p = command(action, what)
        p.add_argument("tasks", nargs="+", metavar="TASK", help=_TASKS_HELP)
        if action != "start":
            p.add_argument(
                "--no-wait", action="store_true", help="Return once the request is accepted"
            )
    p = command("signal", "Send a signal to the processes of tasks")
    p.add_argument("signal", metavar="SIG", help="Signal name or number: HUP, SIGUSR1, 15")
    p.add_argument("tasks", nargs="+", metavar="TASK", help=_TASKS_HELP)
    p = command("scale", "Set the number of processes of a task")
    p.add_argument("task", metavar="TASK")
    p.add_argument(
        "count",
        metavar="N",
        type=_scale,
        help="Processes wanted (0 stops the task); +N or -N: that many more, or fewer",
    )
    p = command("control", "Set the control of a task until the next reload")
    p.add_argument("task", metavar="TASK")
    p.add_argument("control", metavar="CONTROL", help="wait, once, off, suspend...")
    command("reload", "Reload the configuration and roles files")
    p = command("logs", "Show the recent output of a task (its output must not be null)")
    p.add_argument("task", metavar="TASK")
    p.add_argument("-f", "--follow", action="store_true", help="Keep showing new output")
    p.add_argument(
        "-n", "--lines", type=_count, default=10, metavar="N", help="Recent lines (default 10)"
    )
    p.add_argument("--json", action="store_true", help="One JSON object per line")
    command(
        "upgrade",
        "Re-execute the running taskforce in place with its current code, keeping every "
        "task running (with -p PIDFILE, SIGUSR2 through the pidfile if its socket is silent)",
    )


def _common_options() -> Parser:
    common = Parser(add_help=False)
    group = common.add_argument_group("connection")
    # SUPPRESS: when not given here, the main parser's option holds (`taskforce
    # --server X status` as well as `taskforce status --server X`).
    group.add_argument(
        "--server",
        metavar="URL_OR_SOCKET",
        default=argparse.SUPPRESS,
        help="A unix socket path (with a '/'), http://HOST:PORT or https://HOST:PORT; "
        "default $TASKFORCE_SERVER, else -p PIDFILE's, else the default socket",
    )
    group.add_argument(
        "--token",
        help="Bearer token for the API; default $TASKFORCE_TOKEN (which, unlike this option, "
        "other users cannot see with ps)",
    )
    group.add_argument("--cafile", help="CA certificates to check an https server with")
    group.add_argument(
        "--insecure", action="store_true", help="Do not check the https server's certificate"
    )
    group.add_argument(
        "-p",
        "--pidfile",
        default=argparse.SUPPRESS,
        help="Pidfile of the taskforce to talk to: the server it recorded beside it "
        "(PIDFILE.server), else its socket next to it (NAME.sock)",
    )
    group.add_argument(
        "--timeout",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="Give up after this long: each request (default 10), and the wait of stop "
        f"and restart (default {WAIT_DEFAULT:g})",
    )
    return common


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {value}")
    return value


def _scale(text: str) -> tuple[bool, int]:
    """N, or +N / -N (relative): (relative, value)."""
    relative = text[:1] in ("+", "-")
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0 and not relative:
        raise argparse.ArgumentTypeError(f"must not be negative: {value}")
    return relative, value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text}")
    return value


def run_client_command(args: argparse.Namespace) -> int:
    """Run the client command in `args.command`; report failures in one line on stderr,
    naming the server asked and how it was chosen."""
    from taskforce.cli.client import ClientError

    client = None
    try:
        client = _client(args)
        code = _HANDLERS[args.command](client, args)
    except ClientError as exc:
        where = client.endpoint if client is not None else None
        if where is not None and str(where) not in exc.message:
            _error(f"{exc.message} [server: {where.described}]")
        else:
            _error(exc.message)
        return exc.exit_code
    except KeyboardInterrupt:
        return _EXIT_INTERRUPTED
    except BrokenPipeError:
        # `taskforce status | head`: the reader left. Point stdout at /dev/null so the
        # interpreter's final flush does not complain about it either.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stdout = sys.stdout.fileno()
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, stdout)
            finally:
                os.close(devnull)
        return _EXIT_BROKEN_PIPE
    if code == _EXIT_FAILED:
        _error(f"server: {client.endpoint.described}")
    return code


def _client(args: argparse.Namespace) -> Client:
    from taskforce.cli import defaults
    from taskforce.cli.client import DEFAULT_TIMEOUT, Client
    from taskforce.cli.server import resolve

    endpoint = resolve(
        getattr(args, "server", None),
        getattr(args, "pidfile", None),
        default_pidfile=defaults.DEFAULT_PIDFILE,
    )
    return Client(
        endpoint,
        token=args.token or os.environ.get("TASKFORCE_TOKEN") or None,
        timeout=args.timeout or DEFAULT_TIMEOUT,
        cafile=args.cafile,
        insecure=args.insecure,
    )


def _tasks(client: Client, names: Sequence[str] = ()) -> dict[str, Any]:
    """The status of every task, or of the tasks `names` names (an older taskforce, which
    does not filter, answers them all: callers look up the names they want)."""
    from taskforce.cli.client import RequestError

    query = [("task", name) for name in dict.fromkeys(names)]
    tasks = client.get("/status/tasks", query or None)
    if not isinstance(tasks, dict) or not all(isinstance(t, dict) for t in tasks.values()):
        raise RequestError(
            f"taskforce at {client.endpoint.described} sent an unexpected status answer"
        )
    return tasks


def in_wanted_state(task: dict[str, Any]) -> bool:
    """Whether a task (from /status/tasks) is as asked: running, done, stopped on purpose..."""
    from taskforce.core.wanted import is_wanted

    processes = task.get("processes") or ()
    return is_wanted(task.get("state"), (p.get("status") for p in processes))


def _status(client: Client, args: argparse.Namespace) -> int:
    import time

    from taskforce.cli.render import status_table, use_colour

    summary = None if args.tasks or args.json or args.all else _summary(client)
    condensed = summary is not None and summary["total"] > _screenful()
    if summary is not None and condensed:
        # Too many to read: how many are in each state, and those that are not as wanted.
        tasks = _tasks_not_wanted(client)
        print(summary_line(summary))
    else:
        tasks = _tasks(client, args.tasks)
    missing = []
    if args.tasks:
        tasks = {name: task for name, task in tasks.items() if _named(name, args.tasks)}
        missing = [t for t in dict.fromkeys(args.tasks) if not any(_named(n, [t]) for n in tasks)]
    if args.json:
        print(json.dumps(tasks, indent=2))
    elif tasks or not (missing or condensed):
        sys.stdout.write(status_table(tasks, time.time(), colour=use_colour(sys.stdout)))
    if not args.json and (tasks or not missing):
        _reload_notes(client)
    for name in missing:
        _error(f"no task named {name!r}" if not _GLOB.search(name) else f"no task matches {name!r}")
    if missing:
        return _EXIT_FAILED
    return 0 if all(in_wanted_state(t) for t in tasks.values()) else _EXIT_NOT_WANTED


def _named(name: str, asked: Sequence[str]) -> bool:
    """Whether a task is one of those asked for: by its name, or a glob pattern (web-*)."""
    import fnmatch

    return name in asked or any(_GLOB.search(a) and fnmatch.fnmatchcase(name, a) for a in asked)


def _screenful() -> int:
    """How many tasks `status` lists in full: a terminal's height (less the header and a
    line of notes), or NOT_A_TERMINAL_ROWS when the output goes elsewhere."""
    import shutil

    if not sys.stdout.isatty():
        return NOT_A_TERMINAL_ROWS
    return max(10, shutil.get_terminal_size().lines - 3)


def _summary(client: Client) -> dict[str, Any] | None:
    """The counts of /status/summary; None from a taskforce that has none (older)."""
    from taskforce.cli.client import RequestError

    try:
        summary = client.get("/status/summary")
    except RequestError as exc:
        if exc.status == 404:
            return None
        raise
    if not isinstance(summary, dict) or not isinstance(summary.get("total"), int):
        raise RequestError(
            f"taskforce at {client.endpoint.described} sent an unexpected summary answer"
        )
    return summary


def _tasks_not_wanted(client: Client) -> dict[str, Any]:
    from taskforce.cli.client import RequestError

    tasks = client.get("/status/tasks", [("state", "unwanted")])
    if not isinstance(tasks, dict) or not all(isinstance(t, dict) for t in tasks.values()):
        raise RequestError(
            f"taskforce at {client.endpoint.described} sent an unexpected status answer"
        )
    return {name: task for name, task in tasks.items() if not in_wanted_state(task)}


def summary_line(summary: dict[str, Any]) -> str:
    """`10000 tasks: 9998 running, 2 failed; 2 not in their wanted state (--all: every task)`"""
    states = summary.get("states")
    counts = ", ".join(
        f"{n} {state}"
        for state, n in (states.items() if isinstance(states, dict) else ())
        if isinstance(n, int) and n
    )
    unwanted = summary.get("unwanted")
    tail = (
        "every one in its wanted state"
        if not unwanted
        else f"{unwanted} not in their wanted state, listed below"
    )
    return f"{summary['total']} tasks: {counts or 'none'}; {tail} (--all lists every task)"


def _names(client: Client, tasks: list[str], status: dict[str, Any] | None = None) -> list[str]:
    """The tasks named, 'all' standing for every one (in `status`, else asked for)."""
    if "all" in tasks and status is None:
        status = _tasks(client)
    names: list[str] = []
    for name in tasks:
        names.extend(status or () if name == "all" else [name])
    return list(dict.fromkeys(names))


def _reload_notes(client: Client) -> None:
    """Say on stderr what the task table does not: a rejected configuration change, and
    temporary overrides (control, count) in force."""
    from taskforce.cli.client import RequestError

    try:
        facts = client.get("/status/reload")
    except RequestError:
        return  # an older taskforce, or a listener that does not say: the table is enough
    if not isinstance(facts, dict):
        return
    problems = facts.get("reload_error")
    if isinstance(problems, list) and problems:
        _error(f"the latest change of {facts.get('file')} was rejected; the previous one runs:")
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
    overrides = facts.get("overrides")
    if isinstance(overrides, dict) and overrides:
        shown = ", ".join(
            f"{task} {key}={value}"
            for task, fields in sorted(overrides.items())
            if isinstance(fields, dict)
            for key, value in sorted(fields.items())
        )
        print(f"temporary overrides (until the next reload): {shown}", file=sys.stderr)


def _each_task(client: Client, tasks: list[str], act: Callable[[str], str]) -> int:
    """Run `act` for every task, reporting each; failures do not stop the others."""
    failed = _request_each(client, tasks, act)
    return 1 if failed else 0


def _request_each(client: Client, tasks: list[str], act: Callable[[str], str]) -> list[str]:
    """Run `act` for every task, printing what it says; the tasks it failed for."""
    from taskforce.cli.client import RequestError

    failed = []
    for task in tasks:
        try:
            said = act(task)
        except RequestError as exc:
            if exc.status == 401:
                raise  # the same for every task: say it once
            _error(f"{task}: {exc.message}")
            failed.append(task)
            continue
        if said:
            print(f"{task}: {said}", flush=True)
    return failed


def _action(client: Client, args: argparse.Namespace) -> int:
    from taskforce.cli.client import task_path

    waits = args.command in ("stop", "restart") and not args.no_wait
    # What a restart must see replaced (every task's only when 'all' is asked for).
    before = _tasks(client, [] if "all" in args.tasks else args.tasks) if waits else None
    names = _names(client, args.tasks, before)

    def act(task: str) -> str:
        client.post(task_path(task, args.command))
        return "" if waits else f"{args.command} requested"

    failed = _request_each(client, names, act)
    if not waits:
        return 1 if failed else 0
    asked = [t for t in names if t not in failed]
    left = _wait(client, args, asked, before or {})
    for task in asked:
        if task not in left:
            print(f"{task}: {'stopped' if args.command == 'stop' else 'restarted'}", flush=True)
    for task, what in left.items():
        _error(f"{task}: {what}")
    return 1 if failed or left else 0


def _wait(
    client: Client, args: argparse.Namespace, tasks: list[str], before: dict[str, Any]
) -> dict[str, str]:
    """Poll the status until the tasks have stopped (or, restarted, run new processes);
    past the deadline, what is left of each task that has not."""
    import time

    timeout = args.timeout or WAIT_DEFAULT
    deadline = time.monotonic() + timeout
    old = {t: _pids(before.get(t, {})) for t in tasks}
    delay = 0.05
    while True:
        status = _tasks(client, tasks)
        left = {}
        for task in tasks:
            now = status.get(task)
            if now is None:
                continue  # gone from the configuration meanwhile: nothing to wait for
            what = _unfinished(args.command, now, old[task])
            if what is not None:
                left[task] = what
        if not left:
            return {}
        if time.monotonic() >= deadline:
            return {task: f"{what} after {timeout:g}s" for task, what in left.items()}
        time.sleep(delay)  # the server has no "wait for" request: poll it, gently
        delay = min(delay * 2, 0.5)


def _unfinished(command: str, task: dict[str, Any], old: set[int]) -> str | None:
    """What keeps a stop or restart of this task from being done; None once it is."""
    pids = _pids(task)
    if command == "stop":
        if pids or task.get("state") == "stopping":
            return f"still running: pid {_listed(pids)} ({task.get('state')})"
        return None
    if pids & old:
        return f"still running its old processes: pid {_listed(pids & old)}"
    if not in_wanted_state(task) or task.get("state") == "starting":
        why = f": {task['why']}" if task.get("why") else ""
        return f"not running again: {task.get('state')}{why}"
    return None


def _pids(task: dict[str, Any]) -> set[int]:
    return {p["pid"] for p in task.get("processes") or () if isinstance(p.get("pid"), int)}


def _listed(pids: set[int]) -> str:
    return ", ".join(str(p) for p in sorted(pids)) or "-"


def _signal(client: Client, args: argparse.Namespace) -> int:
    from taskforce.cli.client import task_path

    def act(task: str) -> str:
        answer = client.post(task_path(task, "signal"), {"signal": args.signal})
        # The server's spelling of the signal (SIGHUP for "hup" or "1") when it gives one.
        name = _field(answer, "signal") or args.signal
        return f"{name} sent"

    return _each_task(client, _names(client, args.tasks), act)


def _scale_task(client: Client, args: argparse.Namespace) -> int:
    from taskforce.cli.client import RequestError

    relative, value = args.count

    def act(task: str) -> str:
        count = value
        if relative:
            current = _tasks(client, [task]).get(task)
            if current is None:
                raise RequestError(f"no task named {task!r}")
            count = int(current.get("count") or 0) + value
            if count < 0:
                raise RequestError(f"cannot remove {-value} of its {count - value} process(es)")
        answer = client.post("/manage/count", {task: str(count)})
        return f"count set to {_echo(answer, task, 'count') or count}"

    return _each_task(client, [args.task], act)


def _control(client: Client, args: argparse.Namespace) -> int:
    def act(task: str) -> str:
        answer = client.post("/manage/control", {task: args.control})
        return f"control set to {_echo(answer, task, 'control') or args.control}"

    return _each_task(client, [args.task], act)


def _reload(client: Client, args: argparse.Namespace) -> int:
    client.post("/manage/reload")
    print("configuration reloaded")
    return 0


def _upgrade(client: Client, args: argparse.Namespace) -> int:
    """Ask the running taskforce to re-execute itself: through its API; with -p PIDFILE,
    by SIGUSR2 through the pidfile when nothing answers there."""
    from taskforce.cli.client import UnreachableError
    from taskforce.cli.server import SERVER_ENV

    pidfile: str | None = getattr(args, "pidfile", None)
    # The signal goes only where the user pointed: -p, with no server named before it.
    by_pidfile = pidfile and not getattr(args, "server", None) and not os.environ.get(SERVER_ENV)
    try:
        client.post("/manage/upgrade")
    except UnreachableError:
        if not by_pidfile or pidfile is None:
            raise
        from taskforce.runtime.own.pidfile import PidfileError, signal_running

        try:
            pid = signal_running(pidfile, signal.SIGUSR2)
        except PidfileError as exc:
            _error(str(exc))
            return _EXIT_FAILED
        print(f"taskforce pid {pid}: upgrade requested")
        return 0
    print(f"taskforce at {client.endpoint}: upgrade requested")
    return 0


def _logs(client: Client, args: argparse.Namespace) -> int:
    from taskforce.cli.follow import show

    return show(client, args.task, args.lines, args.json, args.follow)


def _field(answer: Any, key: str) -> str | None:
    value = answer.get(key) if isinstance(answer, dict) else None
    return value if isinstance(value, str) and value else None


def _echo(answer: Any, task: str, key: str) -> str | None:
    """The value the server set: /manage/control and /manage/count answer per task,
    {TASK: {"task": TASK, KEY: VALUE}}, since one request may name several tasks."""
    per_task = answer.get(task) if isinstance(answer, dict) else None
    return _field(per_task, key) or _field(answer, key)


def _error(message: str) -> None:
    print(f"taskforce: {message}", file=sys.stderr, flush=True)


_HANDLERS: dict[str, Callable[[Client, argparse.Namespace], int]] = {
    "status": _status,
    "start": _action,
    "stop": _action,
    "restart": _action,
    "signal": _signal,
    "scale": _scale_task,
    "control": _control,
    "reload": _reload,
    "logs": _logs,
    "upgrade": _upgrade,
}

__all__ = ["CLIENT_COMMANDS", "add_client_commands", "run_client_command"]
