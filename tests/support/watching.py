"""The FileWatcher tests' setup: a watcher on the running loop reporting to a recorder."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from taskforce.watch import FileWatcher

DEADLINE = 10.0


class Recorder:
    """The on_change callback: records calls and wakes waiters."""

    def __init__(self) -> None:
        self.calls: list[frozenset[str]] = []
        self._wake = asyncio.Event()

    def __call__(self, paths: frozenset[str]) -> None:
        self.calls.append(paths)
        self._wake.set()

    def seen(self, start: int = 0) -> set[str]:
        found: set[str] = set()
        for call in self.calls[start:]:
            found |= call
        return found

    async def expect(self, *paths: Path | str, start: int = 0) -> None:
        """Wait until every path has been reported in a call numbered ``start`` or later."""
        wanted = {str(p) for p in paths}

        async def reported() -> None:
            while not wanted <= self.seen(start):
                self._wake.clear()
                await self._wake.wait()

        await asyncio.wait_for(reported(), DEADLINE)


@contextlib.asynccontextmanager
async def watching(
    *, debounce: float = 0.0, force_polling: bool = False, poll_interval: float = 1.0
) -> AsyncIterator[tuple[FileWatcher, Recorder]]:
    """A FileWatcher on the running loop reporting to a Recorder; closed on the way out,
    whatever happens."""
    rec = Recorder()
    watcher = FileWatcher(
        asyncio.get_running_loop(),
        rec,
        debounce=debounce,
        force_polling=force_polling,
        poll_interval=poll_interval,
    )
    try:
        yield watcher, rec
    finally:
        watcher.close()
