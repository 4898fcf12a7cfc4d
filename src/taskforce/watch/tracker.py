"""The part of a directory-watching backend that does not depend on the kernel facility.

A :class:`DirTracker` keeps the watched paths resolved, decides which directories need a kernel
watch, and turns "something happened in this directory" into "these paths changed". The
backends (inotify, kqueue) supply two functions: add a kernel watch on a directory and remove
it.
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Callable, Iterable

from .resolve import ANY_ENTRY, Ident, KeyIndex, Resolver

log = logging.getLogger("taskforce.watch")

# Adding a watch may reveal that a directory appeared or vanished meanwhile, which changes what
# must be watched. Racing changes settle in a few rounds; past that, poll what is left.
_MAX_ROUNDS = 10


class Need(enum.IntEnum):
    """What a directory's kernel watch must report, each level including the ones before."""

    ITSELF = 0  # only on the way to watched paths: its own removal or rename
    ENTRIES = 1  # entries appearing, going, being renamed (a missing component, a link)
    FILES = 2  # it holds watched files: their writes and attribute changes too


class UnwatchableError(Exception):
    """The kernel refused a watch: poll the paths that need it instead.

    ``reported``: the backend has logged the reason already (a limit, logged once).
    """

    def __init__(self, reason: str, *, reported: bool = False) -> None:
        super().__init__(reason)
        self.reported = reported


