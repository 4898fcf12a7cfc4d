"""The daemon runner: a taskforce started from the command line, run until it stops, and
re-executed on a reset or an in-place upgrade.

The command line (:mod:`taskforce.cli.main`) parses the arguments into :class:`Options`
and calls :func:`locate`, then :func:`check` (-C) or :func:`run`. Here: logging, the
pidfile's claim, detaching (-b), the legion made for a file or for etcd, served with its
HTTP service (:mod:`taskforce.app.serve`) or as a member of the fleet
(:mod:`taskforce.app.fleet`), and what follows its outcome. Imports stay cheap at load
(the command imports this module for every command); the runtime's are made on use.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from taskforce.fleet.urls import EtcdUrlError, is_etcd_url, parse_etcd_url

if TYPE_CHECKING:
    from taskforce.runtime.legion import Legion
    from taskforce.runtime.own.pidfile import Pidfile

log = logging.getLogger("taskforce")

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, EXIT_START = 0, 1, 2, 3
# Set in the environment of a reset re-exec, so the new image neither detaches again
# nor refuses the pidfile its old image held.
RESET_MARKER = "TASKFORCE_RESET_EXEC"


class UsageError(Exception):
    """The arguments cannot name a configuration (exit status 2)."""


@dataclass(frozen=True, slots=True)
class Sources:
    """Where the configuration and the roles come from."""

    config: str  # an absolute path, or an etcd URL
    roles: str | None  # an absolute path, an etcd URL, or None (no roles file)
    fleet: bool  # the configuration comes from etcd


@dataclass(frozen=True, slots=True)
class Options:
    """How the daemon runs: the command line's flags, their defaults applied."""

    name: str  # in log messages (-L)
    pidfile: str | None = None
    background: bool = False
    listen: Sequence[str] = ()  # -w
    certfile: str | None = None
    allow_control: bool = False
    token_file: str | None = None
    exit_with: str | None = None
    log_stderr: bool = False
    log_file: str | None = None
    log_json: bool = False
    verbose: bool = False
    quiet: bool = False


def locate(config_file: str, roles_file: str | None) -> Sources:
    """The sources named by -f and -r (the default roles file already chosen); UsageError
    when they cannot be used together or an etcd URL is malformed."""
    fleet = is_etcd_url(config_file)
    if is_etcd_url(roles_file) and not fleet:
        raise UsageError("roles from etcd need the configuration from etcd too")
    if fleet:
        try:
            parse_etcd_url(config_file, "host", "host")
        except EtcdUrlError as exc:
            raise UsageError(str(exc)) from None
    else:
        config_file = os.path.abspath(config_file)
    if roles_file is not None and not is_etcd_url(roles_file):
        roles_file = os.path.abspath(roles_file)
    return Sources(config_file, roles_file, fleet)


def check(sources: Sources) -> int:
    """-C: print the configuration's problems (and likely typos); the exit status."""
    from taskforce.runtime.legion import Legion

    if sources.fleet:
        # Imported only here: the etcd client (gRPC) costs memory plain hosts do not pay.
        from taskforce.fleet.member import legion_for_check

        legion = legion_for_check(sources.config, sources.roles)
    else:
        legion = Legion(sources.config, sources.roles)
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


def run(sources: Sources, options: Options) -> int:
    """Supervise until stopped; the exit status (re-executes itself on a reset or an
    upgrade, and then does not return)."""
    import asyncio

    from taskforce.api.listen import ApiConfigError, listener_from_flags
    from taskforce.api.paths import claim_handed_over
    from taskforce.app.logs import setup_logging
    from taskforce.config.errors import ConfigError
    from taskforce.runtime.loop.supervisor import Outcome
    from taskforce.runtime.own.open_files import raise_open_files
    from taskforce.runtime.own.pidfile import Pidfile, PidfileError

    fallback = None
    if options.background and not options.log_stderr and options.pidfile:
        fallback = f"{options.pidfile}.log"  # a daemon's stderr leads nowhere
    setup_logging(
        options.name,
        to_stderr=options.log_stderr,
        verbose=options.verbose,
        quiet=options.quiet,
        log_file=options.log_file,
        json_format=options.log_json,
        fallback_file=fallback,
    )
    resuming = os.environ.pop(RESET_MARKER, None) is not None
    raise_open_files()  # room for many tasks and clients; tasks get back the limit given
    claim_handed_over()  # the sockets of the image we re-executed from
    # Relative paths on the command line are relative to this directory: a reset
    # re-executes from it (a background taskforce has moved to / meanwhile).
    start_dir = os.getcwd()
    try:
        extra = [
            listener_from_flags(
                listen,
                certfile=options.certfile,
                allow_control=options.allow_control,
                token_file=options.token_file,
            )
            for listen in options.listen
        ]
    except ApiConfigError as exc:
        print(f"taskforce: {exc}", file=sys.stderr)
        return EXIT_USAGE
    pidfile = Pidfile(options.pidfile) if options.pidfile else None
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
    if options.background and not resuming:
        from taskforce.runtime.own.detach import detach

        detached = detach()
        if pidfile is not None:
            pidfile.write_pid()
    elif options.background:
        os.chdir("/")  # as detach() did before the reset
    # Made once detached: the host facts include our pid (Task_ppid).
    legion = _legion(sources, options, pidfile)
    if sources.fleet:
        from taskforce.app.fleet import serve_in_fleet as serve
    else:
        from taskforce.app.serve import serve_with_api as serve

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
        elif not options.log_stderr:
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
        log.info("taskforce exiting with %s's status %d", options.exit_with, legion.exit_status)
        return legion.exit_status
    log.info("taskforce exiting")
    return EXIT_OK


def _legion(sources: Sources, options: Options, pidfile: Pidfile | None) -> Legion:
    from taskforce.runtime.legion import Legion
    from taskforce.runtime.own.paths import default_state_file
    from taskforce.runtime.upgrade import handed_over

    if sources.fleet:
        from taskforce.fleet.member import fleet_legion_kwargs

        kwargs: dict[str, Any] = fleet_legion_kwargs(sources.config, sources.roles)
    else:
        kwargs = {"config_file": sources.config, "roles_file": sources.roles}
    return Legion(
        **kwargs,
        watch_self=True,
        upgrade_snapshot=handed_over(),
        # Process records live beside the pidfile when there is one.
        state_file=default_state_file(pidfile.path, kwargs["config_file"]) if pidfile else "",
        exit_with=options.exit_with,
    )


def _reexec(pidfile: Pidfile | None, start_dir: str, snapshot: str | None = None) -> None:
    from taskforce.runtime.upgrade import reexec

    if pidfile is not None:
        pidfile.release(remove=False)
    log.info("taskforce %s: re-executing itself", "upgrading" if snapshot else "resetting")
    reexec(start_dir, snapshot, **{RESET_MARKER: "1"})
