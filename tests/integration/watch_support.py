"""Shared by the FileWatcher tests: a recording callback and an asyncio runner."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

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


def run(test: Callable[[asyncio.AbstractEventLoop], Awaitable[None]]) -> None:
    async def main() -> None:
        await test(asyncio.get_running_loop())

    asyncio.run(main())
