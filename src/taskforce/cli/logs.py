"""Where taskforce's own log goes: syslog by default, stderr with -e."""

from __future__ import annotations

import logging
import os
import socket
import stat
import sys

_SYSLOG_SOCKETS = ("/dev/log", "/var/run/syslog", "/var/run/log")


def setup_logging(name: str, *, to_stderr: bool, verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = _stderr_handler(name) if to_stderr else _syslog_handler(name)
    root.addHandler(handler)
    root.setLevel(level)


def _tag(name: str) -> str:
    """`name[pid]:` for a log format; the name is the -L value, so % is escaped."""
    return name.replace("%", "%%") + "[%(process)d]:"


def _stderr_handler(name: str) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s {_tag(name)} %(levelname)s %(message)s"))
    return handler


def _syslog_handler(name: str) -> logging.Handler:
    for path in _SYSLOG_SOCKETS:
        if _reachable(path):
            try:
                import logging.handlers  # here: it imports socket, pickle and more

                handler: logging.Handler = logging.handlers.SysLogHandler(
                    address=path, facility=logging.handlers.SysLogHandler.LOG_DAEMON
                )
            except OSError:
                continue
            handler.setFormatter(logging.Formatter(f"{_tag(name)} %(levelname)s %(message)s"))
            return handler
    # No local syslog (a container, a minimal system): say so once, then log to stderr.
    sys.stderr.write(f"{name}: no syslog socket found, logging to stderr\n")
    return _stderr_handler(name)


def _reachable(path: str) -> bool:
    """Whether a syslog daemon listens on the socket `path`.

    SysLogHandler ignores a failed connection and then fails on every record, so the
    socket is tried first (it may be a directory, or a socket nobody listens on).
    """
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return False
    except OSError:
        return False
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_UNIX, kind) as probe:
            try:
                probe.connect(path)
            except OSError:
                continue
            return True
    return False
