"""Where taskforce's own log goes: syslog by default, stderr with -e, a file with
--log-file (reopened when rotated away, and on SIGUSR1); one JSON object a line with
--log-format json. A daemon (-b) with no syslog to log to logs to a file beside its
pidfile rather than to the /dev/null its stderr becomes."""

from __future__ import annotations

import logging
import os
import socket
import stat
import sys
import time

_SYSLOG_SOCKETS = ("/dev/log", "/var/run/syslog", "/var/run/log")


def setup_logging(
    name: str,
    *,
    to_stderr: bool,
    verbose: bool,
    quiet: bool,
    log_file: str | None = None,
    json_format: bool = False,
    fallback_file: str | None = None,
) -> None:
    """`fallback_file`: where to log when syslog was asked for and there is none (a
    daemon's stderr leads nowhere)."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    if log_file is not None:
        handler = _file_handler(log_file)
    elif to_stderr:
        handler = _stderr_handler(name)
    else:
        handler = _syslog_handler(name, fallback_file)
    if json_format:
        handler.setFormatter(JsonFormatter(name))
    root.addHandler(handler)
    root.setLevel(level)
    _lean_records()


def _lean_records() -> None:
    """Records without what no format of ours shows: the calling function's file and line
    (a walk up the stack for each record), the thread's and the multiprocessing names.
    Each restart logs two lines, after its spawn but before the next exit is reaped."""
    logging._srcfile = None  # documented (the logging HOWTO's Optimization)
    logging.logThreads = False
    logging.logMultiprocessing = False


class _Formatter(logging.Formatter):
    """logging.Formatter whose default time (local, to the millisecond) formats the date
    and time once a second rather than for every record."""

    _second = -1
    _text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._text = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(second))
            self._second = second
        return f"{self._text},{int(record.msecs):03d}"  # as logging.Formatter does


class JsonFormatter(logging.Formatter):
    """One JSON object a line, for log shippers."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def format(self, record: logging.LogRecord) -> str:
        import json
        from datetime import UTC, datetime

        data = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "name": self.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data)


def _file_handler(path: str) -> logging.Handler:
    import logging.handlers

    # Watched: a file moved away (rotated) is noticed at the next record, and reopened.
    handler = logging.handlers.WatchedFileHandler(path, encoding="utf-8")
    handler.setFormatter(_Formatter("%(asctime)s %(levelname)s %(message)s"))
    return handler


def _tag(name: str) -> str:
    """`name[pid]:` for a log format; the name is the -L value, so % is escaped."""
    return name.replace("%", "%%") + "[%(process)d]:"


def _stderr_handler(name: str) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(f"%(asctime)s {_tag(name)} %(levelname)s %(message)s"))
    return handler


def _syslog_handler(name: str, fallback_file: str | None = None) -> logging.Handler:
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
    # No local syslog (a container, a minimal system): say so once, then log to stderr,
    # or to a file when stderr will lead nowhere.
    if fallback_file is not None:
        sys.stderr.write(f"{name}: no syslog socket found, logging to {fallback_file}\n")
        return _file_handler(fallback_file)
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
