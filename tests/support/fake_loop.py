"""Fakes for driving the supervisor's loop by hand: a clock that moves when told, a
scheduler that runs callbacks when told, a process runner that only records."""

from __future__ import annotations

import signal
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from taskforce.core.spec import LaunchSpec
from taskforce.runtime.processes.runner import StartRequest
from taskforce.runtime.processes.spawn import Spawned, SpawnError

WALL_START = 1_700_000_000.0


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return WALL_START + self.now


@dataclass
class FakeHandle:
    when: float
    callback: Callable[[], object]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeScheduler:
    """Callbacks run only in run_soon() and advance(), in the order asyncio would run them."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.soon: deque[FakeHandle] = deque()
        self.timers: list[FakeHandle] = []

    def call_soon(self, callback: Callable[[], object], /) -> FakeHandle:
        handle = FakeHandle(self.clock.now, callback)
        self.soon.append(handle)
        return handle

    def call_at(self, when: float, callback: Callable[[], object], /) -> FakeHandle:
        handle = FakeHandle(when, callback)
        self.timers.append(handle)
        return handle

    def call_later(self, delay: float, callback: Callable[[], object], /) -> FakeHandle:
        return self.call_at(self.clock.now + delay, callback)

    def run_soon(self) -> None:
        for _ in range(1000):
            if not self.soon:
                return
            handle = self.soon.popleft()
            if not handle.cancelled:
                handle.callback()
        raise AssertionError("the loop never settles: callbacks keep scheduling callbacks")

    def next_deadline(self) -> float | None:
        pending = [h.when for h in self.timers if not h.cancelled]
        return min(pending, default=None)

    def advance(self, to: float) -> None:
        """Move the clock to `to`, running every timer due on the way (and what they queue)."""
        self.run_soon()
        while (due := self.next_deadline()) is not None and due <= to:
            self.clock.now = max(self.clock.now, due)
            handle = min((h for h in self.timers if not h.cancelled), key=lambda h: h.when)
            self.timers.remove(handle)
            handle.callback()
            self.run_soon()
        self.clock.now = to


@dataclass
class FakeRunner:
    """Records what is started and signalled; a process 'exits' when a test says so, or
    on SIGTERM/SIGKILL to its group unless it is in `ignores_term`."""

    refused: set[str] = field(default_factory=set)  # programs that cannot start
    ignores_term: set[int] = field(default_factory=set)
    started: list[tuple[int, LaunchSpec]] = field(default_factory=list)
    requests: list[StartRequest] = field(default_factory=list)  # every start asked for
    signals: list[tuple[int, int]] = field(default_factory=list)
    running: dict[int, LaunchSpec] = field(default_factory=dict)
    _exits: list[tuple[int, int]] = field(default_factory=list)
    _next_pid: int = 1000

    def begin(self, requests: Sequence[StartRequest]) -> Callable[[], list[Spawned | Exception]]:
        results: list[Spawned | Exception] = []
        for request in requests:
            self.requests.append(request)
            launch = request.launch
            if launch.program in self.refused:
                results.append(SpawnError(f"{launch.program}: no such file"))
                continue
            self._next_pid += 1
            self.started.append((self._next_pid, launch))
            self.running[self._next_pid] = launch
            results.append(Spawned(self._next_pid, -1, launch.program))
        return lambda: results

    def signal_group(self, pid: int, signum: int, *, or_process: bool = False) -> bool:
        return self.signal_process(pid, signum)

    def signal_process(self, pid: int, signum: int) -> bool:
        if pid not in self.running:
            return False
        self.signals.append((pid, signum))
        if signum == signal.SIGKILL or (signum == signal.SIGTERM and pid not in self.ignores_term):
            self.exit(pid, signum)  # the wait status of a process killed by `signum`
        return True

    def exit(self, pid: int, status: int) -> None:
        del self.running[pid]
        self._exits.append((pid, status))

    def reaped(self) -> Iterator[tuple[int, int]]:
        exits, self._exits = self._exits, []
        yield from exits

    def expect_exits(self, pids: Sequence[int]) -> None:
        pass

    def walk_put_off(self) -> bool:
        return False

    def pids(self) -> list[int]:
        return sorted(self.running)
