"""Reaching a file through directories that other users may write to.

taskforce often runs as root and writes files (task output) in directories that belong
to a task's user. Opening such a path by name would follow any symbolic link that user
planted on the way, in any component, and make root create, append to, rename or delete
files wherever the link points. So the path is walked one component at a time from `/`,
each directory opened relative to the one before without following links
(O_NOFOLLOW), and the file is then opened, renamed or unlinked relative to the
descriptor of its directory, which a later rename of the path's components cannot move.

A link is followed only when it sits in a directory that only root or taskforce's own
user can write to, so that nobody else can have planted it: `/var/run -> /run` is
followed, a link in a task's directory or in /tmp is refused.
"""

from __future__ import annotations

import errno
import os
import stat

# The most links followed in one walk, as the kernel's limit (MAXSYMLINKS).
_MAX_LINKS = 40
_DIRECTORY = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePathError(OSError):
    """A link on the way that another user could have planted."""


def open_directory_of(path: str) -> tuple[int, str]:
    """(a descriptor of the directory `path` is in, the file's name in it).

    `path` is absolute. Raises OSError: UnsafePathError for a link that is not to be
    followed, FileNotFoundError and the like for a path that cannot be walked.
    """
    head, name = os.path.split(path)
    if not os.path.isabs(path) or not name:
        raise OSError(errno.EINVAL, f"not an absolute file path: {path}")
    fd = os.open("/", _DIRECTORY)
    try:
        pending = [part for part in reversed(head.split("/")) if part not in ("", ".")]
        walked = ""  # the part of the path walked so far, for messages
        links = 0
        while pending:
            part = pending.pop()
            try:
                step = os.open(part, _DIRECTORY, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                    raise
                info = os.stat(part, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISLNK(info.st_mode):
                    raise
                shown = f"{walked}/{part}"
                if not _trusted(os.fstat(fd)):
                    raise UnsafePathError(
                        errno.ELOOP,
                        f"{shown} is a symbolic link in a directory another user can change",
                    ) from None
                links += 1
                if links > _MAX_LINKS:
                    raise OSError(errno.ELOOP, f"too many symbolic links at {shown}") from None
                target = os.readlink(part, dir_fd=fd)
                pending.extend(p for p in reversed(target.split("/")) if p not in ("", "."))
                if target.startswith("/"):
                    os.close(fd)
                    fd = -1
                    fd = os.open("/", _DIRECTORY)
                    walked = ""
                continue
            os.close(fd)
            fd = step
            walked = f"{walked}/{part}"
        return fd, name
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise


def _trusted(directory: os.stat_result) -> bool:
    """Whether only root or we can add a link to `directory`."""
    return directory.st_uid in (0, os.geteuid()) and not directory.st_mode & (
        stat.S_IWGRP | stat.S_IWOTH
    )