class DirTracker:
    def __init__(
        self,
        watch: Callable[[str, Need], bool],
        unwatch: Callable[[str], None],
        give_up: Callable[[set[str]], None],
    ) -> None:
        """``watch(directory, need)`` adds a kernel watch or changes the events it reports
        (see :class:`Need`). It returns False if the directory does not exist (any more) and
        raises :class:`UnwatchableError` if it cannot be watched. ``give_up(paths)`` takes over the
        paths that cannot be watched."""
        self._watch = watch
        self._unwatch = unwatch
        self._give_up = give_up
        self.index = KeyIndex()
        # Watched directories, with the identity of the directory each watch was put on: a
        # watch follows its inode, so after a rename higher up it may be on another one.
        self._watched: dict[str, Ident | None] = {}

    @property
    def watched_dirs(self) -> set[str]:
        return set(self._watched)

    def add(self, paths: Iterable[str]) -> None:
        resolver = Resolver()
        for path in paths:
            self.index.put(path, resolver.resolve(path))
        self._verify(resolver)
        # Changes that race with this call are not reported: there is no earlier state.
        self.sync(thorough=False)

    def remove(self, paths: Iterable[str]) -> None:
        for path in paths:
            self.index.discard(path)
        self.sync(thorough=False)

    def clear(self) -> set[str]:
        """Forget everything (the caller has dropped its kernel watches); return the paths."""
        paths = set(self.index.paths)
        self.index = KeyIndex()
        self._watched.clear()
        return paths

    def entry_event(
        self, directory: str, name: str, entry_changed: bool, changed: set[str], recheck: set[str]
    ) -> None:
        """Sort the paths affected by an event on one entry of a watched directory.

        A path whose own entry it is has changed; when the entry itself was created, removed or
        renamed, and for paths that go through the entry (a directory, a link), what the path
        refers to must be re-resolved.
        """
        key = (directory, name)
        index = self.index
        for path in index.lookup(directory, name):
            if index.paths[path].final == key:
                changed.add(path)
                if entry_changed:
                    recheck.add(path)
            else:
                recheck.add(path)
        if entry_changed:
            # Listings of the directory: an entry came, went or was renamed.
            changed |= index.lookup(directory, ANY_ENTRY)

    def dir_gone(self, directory: str) -> set[str]:
        """The kernel watch of ``directory`` is gone; return the paths to re-resolve."""
        self._watched.pop(directory, None)
        self.index.rewatch((directory,))
        return self.index.in_dir(directory)

    def settle(self, recheck: Iterable[str]) -> set[str]:
        """Re-resolve ``recheck``, update the kernel watches; return the paths that changed."""
        changed = self.recheck(recheck)
        changed |= self.sync(thorough=True)
        return changed

    def recheck(self, paths: Iterable[str]) -> set[str]:
        """Re-resolve ``paths``; return those now referring to a different file."""
        changed: set[str] = set()
        resolver = Resolver()
        index = self.index
        for path in paths:
            if path not in index.paths:
                continue
            new = resolver.resolve(path)
            old = index.put(path, new)
            if old is None or old.ident != new.ident:
                changed.add(path)
        self._verify(resolver)
        return changed

    def _verify(self, resolver: Resolver) -> None:
        """Move watches found on the wrong directory (one renamed away) to the right one."""
        watched = self._watched
        for directory, ident in resolver.dir_idents.items():
            if directory in watched and watched[directory] != ident:
                del watched[directory]
                self._unwatch(directory)
                self.index.rewatch((directory,))

    def sync(self, *, thorough: bool) -> set[str]:
        """Bring kernel watches in line with the index; return paths found changed meanwhile.

        After a watch is added, the paths waiting in its directory for an entry to appear are
        re-resolved: it may have appeared before the watch existed. ``thorough`` re-resolves
        every path depending on a newly watched directory (while handling events, what is below
        it may have changed in the same burst).
        """
        changed: set[str] = set()
        index = self.index
        for _ in range(_MAX_ROUNDS):
            new, old, relevel = index.take_dir_changes()
            if not new and not old and not relevel:
                return changed
            for directory in old:
                self._remove(directory)
            for directory in (relevel | new) & self._watched.keys():
                # It needs more or fewer events than before (or, dropped and needed again
                # within the batch, the same: then the backend has nothing to do).
                self._add(directory)
            recheck: set[str] = set()
            missed: list[str] = []
            for directory in new - self._watched.keys():
                added = self._add(directory)
                if added:
                    recheck |= index.in_dir(directory) if thorough else index.waiting_in(directory)
                elif added is None and index.needs(directory):
                    # It vanished between resolving and watching.
                    recheck |= index.in_dir(directory)
                    missed.append(directory)
            changed |= self.recheck(recheck)
            index.rewatch(missed)  # try again if still needed after re-resolving
        # Still changing after all rounds: poll what is left unwatched rather than loop on.
        new, old, _ = index.take_dir_changes()
        for directory in old:
            self._remove(directory)
        unsettled: set[str] = set()
        for directory in new - self._watched.keys():
            unsettled |= index.owned_by(directory)
        self.drop(unsettled)
        for directory in index.take_dir_changes()[1]:
            self._remove(directory)
        return changed

    def need(self, directory: str) -> Need:
        index = self.index
        if index.has_files(directory):
            return Need.FILES
        return Need.ENTRIES if index.needs_entries(directory) else Need.ITSELF

    def _add(self, directory: str) -> bool | None:
        """Watch ``directory``: True if watched, None if missing, False if refused."""
        try:
            ok = self._watch(directory, self.need(directory))
        except UnwatchableError as exc:
            owned = self.index.owned_by(directory)
            if not exc.reported:
                if owned:
                    log.warning("cannot watch %s (%s): polling its files", directory, exc)
                else:
                    log.info("cannot watch %s (%s): its renames go unnoticed", directory, exc)
            # Paths merely passing through it stay watched, without notice of its renames.
            self.drop(owned)
            return False
        if not ok:
            return None
        if directory not in self._watched:
            # Taken after the watch: if the directory is replaced in between, the next
            # re-resolution finds the watch on the wrong one.
            try:
                st = os.stat(directory)
            except OSError:
                self._watched[directory] = None
            else:
                self._watched[directory] = (st.st_dev, st.st_ino)
        return True

    def _remove(self, directory: str) -> None:
        if directory in self._watched:
            del self._watched[directory]
            self._unwatch(directory)

    def drop(self, paths: set[str]) -> None:
        """Stop watching ``paths`` and hand them to ``give_up``."""
        if paths:
            for path in paths:
                self.index.discard(path)
            self._give_up(paths)
