"""Wait for children's timestamp files with inotify (no polling).

Every child start writes `<ns> <pid>` (CLOCK_MONOTONIC, the clock of time.monotonic_ns)
to its task's file and closes it; IN_CLOSE_WRITE on the directory tells us which.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from inotify_simple import INotify, flags  # type: ignore[import-untyped]


@dataclass(frozen=True)
class Start:
    """One child start as the child itself recorded it."""

    ns: int
    pid: int


def read_start(path: Path) -> Start | None:
    try:
        ns, pid = path.read_text().split()
        return Start(int(ns), int(pid))
    except (OSError, ValueError):
        return None


def read_starts(directory: Path) -> dict[str, Start]:
    starts = {}
    for path in directory.iterdir():
        start = read_start(path)
        if start is not None:
            starts[path.name] = start
    return starts


class TsWatcher:
    """One inotify descriptor for the timestamp directories of several runs."""

    def __init__(self) -> None:
        self._inotify = INotify()
        self._dirs: dict[int, Path] = {}

    def close(self) -> None:
        self._inotify.close()

    def add(self, directory: Path) -> None:
        wd = self._inotify.add_watch(str(directory), flags.CLOSE_WRITE)
        self._dirs[wd] = directory

    def remove(self, directory: Path) -> None:
        for wd, known in list(self._dirs.items()):
            if known == directory:
                del self._dirs[wd]
                with contextlib.suppress(OSError):
                    self._inotify.rm_watch(wd)

    def events(self, timeout_s: float) -> Iterator[tuple[Path, str]]:
        """(directory, file name) of files closed after writing, waiting at most timeout_s."""
        for event in self._inotify.read(timeout=max(0, int(timeout_s * 1000))):
            directory = self._dirs.get(event.wd)
            if directory is not None and event.name:
                yield directory, event.name

    def drain(self) -> None:
        for _ in self.events(0):
            pass

    def wait(self, done: Callable[[Path, str], bool], timeout_s: float) -> bool:
        """Read events until `done(directory, name)` returns True; False on time-out."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            for directory, name in self.events(left):
                if done(directory, name):
                    return True
        return False

    def wait_for_start(
        self, directory: Path, name: str, after_ns: int, timeout_s: float
    ) -> Start | None:
        """The first start of `name` recorded after `after_ns`, or None on time-out."""
        found: list[Start] = []

        def done(where: Path, which: str) -> bool:
            if where != directory or which != name:
                return False
            start = read_start(where / which)
            if start is not None and start.ns >= after_ns:
                found.append(start)
                return True
            return False

        if not self.wait(done, timeout_s):
            start = read_start(directory / name)  # an event lost to queue overflow
            return start if start is not None and start.ns >= after_ns else None
        return found[0]
