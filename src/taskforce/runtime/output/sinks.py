"""Where captured task output is written: files with rotation, syslog, taskforce's stderr.

A sink is shared by every capture that writes to the same place (instances of a task
often share one file), so that rotation and error reports happen once. Sinks are given
whole lines, each ending in a newline, and never block the event loop: files are written
directly (a regular file never makes write(2) wait for a reader), syslog datagrams that
do not fit are dropped, and taskforce's stderr gets a private non-blocking descriptor
whose backlog, when the terminal or pipe reading it is slow, makes the captures pause
(see :attr:`Sink.blocked`) so that tasks block on their full pipes instead of taskforce
buffering without bound.

A write that fails (a full disk, a vanished directory, no syslog daemon) drops the data,
counts it and says so in taskforce's log once per minute at most; writing resumes by
itself once it can, which is logged too.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import stat
import time
from collections.abc import Callable
from typing import NamedTuple

from taskforce.runtime.output.safe_path import UnsafePathError, open_directory_of

log = logging.getLogger("taskforce")

SYSLOG_SOCKETS = ("/dev/log", "/var/run/syslog", "/var/run/log")
_REPORT_EVERY = 60.0  # seconds between two reports of the same failing destination
_RETRY_AFTER = 5.0  # seconds before opening a file (or syslog) that could not be opened again
_SYSLOG_MAX = 8192  # bytes of one syslog message: what common syslog daemons accept
_LOG_DAEMON, _LOG_INFO = 3, 6
_HIGH_WATER = 256 * 1024  # bytes waiting for taskforce's stderr before captures pause
_LOW_WATER = 64 * 1024  # ... and below which they resume


class Origin(NamedTuple):
    """Who wrote some output: for prefixes and syslog tags."""

    task: str
    slot: int
    pid: int
    stream: str  # "stdout" or "stderr"


class Trouble:
    """The failures of one destination: counted always, logged once a minute at most."""

    def __init__(self, what: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.what = what
        self.dropped = 0  # bytes lost since the destination last worked
        self.failing = False
        self._clock = clock
        self._reported = -_REPORT_EVERY

    def failed(self, reason: str, lost: int) -> None:
        self.dropped += lost
        now = self._clock()
        if not self.failing or now - self._reported >= _REPORT_EVERY:
            log.error(
                "output to %s: %s; output is dropped (%d bytes so far)",
                self.what,
                reason,
                self.dropped,
            )
            self._reported = now
        self.failing = True

    def worked(self) -> None:
        if self.failing:
            log.warning("output to %s works again (%d bytes were dropped)", self.what, self.dropped)
            self.failing = False
            self.dropped = 0


class Sink:
    """A destination. `users` counts the captures holding it; the last one closes it."""

    def __init__(self, key: str, what: str) -> None:
        self.key = key
        self.users = 0
        self.trouble = Trouble(what)
        # Called once a blocked sink can take data again.
        self.waiters: list[Callable[[], None]] = []

    @property
    def blocked(self) -> bool:
        """Whether captures must stop reading until it catches up (see `waiters`)."""
        return False

    def write(self, data: bytes, origin: Origin) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


class FileSink(Sink):
    """A file opened for appending, rotated at `max_bytes` into PATH.1 ... PATH.`backups`."""

    def __init__(self, path: str, max_bytes: int, backups: int) -> None:
        super().__init__(path, path)
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.fd = -1
        self.size = 0
        self._retry_at = 0.0

    def _open(self) -> bool:
        if self.fd >= 0:
            return True
        if time.monotonic() < self._retry_at:
            return False
        # The directories may belong to the task's user, and taskforce is often root: a
        # link planted there, in any component, must not make it write to another file.
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            directory, name = open_directory_of(self.path)
            try:
                fd = os.open(name, flags | os.O_NOCTTY | os.O_NONBLOCK, 0o640, dir_fd=directory)
            finally:
                os.close(directory)
            info = os.fstat(fd)
            problem = "not a regular file" if not stat.S_ISREG(info.st_mode) else None
            if info.st_nlink > 1:  # a hard link to someone else's file, made by the task
                problem = "it has other hard links"
            if problem is not None:
                os.close(fd)
                raise OSError(errno.EINVAL, problem)
        except OSError as exc:
            self._retry_at = time.monotonic() + _RETRY_AFTER
            self.trouble.failed(f"cannot open it: {_open_failure(exc)}", 0)
            return False
        self.fd, self.size = fd, info.st_size
        return True

    def write(self, data: bytes, origin: Origin) -> None:
        if not self._open():
            self.trouble.failed("it cannot be opened", len(data))
            return
        while data:
            room = self.max_bytes - self.size if self.max_bytes else len(data)
            if len(data) <= room:
                piece, data = data, b""
            else:
                # Cut at the last line that still fits, so files hold whole lines.
                cut = data.rfind(b"\n", 0, max(room, 0)) + 1
                if cut == 0:
                    if self.size > 0:
                        if not self._rotate():
                            self.trouble.dropped += len(data)
                            return
                        continue
                    cut = room  # one line longer than max_bytes: split it
                piece, data = data[:cut], data[cut:]
            if not self._write_all(piece):
                self.trouble.dropped += len(data)
                return
        self.trouble.worked()

    def _write_all(self, data: bytes) -> bool:
        while data:
            try:
                written = os.write(self.fd, data)
            except OSError as exc:  # ENOSPC, EDQUOT, EFBIG, EIO...
                self.trouble.failed(_reason(exc), len(data))
                return False
            self.size += written
            data = data[written:]
        return True

    def _rotate(self) -> bool:
        self.close()
        try:
            # Renamed and unlinked within the directory reached as _open() reaches it.
            directory, name = open_directory_of(self.path)
            try:
                _shift(directory, name, self.backups)
            finally:
                os.close(directory)
        except OSError as exc:
            self.trouble.failed(f"cannot rotate it: {_open_failure(exc)}", 0)
        self.size = 0
        return self._open()

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


def _shift(directory: int, name: str, backups: int) -> None:
    """Rotate file `name` of `directory` (a descriptor): NAME.1 ... NAME.`backups`."""
    if backups == 0:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=directory)
        return
    for number in range(backups - 1, 0, -1):
        with contextlib.suppress(FileNotFoundError):
            os.rename(
                f"{name}.{number}",
                f"{name}.{number + 1}",
                src_dir_fd=directory,
                dst_dir_fd=directory,
            )
    os.rename(name, f"{name}.1", src_dir_fd=directory, dst_dir_fd=directory)


def _open_failure(exc: OSError) -> str:
    if exc.errno == errno.ELOOP and not isinstance(exc, UnsafePathError):
        return "it is a symbolic link"  # the file itself (opened with O_NOFOLLOW)
    return _reason(exc)


class SyslogSink(Sink):
    """Each line a datagram to the syslog socket, tagged TASK[PID] (facility daemon)."""

    def __init__(self, key: str, address: str | None) -> None:
        super().__init__(key, f"syslog ({address or 'the system socket'})")
        self.address = address
        self.sock: socket.socket | None = None
        self._retry_at = 0.0

    def _connect(self) -> bool:
        if self.sock is not None:
            return True
        if time.monotonic() < self._retry_at:
            return False
        reason = "no syslog socket found"
        for path in (self.address,) if self.address else SYSLOG_SOCKETS:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            try:
                sock.setblocking(False)
                sock.connect(path)
            except OSError as exc:
                sock.close()
                reason = f"cannot connect to {path}: {_reason(exc)}"
                continue
            self.sock = sock
            return True
        self._retry_at = time.monotonic() + _RETRY_AFTER
        self.trouble.failed(reason, 0)
        return False

    def write(self, data: bytes, origin: Origin) -> None:
        if not self._connect():
            self.trouble.failed("not connected", len(data))
            return
        assert self.sock is not None
        # The local syslog format (RFC 3164 without a host name), as syslog(3) sends it.
        stamp = time.strftime("%b %e %H:%M:%S")
        head = f"<{_LOG_DAEMON * 8 + _LOG_INFO}>{stamp} {origin.task}[{origin.pid}]: ".encode()
        room = _SYSLOG_MAX - len(head)
        lines = data.split(b"\n")
        lines.pop()  # data ends with a newline
        for index, line in enumerate(lines):
            try:
                self.sock.send(head + line[:room])
            except BlockingIOError:
                # The daemon is behind: like the kernel's own log, syslog is lossy.
                self.trouble.failed("the syslog daemon is not keeping up", len(line) + 1)
            except OSError as exc:
                # The daemon went away (restarted?): connect again, not too often.
                self.close()
                self._retry_at = time.monotonic() + _RETRY_AFTER
                lost = sum(len(rest) + 1 for rest in lines[index:])
                self.trouble.failed(_reason(exc), lost)
                return
        self.trouble.worked()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class StderrSink(Sink):
    """taskforce's stderr, each line prefixed with `task[instance]: ` (as honcho does)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, descriptor: tuple[int, bool] | None = None
    ) -> None:
        super().__init__("stderr", "taskforce's stderr")
        self.loop = loop
        # The descriptor, and whether it is ours to close (tests give a pipe's).
        self.fd, self.own = descriptor or _stderr_descriptor()
        self.pending = bytearray()

    @property
    def blocked(self) -> bool:
        return len(self.pending) >= _HIGH_WATER

    def write(self, data: bytes, origin: Origin) -> None:
        prefix = f"{origin.task}[{origin.slot}]: ".encode()
        text = prefix + data[:-1].replace(b"\n", b"\n" + prefix) + b"\n"
        if self.pending:
            self.pending += text  # behind already: keep the order
            return
        self._send(text)

    def _send(self, text: bytes | bytearray) -> None:
        try:
            written = os.write(self.fd, text)
        except BlockingIOError:
            written = 0
        except OSError as exc:
            self.trouble.failed(_reason(exc), len(text))
            return
        self.trouble.worked()
        if written < len(text):
            self.pending += text[written:]
            self.loop.add_writer(self.fd, self._drain)

    def _drain(self) -> None:
        backlog, self.pending = self.pending, bytearray()
        self.loop.remove_writer(self.fd)
        self._send(backlog)
        if len(self.pending) < _LOW_WATER and self.waiters:
            waiters, self.waiters = self.waiters, []
            for resume in waiters:
                resume()

    def close(self) -> None:
        if self.pending:
            self.loop.remove_writer(self.fd)
            with contextlib.suppress(OSError):
                os.write(self.fd, self.pending)  # what fits; the rest is lost at exit
            self.pending = bytearray()
        if self.own:
            with contextlib.suppress(OSError):
                os.close(self.fd)
        for resume in self.waiters:
            resume()
        self.waiters = []


def _stderr_descriptor() -> tuple[int, bool]:
    """A descriptor for taskforce's stderr that never blocks, and whether it is ours.

    Setting O_NONBLOCK on fd 2 itself would change the terminal or pipe for every process
    sharing it (the shell included), so a pipe or terminal is opened anew through /proc.
    A regular file is written through fd 2: writes to it never wait, and a new descriptor
    would have its own offset and overwrite taskforce's log lines.
    """
    try:
        mode = os.fstat(2).st_mode
    except OSError:
        return 2, False
    if stat.S_ISREG(mode):
        return 2, False
    try:
        flags = os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
        return os.open("/proc/self/fd/2", flags), True
    except OSError:
        return 2, False  # a socket, or no /proc: plain blocking writes, as logging does
