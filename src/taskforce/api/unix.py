"""Owner-only unix sockets, created and removed without trusting the file system.

The socket file is made with mode 0600 (through the umask, so it is never more open, not
even for an instant) in a directory nobody else can write to, so nobody else can replace
it. A socket left by a dead process is replaced; a live one, or anything that is not a
socket (a symlink planted there, say), is refused. On close the file is removed only if it
is still the one we made.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat

from taskforce.api.listen import ApiConfigError
from taskforce.api.paths import private_tmp_dir
from taskforce.api.servers import socket_live

BACKLOG = 64


class UnixSocket:
    """A listening socket bound to `path`; `remove()` unlinks its file if still ours."""

    def __init__(self, path: str) -> None:
        self.path = path
        directory = os.path.dirname(path)
        if directory == private_tmp_dir(os.geteuid()):
            _make_private_dir(directory)
        _check_directory(directory, path)
        _clear_stale(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._identity = _bind_private(self.sock, path)
            self.sock.listen(BACKLOG)
            self.sock.setblocking(False)
        except BaseException:
            self.sock.close()
            raise

    def remove(self) -> None:
        """Unlink the socket file, unless it is no longer ours (call once closed)."""
        with contextlib.suppress(OSError):
            info = os.lstat(self.path)
            # An inode number can be reused: a file that is someone's live socket is theirs.
            if (info.st_dev, info.st_ino) == self._identity and not socket_live(self.path):
                os.unlink(self.path)


def _bind_private(sock: socket.socket, path: str) -> tuple[int, int]:
    # The umask is per process; taskforce creates files from its loop's thread only, which
    # is busy here, so nothing else is created under this one.
    previous = os.umask(0o177)
    try:
        sock.bind(path)
    except OSError as exc:
        raise ApiConfigError(f"cannot listen on {path}: {exc.strerror}") from None
    finally:
        os.umask(previous)
    info = os.lstat(path)
    return info.st_dev, info.st_ino


def _make_private_dir(directory: str) -> None:
    with contextlib.suppress(FileExistsError):
        os.mkdir(directory, 0o700)
    info = os.lstat(directory)  # lstat: a symlink planted in /tmp is not our directory
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise ApiConfigError(f"{directory} is not a directory of our own: remove it")
    if info.st_mode & 0o077:
        raise ApiConfigError(f"{directory} can be used by others: make it mode 0700")


def _check_directory(directory: str, path: str) -> None:
    try:
        info = os.stat(directory)
    except OSError as exc:
        raise ApiConfigError(f"cannot listen on {path}: {directory}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise ApiConfigError(f"cannot listen on {path}: {directory} is not a directory")
    if info.st_uid not in (0, os.geteuid()):
        flaw = f"{directory} belongs to another user"
    elif info.st_mode & stat.S_IWOTH:
        flaw = f"others can write to {directory}"
    else:
        return
    raise ApiConfigError(
        f"will not listen on {path}: {flaw}, who could replace the socket; put it in a "
        "directory of its own"
    )


def _clear_stale(path: str) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ApiConfigError(f"cannot listen on {path}: {exc.strerror}") from None
    if not stat.S_ISSOCK(info.st_mode):
        raise ApiConfigError(f"will not listen on {path}: it exists and is not a socket")
    if socket_live(path):
        raise ApiConfigError(f"cannot listen on {path}: another process is listening on it")
    os.unlink(path)  # nobody listens: left behind by a process that died
