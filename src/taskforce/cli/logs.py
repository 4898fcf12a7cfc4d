"""Where taskforce's own log goes: syslog by default, stderr with -e."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys

_SYSLOG_SOCKETS = ("/dev/log", "/var/run/syslog", "/var/run/log")


def setup_logging(name: str, *, to_stderr: bool, verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    handler: logging.Handler
    if to_stderr:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    else:
        handler = _syslog_handler(name)
    root.addHandler(handler)
    root.setLevel(level)


def _syslog_handler(name: str) -> logging.Handler:
    for path in _SYSLOG_SOCKETS:
        if os.path.exists(path):
            try:
                handler: logging.Handler = logging.handlers.SysLogHandler(
                    address=path, facility=logging.handlers.SysLogHandler.LOG_DAEMON
                )
            except OSError:
                continue
            handler.setFormatter(
                logging.Formatter(f"{name}[%(process)d]: %(levelname)s %(message)s")
            )
            return handler
    # No local syslog (a container, a minimal system): say so once, then log to stderr.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    sys.stderr.write(f"{name}: no syslog socket found, logging to stderr\n")
    return handler
