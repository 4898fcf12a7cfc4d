"""The `taskforce` command: the supervisor, with the flags of the specification.

Exit codes:
  0  stopped normally; or -C found no problem; or -S/-R delivered
  1  -C found problems; or -S/-R found no running taskforce
  2  bad usage; or the pidfile is held by a running taskforce
  3  could not start (unusable configuration, pidfile not writable...)
  N  with --exit-with TASK: the status TASK's process ended with (128+N for signal N)
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from taskforce import __version__
from taskforce.app import daemon
from taskforce.app.daemon import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE
from taskforce.cli import defaults
from taskforce.cli.commands import CLIENT_COMMANDS, add_client_commands, run_client_command
from taskforce.cli.completion import add_completion_command
from taskforce.cli.defaults import DEFAULT_CONFIG, DEFAULT_PIDFILE, DEFAULT_ROLES_FILES
from taskforce.cli.fleet import add_fleet_command
from taskforce.cli.parser import Parser
from taskforce.fleet.urls import is_etcd_url, missing_fleet_extra


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = Parser(
        prog=prog,
        description="Manage tasks and process pools",
        epilog="With no COMMAND, taskforce runs as the supervisor. The commands talk to a "
        "running taskforce through its control socket (see 'taskforce COMMAND -h'); 'schema' "
        "prints the JSON Schema of the configuration.",
    )
    parser.add_argument("-V", "--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="Verbose logging for debugging"
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="Quiet logging, warnings and errors only"
    )
    parser.add_argument(
        "-e", "--log-stderr", action="store_true", help="Log to stderr instead of syslog"
    )
    parser.add_argument(
        "--log-file",
        metavar="PATH",
        help="Log to this file (reopened when rotated away, and on SIGUSR1)",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="json: one JSON object a line, for log shippers",
    )
    parser.add_argument("-b", "--background", action="store_true", help="Run in the background")
    parser.add_argument(
        "-p",
        "--pidfile",
        help=f'Pidfile path, default {DEFAULT_PIDFILE} (with -b, -R or -S), "-" means none',
    )
    parser.add_argument(
        "-f",
        "--config-file",
        default=DEFAULT_CONFIG,
        help=f"Configuration. File will be watched for changes. Default {DEFAULT_CONFIG}",
    )
    parser.add_argument(
        "-r",
        "--roles-file",
        help="File to load roles from. File will be watched for changes. Default is selected from: "
        + ", ".join(DEFAULT_ROLES_FILES),
    )
    parser.add_argument(
        "-L", "--logging-name", help="Name used in log messages, default the program name"
    )
    parser.add_argument(
        "-C", "--check-config", action="store_true", help="Check the config and exit"
    )
    parser.add_argument(
        "-R",
        "--reset",
        action="store_true",
        help="Cause the background taskforce to reset. All unadoptable tasks will be stopped "
        "and the program will restart itself.",
    )
    parser.add_argument(
        "-S",
        "--stop",
        action="store_true",
        help="Cause the background taskforce to exit. All unadoptable tasks will be stopped.",
    )
    parser.add_argument(
        "-w",
        "--http",
        action="append",
        metavar="LISTEN",
        help="Also serve the HTTP status/control service here: a unix socket path "
        "(containing '/') or [host][:port] (TCP); may be repeated",
    )
    parser.add_argument(
        "-c", "--certfile", help="PEM file (key and chain) to serve the -w listeners over HTTPS"
    )
    parser.add_argument(
        "-A",
        "--allow-control",
        action="store_true",
        help="Allow control requests on the -w listeners (TCP needs --token-file)",
    )
    parser.add_argument(
        "--token-file", help="File holding the bearer token that -w listeners require"
    )
    parser.add_argument(
        "--exit-with",
        metavar="TASK",
        help="When TASK's process exits on its own (a container's main process), stop "
        "every task and exit with its status: its exit code, 128+N if killed by signal N",
    )
    parser.add_argument(
        "--server",
        metavar="URL_OR_SOCKET",
        help="The running taskforce that -C compares with, and the client commands talk "
        "to (before $TASKFORCE_SERVER and -p)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("schema", help="Print the JSON Schema of the configuration file")
    add_client_commands(sub)
    add_fleet_command(sub)
    add_completion_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    prog = os.path.basename(sys.argv[0]) if argv is None else "taskforce"
    if prog in ("__main__.py", "-c", ""):
        prog = "taskforce"
    parser = build_parser(prog)
    if argv is None and "_ARGCOMPLETE" in os.environ:
        from taskforce.cli.completion import complete

        complete(parser)  # the shell's completion script is asking: answers and exits
    args = parser.parse_args(argv)
    if args.command == "schema":
        return _print_schema()
    if args.command == "completion":
        from taskforce.cli.completion import print_script

        return print_script(args.shell, prog)
    if args.command in CLIENT_COMMANDS:
        return run_client_command(args)
    needs_etcd = is_etcd_url(args.config_file) or is_etcd_url(args.roles_file)
    if args.command == "fleet" or (needs_etcd and not (args.stop or args.reset)):
        missing = missing_fleet_extra()
        if missing is not None:
            print(f"taskforce: {missing}", file=sys.stderr)
            return EXIT_USAGE
    if args.command == "fleet":
        from taskforce.cli.fleet import run_fleet_command

        return run_fleet_command(args)
    if args.stop or args.reset:
        _terminal_logging(args, prog)
        return _signal_instance(args)
    return _supervise(args, prog)


def _print_schema() -> int:
    import json

    from taskforce.config.schema import config_schema

    print(json.dumps(config_schema(), indent=2))
    return EXIT_OK


def _pidfile_path(args: argparse.Namespace, *, needed: bool) -> str | None:
    if args.pidfile in ("-", ""):
        return None
    if args.pidfile is not None:
        return str(args.pidfile)
    return defaults.DEFAULT_PIDFILE if needed else None


def _roles_file(args: argparse.Namespace) -> str | None:
    if args.roles_file is not None:
        return str(args.roles_file)
    for candidate in DEFAULT_ROLES_FILES:
        if os.access(candidate, os.R_OK):
            return candidate
    return None


def _signal_instance(args: argparse.Namespace) -> int:
    from taskforce.runtime.own.pidfile import PidfileError, signal_running, wait_released

    path = _pidfile_path(args, needed=True)
    if path is None:
        print("taskforce: -S and -R need a pidfile to find the running taskforce", file=sys.stderr)
        return EXIT_USAGE
    signum, what = (signal.SIGHUP, "reset") if args.reset else (signal.SIGTERM, "stop")
    try:
        pid = signal_running(path, signum)
    except PidfileError as exc:
        print(f"taskforce: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS
    if args.stop and not wait_released(path, timeout=120.0):
        print(f"taskforce: pid {pid} is still stopping its tasks", file=sys.stderr)
        return EXIT_PROBLEMS
    print(
        f"taskforce pid {pid}: {what} requested" if args.reset else f"taskforce pid {pid} stopped"
    )
    return EXIT_OK


def _supervise(args: argparse.Namespace, prog: str) -> int:
    """Run the supervisor (or, with -C, check its configuration): the wiring's to do."""
    try:
        sources = daemon.locate(args.config_file, _roles_file(args))
    except daemon.UsageError as exc:
        print(f"taskforce: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.check_config:
        _terminal_logging(args, prog)
        status = daemon.check(sources)
        if status == EXIT_OK and not sources.fleet:
            _print_plan(args, sources.config)
        return status
    return daemon.run(sources, _options(args, prog))


def _options(args: argparse.Namespace, prog: str) -> daemon.Options:
    return daemon.Options(
        name=_logging_name(args, prog),
        pidfile=_pidfile_path(args, needed=args.background),
        background=args.background,
        listen=tuple(args.http or ()),
        certfile=args.certfile,
        allow_control=args.allow_control,
        token_file=args.token_file,
        exit_with=args.exit_with,
        log_stderr=args.log_stderr,
        log_file=args.log_file,
        log_json=args.log_format == "json",
        verbose=args.verbose,
        quiet=args.quiet,
    )


def _logging_name(args: argparse.Namespace, prog: str) -> str:
    return str(args.logging_name or os.path.splitext(prog)[0])


def _terminal_logging(args: argparse.Namespace, prog: str) -> None:
    """-C, -S and -R talk to the person at the terminal, not to syslog."""
    from taskforce.app.logs import setup_logging

    setup_logging(
        _logging_name(args, prog),
        to_stderr=True,
        verbose=args.verbose,
        quiet=args.quiet,
        json_format=args.log_format == "json",
    )


def _print_plan(args: argparse.Namespace, config_file: str) -> None:
    """With a taskforce running, say what applying `config_file` to it would do, task by
    task. The taskforce is found as the client commands find theirs; found only by
    default, it must be running this very file (another one's plan would mislead)."""
    from taskforce.cli.client import Client, ClientError, UnreachableError
    from taskforce.cli.server import SERVER_ENV, resolve

    if args.pidfile in ("-", "") and not (args.server or os.environ.get(SERVER_ENV)):
        return  # -p -: no taskforce named, none to compare with
    try:
        endpoint = resolve(args.server, args.pidfile, default_pidfile=defaults.DEFAULT_PIDFILE)
        client = Client(endpoint, token=os.environ.get("TASKFORCE_TOKEN") or None)
        if not endpoint.named and client.get("/status/config").get("file") != config_file:
            return  # found by default, and running another file: no plan, as with none
        with open(config_file, "rb") as f:
            text = f.read()
        reply = client.post("/manage/plan", body=text)
    except UnreachableError as exc:
        if endpoint.named:  # the user named it: say it is not there
            print(f"(no plan: {exc.message})")
        return  # nothing runs at the default places
    except (OSError, ClientError, AttributeError) as exc:
        print(f"(no plan: {getattr(exc, 'message', exc)})")
        return
    changes = [c for c in reply.get("changes", []) if c.get("change") != "untouched"]
    untouched = len(reply.get("changes", [])) - len(changes)
    print(f"applied to the taskforce running at {endpoint.described}, this configuration would:")
    for change in changes:
        fields = f" ({', '.join(change['fields'])})" if change.get("fields") else ""
        print(f"  {change['change']}: {change['task']}{fields}")
    print(f"  leave {untouched} task(s) untouched")


if __name__ == "__main__":
    sys.exit(main())
