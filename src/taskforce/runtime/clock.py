"""What the supervisor needs of time: a clock to read, and a scheduler to call it back.

The real clock is the system's (monotonic for deadlines, wall time for what people read)
and the real scheduler is the asyncio event loop, whose time() is that monotonic clock.
Tests give fakes, so that the loop runs without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall(self) -> float: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()  # what asyncio's loop.time() reads: call_at() deadlines

    def wall(self) -> float:
        return time.time()


class Handle(Protocol):
    def cancel(self) -> None: ...


class Scheduler(Protocol):
    """The part of asyncio's event loop that calls back: at once, at a time, after a delay."""

    def call_soon(self, callback: Callable[[], object], /) -> Handle: ...

    def call_at(self, when: float, callback: Callable[[], object], /) -> Handle: ...

    def call_later(self, delay: float, callback: Callable[[], object], /) -> Handle: ...
