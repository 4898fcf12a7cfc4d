"""Polling fallback: compare a stat fingerprint of each path on a timer.

Used when no kernel facility is available or its limits are reached. The timer exists only
while there is something to poll, so an empty poller costs nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from os import stat

from .resolve import is_listing

# (st_ino, st_dev, st_size, st_mtime_ns, st_ctime_ns, st_mode); None when the path is missing.
# ctime catches chmod and a rename over the path even when size and mtime are preserved.
Fingerprint = tuple[int, int, int, int, int, int]


def fingerprint(path: str) -> Fingerprint | None:
    """The fingerprint of a file; of a listing (see resolve.listing), its directory's,
    whose times change as entries come and go."""
    if is_listing(path):
        path = path.rpartition("/")[0] or "/"
    try:
        st = stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)


class PollingBackend:
    name = "polling"
    watch_count = 0

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        report: Callable[[set[str]], None],
        interval: float,
    ) -> None:
        if interval <= 0:
            raise ValueError("poll interval must be positive")
        self._loop = loop
        self._report = report
        self._interval = interval
        self._prints: dict[str, Fingerprint | None] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(self, paths: Iterable[str]) -> None:
        for path in paths:
            self._prints[path] = fingerprint(path)
        if self._prints and self._timer is None:
            self._timer = self._loop.call_later(self._interval, self._tick)

    def remove(self, paths: Iterable[str]) -> None:
        for path in paths:
            self._prints.pop(path, None)
        if not self._prints:
            self._cancel()

    def close(self) -> None:
        self._prints.clear()
        self._cancel()

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        self._timer = None
        changed: set[str] = set()
        prints = self._prints
        for path, old in prints.items():
            new = fingerprint(path)
            if new != old:
                prints[path] = new
                changed.add(path)
        if prints:
            self._timer = self._loop.call_later(self._interval, self._tick)
        if changed:
            self._report(changed)
