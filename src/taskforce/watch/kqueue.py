"""BSD/macOS backend: kqueue vnode events on the asyncio loop.

kqueue reports on open descriptors. A directory's NOTE_WRITE says that its entries changed but
not which, so the names watched in it are looked up again and the paths behind those that
changed are re-resolved (a creation, a deletion, a rename over a file, a tree renamed higher
up). A write or chmod of a file does not touch its directory, so each existing watched file
also gets a descriptor of its own. Descriptors count against the process's open file limit:
paths that cannot get one are polled.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import select
import sys
from collections.abc import Callable, Iterable

from .resolve import ITSELF, Ident, Key, is_listing
from .tracker import DirTracker, Need, UnwatchableError

# Only imported where select.kqueue exists; the assert also tells mypy to check the rest of
# this module for BSD and macOS only.
assert sys.platform != "linux" and sys.platform != "win32"

log = logging.getLogger("taskforce.watch")

# macOS: a descriptor that only receives events does not keep its volume from unmounting.
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_EVTONLY", 0)
_GONE = select.KQ_NOTE_DELETE | select.KQ_NOTE_RENAME | select.KQ_NOTE_REVOKE
_DIR_NOTES = select.KQ_NOTE_WRITE | _GONE
_FILE_NOTES = select.KQ_NOTE_WRITE | select.KQ_NOTE_EXTEND | select.KQ_NOTE_ATTRIB | _GONE
_BATCH = 256


class KqueueBackend:
    name = "kqueue"

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        report: Callable[[set[str]], None],
        give_up: Callable[[set[str]], None],
    ) -> None:
        self._loop = loop
        self._report = report
        self._give_up = give_up
        self._kq: select.kqueue | None = select.kqueue()
        self._tracker = DirTracker(self._watch, self._unwatch, self._drop_files)
        self._dir_fd: dict[str, int] = {}
        self._fd_dir: dict[int, str] = {}
        self._dir_notes: dict[int, int] = {}
        # What each watched name of a directory was when last looked at.
        self._entry_idents: dict[str, dict[str, Ident | None]] = {}
        # Descriptors on the watched files, by the directory entry holding the file, with the
        # identity of the file each was opened on (a rename over the entry makes it stale).
        self._file_fd: dict[Key, int] = {}
        self._fd_file: dict[int, Key] = {}
        self._file_ident: dict[Key, Ident] = {}
        self._file_users: dict[Key, set[str]] = {}
        self._path_file: dict[str, Key] = {}
        self._warned_limit = False
        loop.add_reader(self._kq.fileno(), self._on_readable)

    @property
    def watch_count(self) -> int:
        return len(self._dir_fd) + len(self._file_fd)

    def add(self, paths: Iterable[str]) -> None:
        paths = set(paths)
        # A directory's vnode notes say that its entries changed, not which: listings are
        # polled (their directory's times) rather than compared here name by name.
        listings = {path for path in paths if is_listing(path)}
        if listings:
            paths -= listings
            self._give_up(listings)
        self._tracker.add(paths)
        self._sync_files(paths)

    def remove(self, paths: Iterable[str]) -> None:
        paths = set(paths)
        self._tracker.remove(paths)
        self._sync_files(paths)

    def close(self) -> None:
        if self._kq is None:
            return
        self._loop.remove_reader(self._kq.fileno())
        for fd in [*self._fd_dir, *self._fd_file]:
            os.close(fd)
        self._kq.close()
        self._kq = None
        self._dir_fd.clear()
        self._fd_dir.clear()
        self._dir_notes.clear()
        self._entry_idents.clear()
        self._file_fd.clear()
        self._fd_file.clear()
        self._file_ident.clear()
        self._file_users.clear()
        self._path_file.clear()
        self._tracker.clear()

    def _on_readable(self) -> None:
        if self._kq is None:
            return
        changed: set[str] = set()
        recheck: set[str] = set()
        while True:
            events = self._kq.control(None, _BATCH, 0)
            for ev in events:
                self._event(ev.ident, ev.fflags, changed, recheck)
            if len(events) < _BATCH:
                break
        touched = changed | recheck
        changed |= self._tracker.settle(recheck)
        self._sync_files(touched | changed)
        if changed:
            self._report(changed)

    def _event(self, fd: int, fflags: int, changed: set[str], recheck: set[str]) -> None:
        directory = self._fd_dir.get(fd)
        if directory is not None:
            if fflags & _GONE:
                self._unwatch(directory)
                recheck |= self._tracker.dir_gone(directory)
            else:
                recheck |= self._changed_entries(directory)
            return
        key = self._fd_file.get(fd)
        if key is None:
            return
        users = self._file_users.get(key, set())
        changed |= users
        if fflags & _GONE:
            self._close_file(key)
            recheck |= users

    def _changed_entries(self, directory: str) -> set[str]:
        """Paths behind the names of ``directory`` that now hold another file (or none)."""
        seen = self._entry_idents.setdefault(directory, {})
        paths: set[str] = set()
        for name, behind in self._tracker.index.entries(directory).items():
            if name == ITSELF:
                continue  # its own events are _GONE
            try:
                st = os.lstat(os.path.join(directory, name))
            except OSError:
                ident = None
            else:
                ident = (st.st_dev, st.st_ino)
            if name not in seen or seen[name] != ident:
                seen[name] = ident
                paths |= behind
        return paths

    def _open(self, path: str, notes: int) -> int:
        fd = os.open(path, _OPEN_FLAGS)
        try:
            self._register(fd, notes)
        except OSError:
            os.close(fd)
            raise
        return fd

    def _register(self, fd: int, notes: int) -> None:
        """Add the vnode kevent of ``fd``, or change its notes."""
        assert self._kq is not None
        flags = select.KQ_EV_ADD | select.KQ_EV_CLEAR
        self._kq.control([select.kevent(fd, select.KQ_FILTER_VNODE, flags, notes)], 0)

    def _refused(self, exc: OSError) -> UnwatchableError:
        if exc.errno not in (errno.EMFILE, errno.ENFILE):
            return UnwatchableError(exc.strerror or str(exc))
        if not self._warned_limit:
            self._warned_limit = True
            log.warning(
                "open file limit reached watching files with kqueue (raise it with ulimit -n):"
                " watching the remaining files by polling"
            )
        return UnwatchableError("open file limit", reported=True)

    def _watch(self, directory: str, need: Need) -> bool:
        # A directory's NOTE_WRITE covers its entries; its files get descriptors of their own.
        # One only on the way needs its own deletion or rename.
        notes = _GONE if need is Need.ITSELF else _DIR_NOTES
        fd = self._dir_fd.get(directory)
        if fd is not None:
            if self._dir_notes.get(fd) != notes:
                try:
                    self._register(fd, notes)
                except OSError as exc:
                    raise self._refused(exc) from exc
                self._dir_notes[fd] = notes
            return True
        try:
            fd = self._open(directory, notes)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise self._refused(exc) from exc
        self._dir_fd[directory] = fd
        self._fd_dir[fd] = directory
        self._dir_notes[fd] = notes
        return True

    def _unwatch(self, directory: str) -> None:
        self._entry_idents.pop(directory, None)
        fd = self._dir_fd.pop(directory, None)
        if fd is not None:
            del self._fd_dir[fd]
            self._dir_notes.pop(fd, None)
            os.close(fd)  # closing a descriptor removes its kevents

    def _sync_files(self, paths: Iterable[str]) -> None:
        """Give each existing watched file a descriptor on its current inode."""
        resolved = self._tracker.index.paths
        refused: set[str] = set()
        for path in paths:
            res = resolved.get(path)
            want = res.final if res is not None and res.ident is not None else None
            have = self._path_file.get(path)
            if have != want:
                if have is not None:
                    self._unuse(path, have)
                if want is not None:
                    self._path_file[path] = want
                    self._file_users.setdefault(want, set()).add(path)
            if want is None or res is None or res.ident is None:
                continue
            if self._file_ident.get(want) != res.ident:
                self._close_file(want)
                self._file_ident[want] = res.ident
                try:
                    fd = self._open(os.path.join(*want), _FILE_NOTES)
                except FileNotFoundError:
                    continue  # already gone: its directory's event will follow
                except OSError as exc:
                    error = self._refused(exc)
                    if not error.reported:
                        log.warning("cannot watch %s (%s): polling it", os.path.join(*want), error)
                    refused |= self._file_users.get(want, set())
                    continue
                self._file_fd[want] = fd
                self._fd_file[fd] = want
        if refused:
            self._tracker.drop(refused)

    def _unuse(self, path: str, key: Key) -> None:
        del self._path_file[path]
        users = self._file_users.get(key)
        if users is not None:
            users.discard(path)
            if not users:
                del self._file_users[key]
                self._close_file(key)
                self._file_ident.pop(key, None)

    def _close_file(self, key: Key) -> None:
        self._file_ident.pop(key, None)
        fd = self._file_fd.pop(key, None)
        if fd is not None:
            del self._fd_file[fd]
            os.close(fd)

    def _drop_files(self, paths: set[str]) -> None:
        """The tracker gave these paths up: release their descriptors, then poll them."""
        for path in paths:
            key = self._path_file.get(path)
            if key is not None:
                self._unuse(path, key)
        self._give_up(paths)
