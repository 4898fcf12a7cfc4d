"""Which taskforce a client command talks to: one order for every command.

1. ``--server URL_OR_SOCKET``;
2. ``$TASKFORCE_SERVER``;
3. ``-p PIDFILE``: the server recorded beside the pidfile (``PIDFILE.server``, written by
   the taskforce holding it: the socket `settings.http` names, say), else the socket
   beside it (``NAME.sock``); ``-p -`` names no taskforce at all, and is refused;
4. the default: the default socket if a taskforce listens there; else the one
   taskforce this user runs (several: refused, with the options that tell them apart);
   else the default pidfile's (a daemon started where our records are not kept).

The endpoint found says how it was found (:attr:`Endpoint.origin`), for the messages of
a command that fails.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from taskforce.api import servers as records
from taskforce.cli.client import Endpoint, UsageError, default_socket, parse_server
from taskforce.runtime.own.paths import read_small_file

SERVER_ENV = "TASKFORCE_SERVER"


def resolve(
    server: str | None,
    pidfile: str | None,
    *,
    default_pidfile: str,
    environ: Mapping[str, str] | None = None,
) -> Endpoint:
    """The endpoint of the taskforce meant by these options; UsageError if none can be."""
    env = os.environ if environ is None else environ
    if server:
        return _named(parse_server(server), "given by --server")
    if env.get(SERVER_ENV):
        return _named(parse_server(env[SERVER_ENV]), f"from ${SERVER_ENV}")
    if pidfile in ("-", ""):
        raise UsageError(
            "-p - names no pidfile, so no taskforce to talk to: name one with --server, "
            f"${SERVER_ENV} or -p PIDFILE"
        )
    if pidfile is not None:
        return _named(*_for_pidfile(pidfile, "-p"))
    return _default(default_pidfile)


def _named(endpoint: Endpoint, origin: str) -> Endpoint:
    return dataclasses.replace(endpoint, origin=origin, named=True)


def _for_pidfile(pidfile: str, how: str) -> tuple[Endpoint, str]:
    record = records.read_record(records.beside_pidfile(pidfile))
    if record is not None and record.pid == _pid_in(pidfile) and records.pid_alive(record.pid):
        return _endpoint(record.servers[0]), f"recorded beside {how} {pidfile}"
    return Endpoint("unix", default_socket(pidfile)), f"the socket beside {how} {pidfile}"


def _default(default_pidfile: str) -> Endpoint:
    own = default_socket(None)
    if records.socket_live(own):
        return dataclasses.replace(Endpoint("unix", own), origin="the default socket")
    running = [r for r in records.registered() if _answers(r.servers[0])]
    if len(running) == 1:
        found = running[0]
        origin = f"the only taskforce running for this user, pid {found.pid}"
        return dataclasses.replace(_endpoint(found.servers[0]), origin=origin)
    if running:
        choices = "; ".join(f"pid {r.pid}: {_option(r)}" for r in running)
        raise UsageError(f"{len(running)} taskforce instances are running; choose one ({choices})")
    # Last, a daemon (-b) with the default pidfile, started where our records are not kept.
    endpoint, origin = _for_pidfile(default_pidfile, "the default pidfile")
    if endpoint.scheme != "unix" or records.socket_live(endpoint.address):
        return dataclasses.replace(endpoint, origin=origin)
    origin = f"the default socket; no running taskforce is recorded in {records.registry()}"
    return dataclasses.replace(Endpoint("unix", own), origin=origin)


def _endpoint(server: str) -> Endpoint:
    if "://" in server:
        return parse_server(server)
    return Endpoint("unix", server)


def _answers(server: str) -> bool:
    return "://" in server or records.socket_live(server)


def _option(record: records.ServerRecord) -> str:
    if record.pidfile:
        return f"-p {record.pidfile}"
    return f"--server {record.servers[0]}"


def _pid_in(pidfile: str) -> int | None:
    data = read_small_file(pidfile, 64)
    try:
        return None if data is None else int(data.split()[0])
    except (ValueError, IndexError):
        return None
