"""Where taskforce keeps its own runtime files (process records, upgrade snapshots).

The control socket's place is :mod:`taskforce.api.paths` (the client needs it cheaply).

Next to the pidfile when there is one; otherwise in a private runtime directory:
``$XDG_RUNTIME_DIR/taskforce`` or ``/run/taskforce`` for root, else
``/tmp/taskforce-<uid>``. The directory is created 0700 and refused when it is a
symbolic link or is not owned by us, or when it sits in a directory where others could
swap it for one of theirs (writable by others and not sticky), so that nobody can plant
files for us to trust.
"""

from __future__ import annotations

import contextlib
import os
import stat
import zlib


class UnsafePathError(Exception):
    pass


def runtime_dir() -> str:
    uid = os.getuid()
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg):
        return os.path.join(xdg, "taskforce")
    if uid == 0:
        return "/run/taskforce"
    return f"/tmp/taskforce-{uid}"


def ensure_private_dir(path: str) -> str:
    """Create `path` (mode 0700) if needed and check it is ours and private."""
    parent = os.path.dirname(os.path.abspath(path))
    try:
        above = os.stat(parent)
    except OSError as exc:
        raise UnsafePathError(f"{parent}: {exc.strerror}") from None
    flaw = replaceable_by_others(parent, above)
    if flaw is not None:
        raise UnsafePathError(f"{flaw}, and could replace {path}")
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise UnsafePathError(f"{path} is not a directory")
    if info.st_uid != os.getuid():
        raise UnsafePathError(f"{path} is owned by uid {info.st_uid}, not by us")
    if info.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def replaceable_by_others(
    directory: str, info: os.stat_result, *, sticky_protects: bool = True
) -> str | None:
    """Why others could replace a file in `directory` (its stat `info`), or None: it
    belongs to another user than us or root, or its group or others can write to it.
    The sticky bit keeps them from renaming or removing our files, where that is enough
    (`sticky_protects`); it is not for a socket, whose name they could take first."""
    if info.st_uid not in (0, os.geteuid()):
        return f"{directory} is owned by uid {info.st_uid}, not by us or root"
    writable = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if writable and not (sticky_protects and info.st_mode & stat.S_ISVTX):
        return f"others can write to {directory}"
    return None


def instance_base(pidfile: str | None, config_file: str) -> str:
    """The path prefix for this instance's runtime files (add a suffix such as `.sock`).

    With a pidfile, files sit beside it. Without one, several instances may share the
    runtime directory, so the name is derived from the configuration file's path.
    """
    if pidfile:
        return os.path.abspath(pidfile)
    return os.path.join(runtime_dir(), f"taskforce-{name_digest(os.path.abspath(config_file))}")


def name_digest(text: str) -> str:
    """16 hex digits that tell `text` apart, for a file or directory name."""
    # Not hashlib: it maps OpenSSL's libcrypto (megabytes) for a name; no secrecy needed.
    data = text.encode()
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"


def default_state_file(pidfile: str | None, config_file: str) -> str:
    return instance_base(pidfile, config_file) + ".state"


def read_small_file(path: str, limit: int, *, trusted: bool = False) -> bytes | None:
    """Up to `limit` bytes of the file at `path`, or None when it cannot be read. It is
    opened without following a symbolic link or blocking (on a FIFO); `trusted`: it must
    also be a plain file of ours or root's."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if trusted:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_uid not in (0, os.geteuid()):
                return None
        return os.read(fd, limit)
    except OSError:
        return None
    finally:
        os.close(fd)
