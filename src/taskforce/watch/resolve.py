"""Which directory entries decide what a watched path refers to.

A watched path is affected not only by its own directory entry: any directory on the way may
be renamed or replaced (a deployment swapping trees), a missing one may appear, and a symbolic
link on the way (``current -> releases/v1``) may be switched. The kernel backends watch
directories, so a path is described by the ``(directory, name)`` entries whose change can
alter it, all in resolved (symlink-free) form, because that is where the kernel reports the
events.

A directory that exists on the way is described by ``(directory, ITSELF)`` rather than by its
entry in its parent: it can only stop being on the way by being removed or renamed (a
non-empty directory cannot be replaced by a rename), which its own watch reports. Its parent's
entries then need no watch, so files coming and going in /tmp or /etc next to a watched path
wake nobody. Entries that can change the path without such an event, a missing component
appearing, a symbolic link switched, are watched in their directory.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping
from typing import NamedTuple

# (real directory, entry name): a watched directory and a name inside it.
Key = tuple[str, str]
# (st_dev, st_ino) of the file a path refers to.
Ident = tuple[int, int]

# The kernel gives up after 40 links (ELOOP); a loop must not recurse forever here either.
_MAX_LINKS = 40

_NO_PATHS: frozenset[str] = frozenset()

# The last name of a path that stands for the entries of its directory (see
# :func:`listing`): NUL is in no file name, so no real entry is ever mistaken for it.
ANY_ENTRY = "\0"


# The name standing for the directory itself (see the module's docstring): no real entry
# contains NUL either.
ITSELF = "\0."


def listing(directory: str) -> str:
    """The path to watch for entries appearing in, leaving or renamed within `directory`
    (or the directory itself appearing, going or being replaced)."""
    return directory.rstrip("/") + "/" + ANY_ENTRY


def is_listing(path: str) -> bool:
    return path.endswith("/" + ANY_ENTRY)


def _split(path: str) -> tuple[str, str]:
    # os.path.split and join cost as much as the lstat; paths here are absolute.
    head, _, name = path.rpartition("/")
    return head or "/", name


def _join(directory: str, name: str) -> str:
    return directory + name if directory.endswith("/") else directory + "/" + name


def _merge(keys: tuple[Key, ...], more: tuple[Key, ...]) -> tuple[Key, ...]:
    # A link's target is walked from the root again: keep each entry once.
    return tuple(dict.fromkeys((*keys, *more)))


class Resolution(NamedTuple):
    """What a watched path depends on right now."""

    keys: tuple[Key, ...]  # every entry whose change may alter the path, links included
    final: Key | None  # the entry holding the file itself; None while a directory is missing
    ident: Ident | None  # the file the path refers to; None if it does not exist


class _Dir(NamedTuple):
    real: str | None  # resolved directory, None while it does not exist
    keys: tuple[Key, ...]  # entries from the root down to it, links followed


class Resolver:
    """Resolves paths against one moment of the filesystem.

    Directory walks are cached, so resolving many paths in few directories costs one ``lstat``
    per path plus one per directory component. Use a fresh resolver for each batch: the cache
    is a snapshot.
    """

    def __init__(self) -> None:
        self._dirs: dict[str, _Dir] = {}
        # The directories seen on the way, for checking that watches are still on them.
        self.dir_idents: dict[str, Ident] = {}

    def resolve(self, path: str) -> Resolution:
        return self._file(path, 0)

    def _file(self, path: str, hops: int) -> Resolution:
        head, name = _split(path)
        parent = self._dir(head, hops)
        if parent.real is None:
            return Resolution(parent.keys, None, None)
        if name in ("", ".", ".."):
            # Only reachable through odd link targets ("x/.."): treat as the directory itself.
            return self._dir_as_file(os.path.join(parent.real, name), parent.keys)
        key = (parent.real, name)
        keys = (*parent.keys, key)
        if name == ANY_ENTRY:  # a listing is the directory's: it changes with it
            return Resolution(keys, key, self._dir_ident(parent.real))
        full = _join(parent.real, name)
        try:
            st = os.lstat(full)
        except OSError:
            return Resolution(keys, key, None)
        if stat.S_ISLNK(st.st_mode):
            if hops >= _MAX_LINKS:
                return Resolution(keys, key, None)
            try:
                target = os.readlink(full)
            except OSError:
                return Resolution(keys, key, None)
            sub = self._file(os.path.join(parent.real, target), hops + 1)
            return Resolution(_merge(keys, sub.keys), sub.final, sub.ident)
        return Resolution(keys, key, (st.st_dev, st.st_ino))

    def _dir_ident(self, real: str) -> Ident | None:
        found = self.dir_idents.get(real)
        if found is not None:
            return found
        try:
            st = os.stat(real)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def _dir_as_file(self, path: str, keys: tuple[Key, ...]) -> Resolution:
        try:
            st = os.stat(path)
        except OSError:
            return Resolution(keys, None, None)
        return Resolution(keys, None, (st.st_dev, st.st_ino))

    def _dir(self, path: str, hops: int) -> _Dir:
        cached = self._dirs.get(path)
        if cached is not None:
            return cached
        head, name = _split(path)
        if head == path:  # the root
            found = _Dir(path, ())
        else:
            parent = self._dir(head, hops)
            if parent.real is None or name in ("", "."):
                found = parent
            elif name == "..":
                # The kernel applies ".." to the resolved directory, not to the text.
                found = _Dir(os.path.dirname(parent.real), parent.keys)
            else:
                found = self._component(parent.real, name, parent.keys, hops)
        self._dirs[path] = found
        return found

    def _component(self, real: str, name: str, keys: tuple[Key, ...], hops: int) -> _Dir:
        key = (real, name)
        full = _join(real, name)
        try:
            st = os.lstat(full)
        except OSError:
            return _Dir(None, (*keys, key))
        if stat.S_ISDIR(st.st_mode):
            # An existing directory is a key too: renaming it (or an ancestor) moves the path
            # away from the directories watched below it, without an event on them.
            self.dir_idents[full] = (st.st_dev, st.st_ino)
            return _Dir(full, (*keys, (full, ITSELF)))
        if stat.S_ISLNK(st.st_mode) and hops < _MAX_LINKS:
            try:
                target = os.readlink(full)
            except OSError:
                return _Dir(None, (*keys, key))
            sub = self._dir(os.path.join(real, target), hops + 1)
            return _Dir(sub.real, _merge((*keys, key), sub.keys))
        # A file (or a link loop) where a directory should be: wait for it to change.
        return _Dir(None, (*keys, key))


class KeyIndex:
    """The watched paths, their resolutions, and the reverse map from entries to paths.

    Also records which directories started or stopped being needed since the last
    :meth:`take_dir_changes`, so a backend adds and removes only the kernel watches that changed.
    A directory that holds watched files needs more events than one whose entries decide a
    path (a missing one, a link), which needs more than one only on the way (:data:`ITSELF`).
    """

    def __init__(self) -> None:
        self.paths: dict[str, Resolution] = {}
        self._entries: dict[str, dict[str, set[str]]] = {}
        # Paths by the directory holding their file, and paths waiting for an entry (a missing
        # directory) by the directory where it will appear.
        self._files: dict[str, set[str]] = {}
        self._waiting: dict[str, set[str]] = {}
        self._new_dirs: set[str] = set()
        self._old_dirs: set[str] = set()
        self._relevel_dirs: set[str] = set()

    def put(self, path: str, res: Resolution) -> Resolution | None:
        """Record ``res`` for ``path``; return the previous resolution."""
        old = self.paths.get(path)
        self.paths[path] = res
        if old is None or old.keys != res.keys or old.final != res.final:
            if old is not None:
                self._unlink(path, old)
            self._link(path, res)
        return old

    def discard(self, path: str) -> None:
        old = self.paths.pop(path, None)
        if old is not None:
            self._unlink(path, old)

    def lookup(self, directory: str, name: str) -> set[str] | frozenset[str]:
        names = self._entries.get(directory)
        if names is None:
            return _NO_PATHS
        return names.get(name, _NO_PATHS)

    def entries(self, directory: str) -> Mapping[str, set[str]]:
        """The names some path depends on in ``directory``, with those paths."""
        return self._entries.get(directory, {})

    def in_dir(self, directory: str) -> set[str]:
        """Every path depending on some entry of ``directory``."""
        found: set[str] = set()
        for paths in self._entries.get(directory, {}).values():
            found |= paths
        return found

    def waiting_in(self, directory: str) -> set[str]:
        """Paths waiting for an entry to appear in ``directory``."""
        return set(self._waiting.get(directory, _NO_PATHS))

    def owned_by(self, directory: str) -> set[str]:
        """Paths that cannot be watched without ``directory``: their file or the entry they
        wait for is there (for the others it is only on the way)."""
        return self.waiting_in(directory) | self._files.get(directory, _NO_PATHS)

    def has_files(self, directory: str) -> bool:
        return directory in self._files

    def needs_entries(self, directory: str) -> bool:
        """Whether some path depends on an entry of ``directory`` (not only on itself)."""
        return _named(self._entries.get(directory, {})) > 0

    def needs(self, directory: str) -> bool:
        return directory in self._entries

    def dirs(self) -> set[str]:
        """Every directory some path depends on."""
        return set(self._entries)

    def rewatch(self, directories: Iterable[str]) -> None:
        """The kernel watch of these directories is gone: report them as new if still needed."""
        for directory in directories:
            if directory in self._entries:
                self._new_dirs.add(directory)

    def take_dir_changes(self) -> tuple[set[str], set[str], set[str]]:
        """Directories newly needed, no longer needed, and those that may need other events
        (they started or stopped holding files, or entries of theirs that paths depend on),
        since the previous call."""
        new, old, relevel = self._new_dirs, self._old_dirs, self._relevel_dirs
        self._new_dirs, self._old_dirs, self._relevel_dirs = set(), set(), set()
        return new, old, relevel

    def _link(self, path: str, res: Resolution) -> None:
        for directory, name in res.keys:
            names = self._entries.get(directory)
            if names is None:
                names = self._entries[directory] = {}
                self._new_dirs.add(directory)
                self._old_dirs.discard(directory)
            paths = names.get(name)
            if paths is None:
                names[name] = {path}
                if name != ITSELF and _named(names) == 1:
                    self._relevel_dirs.add(directory)
            else:
                paths.add(path)
        if res.final is not None:
            directory = res.final[0]
            if directory not in self._files:
                self._files[directory] = set()
                self._relevel_dirs.add(directory)
            self._files[directory].add(path)
        elif res.keys:
            self._waiting.setdefault(res.keys[-1][0], set()).add(path)

    def _unlink(self, path: str, res: Resolution) -> None:
        for directory, name in res.keys:
            names = self._entries.get(directory)
            if names is None:
                continue
            paths = names.get(name)
            if paths is None:
                continue
            paths.discard(path)
            if not paths:
                del names[name]
                if not names:
                    del self._entries[directory]
                    self._old_dirs.add(directory)
                    self._new_dirs.discard(directory)
                elif name != ITSELF and not _named(names):
                    self._relevel_dirs.add(directory)
        if res.final is not None:
            directory = res.final[0]
            if _remove(self._files, directory, path) and directory in self._entries:
                self._relevel_dirs.add(directory)
        elif res.keys:
            _remove(self._waiting, res.keys[-1][0], path)


def _named(names: Mapping[str, set[str]]) -> int:
    """How many real entries (not the directory itself) are in ``names``."""
    return len(names) - (ITSELF in names)


def _remove(groups: dict[str, set[str]], directory: str, path: str) -> bool:
    """Remove ``path`` from its group; True if that emptied the group."""
    paths = groups.get(directory)
    if paths is not None:
        paths.discard(path)
        if not paths:
            del groups[directory]
            return True
    return False
