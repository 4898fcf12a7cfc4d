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
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from taskforce import __version__
from taskforce.cli.commands import CLIENT_COMMANDS, add_client_commands, run_client_command
from taskforce.cli.completion import add_completion_command
from taskforce.cli.parser import Parser
from taskforce.fleet.cli import add_fleet_command
from taskforce.fleet.urls import (
    EtcdUrlError,
    is_etcd_url,
    missing_fleet_extra,
    parse_etcd_url,
)

log = logging.getLogger("taskforce")

DEFAULT_CONFIG = "/usr/local/etc/taskforce.conf"
DEFAULT_PIDFILE = "/var/run/taskforce.pid"
DEFAULT_ROLES_FILES = ("/var/local/etc/tf_roles.conf", "/usr/local/etc/tf_roles.conf")
# Set in the environment of a reset re-exec, so the new image neither detaches again
# nor refuses the pidfile its old image held.
_RESET_MARKER = "TASKFORCE_RESET_EXEC"

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, EXIT_START = 0, 1, 2, 3


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
        from taskforce.fleet.cli import run_fleet_command

        return run_fleet_command(args)
    name = args.logging_name or os.path.splitext(prog)[0]
    from taskforce.cli.logs import setup_logging

    # -C, -S and -R talk to the person at the terminal, not to syslog.
    to_stderr = args.log_stderr or args.check_config or args.stop or args.reset
    fallback = None
    if args.background and not to_stderr:
        pidfile = _pidfile_path(args, needed=True)
        fallback = f"{pidfile}.log" if pidfile else None
    setup_logging(
        name,
        to_stderr=to_stderr,
        verbose=args.verbose,
        quiet=args.quiet,
        log_file=None if args.check_config or args.stop or args.reset else args.log_file,
        json_format=args.log_format == "json",
        fallback_file=fallback,
    )
    if args.stop or args.reset:
        return _signal_instance(args)
    return _supervise(args)


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
    return DEFAULT_PIDFILE if needed else None


def _roles_file(args: argparse.Namespace) -> str | None:
    if args.roles_file is not None:
        return str(args.roles_file)
    for candidate in DEFAULT_ROLES_FILES:
        if os.access(candidate, os.R_OK):
            return candidate
    return None


def _signal_instance(args: argparse.Namespace) -> int:
    from taskforce.runtime.pidfile import PidfileError, signal_running, wait_released

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


