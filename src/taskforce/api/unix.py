"""Owner-only unix sockets, created and removed without trusting the file system.

The socket file is made with mode 0600 (through the umask, so it is never more open, not
even for an instant) in a directory nobody else (not even its group) can write to, so
nobody else can replace it. A socket left by a dead process is replaced; a live one, or
anything that is not a socket (a symlink planted there, say), is refused. On close the
file is removed only if it is still the one we made.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat

from taskforce.api.listen import ApiConfigError
from taskforce.api.paths import claim_handed_over, handed_over, private_tmp_dir
from taskforce.api.servers import socket_live
from taskforce.runtime.own.paths import replaceable_by_others

BACKLOG = 64


class UnixSocket:
    """A listening socket bound to `path`; `remove()` unlinks its file if still ours.

    A socket handed over by the image we were exec'd from is taken as it is, with the
    connections waiting in its backlog. A stale file (its process died) is replaced
    atomically: the new socket is bound under a temporary name and renamed over it, so a
    client meets either the old file or the new live socket, never no file at all.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        inherited = take_inherited(path)
        if inherited is not None:
            self.sock = inherited
            info = os.lstat(path)
            self._identity = (info.st_dev, info.st_ino)
            return
        directory = os.path.dirname(path)
        if directory == private_tmp_dir(os.geteuid()):
            _make_private_dir(directory)
        _check_directory(directory, path)
        stale = _stale(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if stale:
                self._identity = self._replace(path)
            else:
                self._identity = _bind_private(self.sock, path)
                self.sock.listen(BACKLOG)
            self.sock.setblocking(False)
        except BaseException:
            self.sock.close()
            raise

    def _replace(self, path: str) -> tuple[int, int]:
        temporary = f"{path}.{os.getpid()}.new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        _bind_private(self.sock, temporary)
        try:
            self.sock.listen(BACKLOG)
            os.replace(temporary, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise ApiConfigError(f"cannot listen on {path}: {exc.strerror}") from None
        info = os.lstat(path)
        return info.st_dev, info.st_ino

    def hand_over(self) -> int:
        """An inheritable copy of the listening socket, for the next image (see
        INHERITED_ENV); the file stays."""
        fd = os.dup(self.sock.fileno())
        os.set_inheritable(fd, True)
        return fd

    def remove(self) -> None:
        """Unlink the socket file, unless it is no longer ours (call once closed)."""
        with contextlib.suppress(OSError):
            info = os.lstat(self.path)
            # An inode number can be reused: a file that is someone's live socket is theirs.
            if (info.st_dev, info.st_ino) == self._identity and not socket_live(self.path):
                os.unlink(self.path)


_inherited: dict[str, int] | None = None


def _inherited_sockets() -> dict[str, int]:
    global _inherited
    if _inherited is None:
        _inherited = {}
        claim_handed_over()  # if the command line has not already
        text = handed_over()
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            data = json.loads(text) if text else {}
            _inherited = {str(k): int(v) for k, v in data.items()}
    return _inherited


def take_inherited(path: str) -> socket.socket | None:
    """The listening socket an earlier image left us for `path`, if it is one indeed."""
    fd = _inherited_sockets().pop(path, None)
    if fd is None:
        return None
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return None
    try:
        # Not its name: one that replaced a stale file was bound under a temporary name.
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM or not listening:
            raise OSError("not the socket handed over")
        os.set_inheritable(fd, False)
        sock.setblocking(False)
        return sock
    except OSError:
        sock.close()
        return None


def close_inherited() -> None:
    """Close the sockets handed over that this image does not listen on any more (the
    configuration changed), and remove their files."""
    inherited = _inherited_sockets()
    for path, fd in list(inherited.items()):
        with contextlib.suppress(OSError):
            os.close(fd)
        if not socket_live(path):
            with contextlib.suppress(OSError):
                os.unlink(path)
    inherited.clear()


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
    flaw = replaceable_by_others(directory, info, sticky_protects=False)
    if flaw is None:
        return
    raise ApiConfigError(
        f"will not listen on {path}: {flaw}, who could replace the socket; put it in a "
        "directory of its own"
    )


def _stale(path: str) -> bool:
    """Whether a dead socket's file is at `path` (to be replaced); ApiConfigError if
    anything else is."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise ApiConfigError(f"cannot listen on {path}: {exc.strerror}") from None
    if not stat.S_ISSOCK(info.st_mode):
        raise ApiConfigError(f"will not listen on {path}: it exists and is not a socket")
    if socket_live(path):
        raise ApiConfigError(f"cannot listen on {path}: another process is listening on it")
    return True  # nobody listens: left behind by a process that died
