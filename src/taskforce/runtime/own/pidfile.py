"""The supervisor's own pidfile: claimed atomically, never trusted blindly.

The file is held open with an exclusive flock for as long as taskforce runs. The lock,
not the number written in the file, says whether an instance is alive: a stale file
from a crashed instance (or a recycled pid) is simply taken over, and a client that
wants to signal the instance first checks that the lock is held, and that the process
the file names is the one holding the file open. A file someone else owns (planted in a
shared directory, so that they could rewrite the pid later) is never used.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import stat


class PidfileError(Exception):
    pass


class Pidfile:
    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self._fd: int | None = None

    def claim(self) -> None:
        """Lock the file and write our pid, or raise PidfileError if an instance holds it."""
        fd = _open_nofollow(self.path, os.O_RDWR | os.O_CREAT)
        try:
            _check_ours(fd, self.path)
        except PidfileError:
            os.close(fd)
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            what = f"pid {holder}" if holder else "another process"
            raise PidfileError(f"{self.path} is held by a running taskforce ({what})") from None
        self._fd = fd
        self.write_pid()

    def write_pid(self) -> None:
        """(Re)write our pid, e.g. after detaching into the background."""
        assert self._fd is not None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self, remove: bool = True) -> None:
        if self._fd is None:
            return
        if remove:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        os.close(self._fd)
        self._fd = None


def running_pid(path: str) -> int:
    """The pid of the live taskforce holding `path`; PidfileError if there is none."""
    try:
        fd = _open_nofollow(path, os.O_RDONLY)
    except FileNotFoundError:
        raise PidfileError(f"{path} does not exist: is taskforce running?") from None
    except OSError as exc:
        raise PidfileError(f"cannot open {path}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            if pid is None:
                raise PidfileError(f"{path} does not hold a valid pid") from None
            _check_holder(pid, fd, path)
            return pid
        raise PidfileError(f"{path} is stale: no taskforce holds it")
    finally:
        os.close(fd)


def signal_running(path: str, signum: int) -> int:
    pid = running_pid(path)
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        raise PidfileError(f"taskforce pid {pid} from {path} has gone") from None
    except PermissionError:
        raise PidfileError(f"not allowed to signal taskforce pid {pid}") from None
    return pid


def wait_released(path: str, timeout: float) -> bool:
    """Block until no instance holds `path` (True), or `timeout` seconds pass (False)."""
    try:
        fd = _open_nofollow(path, os.O_RDONLY)
    except FileNotFoundError:
        return True

    def on_alarm(signum: int, frame: object) -> None:
        raise TimeoutError

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        return True
    except TimeoutError:
        return False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        os.close(fd)


def _open_nofollow(path: str, flags: int) -> int:
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PidfileError(f"{path} is a symbolic link: refusing to use it") from None
        raise


def _check_ours(fd: int, path: str) -> None:
    """Refuse a pidfile that is not a plain file of ours (its owner could rewrite it)."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise PidfileError(f"{path} is not a regular file: refusing to use it")
    if info.st_uid != os.geteuid():
        raise PidfileError(
            f"{path} is owned by uid {info.st_uid}, not by us: refusing to use it (remove it)"
        )
    if info.st_nlink > 1:
        raise PidfileError(f"{path} has other hard links: refusing to use it (remove it)")


def _check_holder(pid: int, fd: int, path: str) -> None:
    """The pid a locked pidfile names must hold that very file open (taskforce does, for as
    long as it runs); anything else is a rewritten file, and must not be signalled."""
    if not os.path.isdir("/proc/self/fd"):
        return  # no /proc to check against (BSD, macOS): the lock has to do
    info = os.fstat(fd)
    wanted = (info.st_dev, info.st_ino)
    try:
        entries = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        raise PidfileError(f"{path} names pid {pid}, which is not running") from None
    except PermissionError:
        raise PidfileError(
            f"{path} names pid {pid}, which cannot be checked: not allowed to signal it"
        ) from None
    for entry in entries:
        try:
            held = os.stat(f"/proc/{pid}/fd/{entry}")
        except OSError:
            continue
        if (held.st_dev, held.st_ino) == wanted:
            return
    raise PidfileError(
        f"{path} names pid {pid}, which does not hold it: the file was rewritten; "
        "refusing to signal that process"
    )


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        return int(text.split()[0]) if text else None
    except (ValueError, IndexError, OSError):
        return None