def _supervise(args: argparse.Namespace) -> int:
    import asyncio

    from taskforce.api.listen import ApiConfigError, listener_from_flags
    from taskforce.api.paths import claim_handed_over
    from taskforce.api.run import serve_with_api
    from taskforce.config.errors import ConfigError
    from taskforce.runtime.legion import Legion
    from taskforce.runtime.limits import raise_open_files
    from taskforce.runtime.paths import default_state_file
    from taskforce.runtime.pidfile import Pidfile, PidfileError
    from taskforce.runtime.supervisor import Outcome
    from taskforce.runtime.upgrade import SNAPSHOT_ENV

    resuming = os.environ.pop(_RESET_MARKER, None) is not None
    raise_open_files()  # room for many tasks and clients; tasks get back the limit given
    claim_handed_over()  # the sockets of the image we re-executed from
    # Relative paths on the command line are relative to this directory: a reset
    # re-executes from it (a background taskforce has moved to / meanwhile).
    start_dir = os.getcwd()
    fleet = is_etcd_url(args.config_file)
    roles_file = _roles_file(args)
    if is_etcd_url(roles_file) and not fleet:
        print("taskforce: roles from etcd need the configuration from etcd too", file=sys.stderr)
        return EXIT_USAGE
    if fleet:
        # Imported only here: the etcd client (gRPC) costs memory plain hosts do not pay.
        from taskforce.fleet.wire import fleet_legion_kwargs, legion_for_check, run_fleet

        # The configuration (and perhaps the roles) live in etcd: see taskforce.fleet.
        config_file = str(args.config_file)
        try:
            parse_etcd_url(config_file, "host", "host")
        except EtcdUrlError as exc:
            print(f"taskforce: {exc}", file=sys.stderr)
            return EXIT_USAGE
    else:
        config_file = os.path.abspath(args.config_file)
    if roles_file is not None and not is_etcd_url(roles_file):
        roles_file = os.path.abspath(roles_file)
    if args.check_config:
        if fleet:
            return _check(legion_for_check(config_file, roles_file))
        status = _check(Legion(config_file, roles_file))
        if status == EXIT_OK:
            _print_plan(args, config_file)
        return status
    try:
        extra = [
            listener_from_flags(
                listen,
                certfile=args.certfile,
                allow_control=args.allow_control,
                token_file=args.token_file,
            )
            for listen in args.http or ()
        ]
    except ApiConfigError as exc:
        print(f"taskforce: {exc}", file=sys.stderr)
        return EXIT_USAGE
    pidfile_path = _pidfile_path(args, needed=args.background)
    pidfile = Pidfile(pidfile_path) if pidfile_path else None
    if pidfile is not None:
        try:
            pidfile.claim()
        except PidfileError as exc:
            print(f"taskforce: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except OSError as exc:
            print(
                f"taskforce: cannot create pidfile {pidfile.path}: {exc.strerror}", file=sys.stderr
            )
            return EXIT_START
    detached = None
    if args.background and not resuming:
        from taskforce.runtime.daemon import detach

        detached = detach()
        if pidfile is not None:
            pidfile.write_pid()
    elif args.background:
        os.chdir("/")  # as detach() did before the reset
    # Made once detached: the host facts include our pid (Task_ppid).
    sources: dict[str, Any] = (
        fleet_legion_kwargs(config_file, roles_file)
        if fleet
        else {"config_file": config_file, "roles_file": roles_file}
    )
    legion = Legion(
        **sources,
        watch_self=True,
        upgrade_snapshot=os.environ.pop(SNAPSHOT_ENV, None),
        # Process records live beside the pidfile when there is one.
        state_file=default_state_file(pidfile.path, sources["config_file"]) if pidfile else "",
        exit_with=args.exit_with,
    )
    serve = run_fleet if fleet else serve_with_api

    def started() -> None:
        # Problems that left the start going (a task that cannot be resolved) are
        # printed by the command that detached, not only logged.
        assert detached is not None
        problems = legion.loaded.problems if legion.loaded is not None else ()
        detached.report(notes="\n".join(f"taskforce: {p}" for p in problems))

    try:
        outcome = asyncio.run(
            serve(
                legion,
                pidfile=pidfile.path if pidfile else None,
                extra=extra,
                on_ready=started if detached else None,
                reexec=True,  # on a reset or an upgrade: see _reexec()
            )
        )
    except (ConfigError, ApiConfigError) as exc:
        problems = exc.problems if isinstance(exc, ConfigError) else (str(exc),)
        for problem in problems:
            log.error("%s", problem)
        message = "\n".join(f"taskforce: {p}" for p in problems)
        if detached is not None:
            detached.report(message)
        elif not args.log_stderr:
            print(message, file=sys.stderr)
        if pidfile is not None:
            pidfile.release()
        return EXIT_START
    if outcome is Outcome.RESET:
        _reexec(pidfile, start_dir)
    if outcome is Outcome.UPGRADE:
        _reexec(pidfile, start_dir, legion.handover_snapshot)
    if pidfile is not None:
        pidfile.release()
    if legion.exit_status is not None:
        log.info("taskforce exiting with %s's status %d", args.exit_with, legion.exit_status)
        return legion.exit_status
    log.info("taskforce exiting")
    return EXIT_OK


def _check(legion: object) -> int:
    from taskforce.runtime.legion import Legion

    assert isinstance(legion, Legion)
    problems = legion.check()
    for warning in legion.warnings():  # likely typos: told, but the check still passes
        print(f"{warning}", file=sys.stderr)
    for problem in problems:
        print(f"{problem}", file=sys.stderr)
    if problems:
        print(f"taskforce: {len(problems)} problem(s) in the configuration", file=sys.stderr)
        return EXIT_PROBLEMS
    print(f"{legion.config_file}: configuration is valid")
    return EXIT_OK


def _print_plan(args: argparse.Namespace, config_file: str) -> None:
    """With a taskforce running, say what applying `config_file` to it would do, task by
    task. The taskforce is found as the client commands find theirs; found only by
    default, it must be running this very file (another one's plan would mislead)."""
    from taskforce.cli.client import Client, ClientError, UnreachableError
    from taskforce.cli.server import SERVER_ENV, resolve

    if args.pidfile in ("-", "") and not (args.server or os.environ.get(SERVER_ENV)):
        return  # -p -: no taskforce named, none to compare with
    try:
        endpoint = resolve(args.server, args.pidfile, default_pidfile=DEFAULT_PIDFILE)
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


def _reexec(pidfile: object, start_dir: str, snapshot: str | None = None) -> None:
    from taskforce.runtime.limits import restore_open_files
    from taskforce.runtime.pidfile import Pidfile
    from taskforce.runtime.upgrade import SNAPSHOT_ENV

    if isinstance(pidfile, Pidfile):
        pidfile.release(remove=False)
    log.info("taskforce %s: re-executing itself", "upgrading" if snapshot else "resetting")
    logging.shutdown()
    os.environ[_RESET_MARKER] = "1"
    if snapshot is not None:
        os.environ[SNAPSHOT_ENV] = snapshot
    with contextlib.suppress(OSError):  # gone: relative paths will be reported missing
        os.chdir(start_dir)
    argv = [sys.executable, *sys.orig_argv[1:]]
    restore_open_files()  # the new image raises it again, knowing what tasks get
    os.execv(sys.executable, argv)


if __name__ == "__main__":
    sys.exit(main())
