"""Linux backend: one inotify descriptor on the asyncio loop, one watch per directory.

Directories are watched rather than files so that a rename over a file, a deletion and
recreation, and the creation of a path that does not exist yet are all seen; the directories
above them too, for their own removal or rename only (so that renaming a whole tree is seen,
while files coming and going in /tmp do not wake the loop), or for their entries where a
component is missing or a symbolic link (see resolve.py). Events are
hints: an event on a file's own entry reports that path; an event on any other entry a path
depends on (a directory on the way, a symbolic link) re-resolves the path and reports it only
if it now refers to a different file.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import struct
from collections.abc import Callable, Iterable
from typing import NamedTuple, Protocol

from .tracker import DirTracker, Need, UnwatchableError

try:
    from taskforce import _syscalls
except ImportError:  # built without a C compiler: inotify_simple (through ctypes) instead
    _syscalls = None  # type: ignore[assignment]

log = logging.getLogger("taskforce.watch")

IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_EXCL_UNLINK = 0x04000000
IN_MASK_ADD = 0x20000000

# Not IN_MODIFY: it fires on every write(), so a file would be reported half-written, and a busy
# log file next to a watched one would wake the loop on every line. IN_CLOSE_WRITE marks the end
# of a write.
_ENTRY_EVENTS = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO
# A directory only on the way to watched files (/home, /tmp) needs its own removal or rename:
# these are not events on its entries, so no file in it wakes the loop. One where a component
# is missing or a link needs its entries' arrivals, departures and renames; one holding watched
# files also their writes.
_SELF_EVENTS = IN_DELETE_SELF | IN_MOVE_SELF
_MASKS = {
    Need.ITSELF: _SELF_EVENTS,
    Need.ENTRIES: _SELF_EVENTS | _ENTRY_EVENTS,
    Need.FILES: _SELF_EVENTS | _ENTRY_EVENTS | IN_CLOSE_WRITE | IN_ATTRIB,
}
_FLAGS = IN_ONLYDIR | IN_EXCL_UNLINK
# The watched directory itself went away or moved: its watch no longer describes its path.
_GONE = IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT


class _Event(NamedTuple):
    wd: int
    mask: int
    cookie: int
    name: str


class _INotify(Protocol):
    """The part of inotify_simple.INotify used here (the library has no type hints)."""

    def fileno(self) -> int: ...
    def add_watch(self, path: str, mask: int) -> int: ...
    def rm_watch(self, wd: int) -> None: ...
    def read(self, timeout: int | None = None) -> list[_Event]: ...
    def close(self) -> None: ...


# struct inotify_event: wd, mask, cookie, len; then `len` bytes of NUL-padded name.
_HEADER = struct.Struct("iIII")
_READ_SIZE = 64 * 1024


class _KernelINotify:
    """An inotify descriptor through taskforce._syscalls: no ctypes (1.5 MB) needed."""

    def __init__(self) -> None:
        assert _syscalls is not None
        self._fd = _syscalls.inotify_init()

    def fileno(self) -> int:
        return self._fd

    def add_watch(self, path: str, mask: int) -> int:
        assert _syscalls is not None
        return _syscalls.inotify_add_watch(self._fd, path, mask)

    def rm_watch(self, wd: int) -> None:
        assert _syscalls is not None
        _syscalls.inotify_rm_watch(self._fd, wd)

    def read(self, timeout: int | None = None) -> list[_Event]:
        """The events queued now (never waits: the descriptor is non-blocking)."""
        try:
            data = os.read(self._fd, _READ_SIZE)
        except BlockingIOError:
            return []
        events = []
        offset, end = 0, len(data)
        while offset < end:
            wd, mask, cookie, size = _HEADER.unpack_from(data, offset)
            offset += _HEADER.size
            name = os.fsdecode(data[offset : offset + size].rstrip(b"\0"))
            offset += size
            events.append(_Event(wd, mask, cookie, name))
        return events

    def close(self) -> None:
        os.close(self._fd)


def _open_inotify() -> _INotify:
    if _syscalls is not None:
        return _KernelINotify()
    from inotify_simple import INotify  # type: ignore[import-untyped]

    return INotify(nonblocking=True)


class InotifyBackend:
    name = "inotify"

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        report: Callable[[set[str]], None],
        give_up: Callable[[set[str]], None],
    ) -> None:
        self._loop = loop
        self._report = report
        self._ino: _INotify | None = _open_inotify()
        self._tracker = DirTracker(self._watch, self._unwatch, give_up)
        self._dir_wd: dict[str, int] = {}
        # The events each directory needs, and the mask each watch has: an inode reached by
        # two directory paths (bind mounts) has one watch, reporting what either needs.
        self._dir_mask: dict[str, int] = {}
        self._wd_mask: dict[int, int] = {}
        # Usually one directory per watch; more when two paths reach the same inode (bind mounts)
        # or while the event of a moved directory is still queued.
        self._wd_dirs: dict[int, set[str]] = {}
        self._warned_limit = False
        loop.add_reader(self._fd(), self._on_readable)

    @property
    def watch_count(self) -> int:
        return len(self._wd_dirs)

    def add(self, paths: Iterable[str]) -> None:
        self._tracker.add(paths)

    def remove(self, paths: Iterable[str]) -> None:
        self._tracker.remove(paths)

    def close(self) -> None:
        if self._ino is None:
            return
        self._loop.remove_reader(self._fd())
        self._ino.close()
        self._ino = None
        self._dir_wd.clear()
        self._wd_dirs.clear()
        self._dir_mask.clear()
        self._wd_mask.clear()
        self._tracker.clear()

    def _fd(self) -> int:
        assert self._ino is not None
        return self._ino.fileno()

    def _on_readable(self) -> None:
        if self._ino is None:
            return
        try:
            events = self._ino.read(timeout=0)
        except OSError as exc:
            log.error("reading inotify events failed: %s", exc)
            return
        tracker = self._tracker
        changed: set[str] = set()
        recheck: set[str] = set()
        gone: set[int] = set()
        for wd, mask, _cookie, name in events:
            if mask & IN_Q_OVERFLOW:
                self._overflow()
                return
            dirs = self._wd_dirs.get(wd)
            if dirs is None:  # a watch removed earlier; its last events are still queued
                continue
            if mask & _GONE:
                gone.add(wd)
                continue
            entry_changed = bool(mask & _ENTRY_EVENTS)
            for directory in dirs:
                tracker.entry_event(directory, name, entry_changed, changed, recheck)
        for wd in gone:
            self._wd_mask.pop(wd, None)
            for directory in self._wd_dirs.pop(wd, ()):
                self._dir_wd.pop(directory, None)
                self._dir_mask.pop(directory, None)
                recheck |= tracker.dir_gone(directory)
            # A moved directory keeps its kernel watch; a deleted one has lost it already.
            self._rm_watch(wd)
        changed |= tracker.settle(recheck)
        if changed:
            self._report(changed)

    def _watch(self, directory: str, need: Need) -> bool:
        mask = _MASKS[need]
        previous = self._dir_wd.get(directory)
        if previous is None:
            # The inode may be watched already through another path: only add to its mask.
            wd = self._add_watch(directory, IN_MASK_ADD | mask)
        else:
            # The same directory needing other events: what all paths to its inode need.
            wanted = mask | self._others_mask(previous, directory)
            if wanted == self._wd_mask.get(previous):
                self._dir_mask[directory] = mask
                return True
            wd = self._add_watch(directory, wanted)
            if wd is not None and wd != previous:
                # Another directory is at this path now (the old one moved away): what is
                # set on it must also cover the other paths already reaching it.
                self._unwatch(directory)
                if wd in self._wd_dirs:
                    wd = self._add_watch(directory, mask | self._others_mask(wd, directory))
        if wd is None:
            return False
        self._dir_wd[directory] = wd
        self._dir_mask[directory] = mask
        self._wd_dirs.setdefault(wd, set()).add(directory)
        return True

    def _others_mask(self, wd: int, directory: str) -> int:
        """What the directories other than ``directory`` sharing watch ``wd`` need."""
        mask = 0
        for other in self._wd_dirs.get(wd, ()):
            if other != directory:
                mask |= self._dir_mask.get(other, 0)
        return mask

    def _add_watch(self, directory: str, mask: int) -> int | None:
        """Add or change the watch on ``directory``; None if it does not exist."""
        assert self._ino is not None
        try:
            wd = self._ino.add_watch(directory, _FLAGS | mask)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                return None
            if exc.errno != errno.ENOSPC:
                raise UnwatchableError(exc.strerror or str(exc)) from exc
            if not self._warned_limit:
                self._warned_limit = True
                log.warning(
                    "inotify watch limit reached (raise the sysctl fs.inotify.max_user_watches):"
                    " watching the remaining files by polling"
                )
            raise UnwatchableError("watch limit", reported=True) from exc
        events = mask & ~IN_MASK_ADD
        self._wd_mask[wd] = (self._wd_mask.get(wd, 0) | events) if mask & IN_MASK_ADD else events
        return wd

    def _unwatch(self, directory: str) -> None:
        wd = self._dir_wd.pop(directory, None)
        self._dir_mask.pop(directory, None)
        if wd is None:
            return
        dirs = self._wd_dirs.get(wd)
        if dirs is not None:
            dirs.discard(directory)
            if dirs:
                return
            del self._wd_dirs[wd]
        self._wd_mask.pop(wd, None)
        self._rm_watch(wd)

    def _rm_watch(self, wd: int) -> None:
        assert self._ino is not None
        # It may be gone already: removed by the kernel, IN_IGNORED on its way.
        with contextlib.suppress(OSError):
            self._ino.rm_watch(wd)

    def _overflow(self) -> None:
        """Events were lost: rebuild every watch from scratch and report every path."""
        log.warning("inotify event queue overflowed: rechecking all watched files")
        for wd in list(self._wd_dirs):
            self._rm_watch(wd)
        self._dir_wd.clear()
        self._wd_dirs.clear()
        self._dir_mask.clear()
        self._wd_mask.clear()
        paths = self._tracker.clear()
        self._tracker.add(paths)
        self._report(paths)
