"""The usage readings of the status views, taken off the event loop and shared.

At 10,000 tasks a reading of every process's usage takes 0.2-0.4 s (more on a busy
machine), mostly the kernel's making of the files: taken on the event loop, it would hold
up everything else the supervisor does meanwhile (a child that dies is restarted that much
later). So a reading runs in a worker thread while the loop goes on, and the requests
that arrive during it wait for it rather than reading again. Readings serve every request
for USAGE_MAX_AGE seconds after they began (a dashboard polling, several clients, a
scrape beside them pay for one), and are then dropped.

What to read (the processes, and where their cgroups' files are) is taken on the loop
before the thread starts; the thread only reads files. One reading at a time, in the
loop's default executor (asyncio.to_thread): its thread is made at the first reading and
then sleeps on the executor's queue with no timeout, so an idle taskforce makes no
wake-ups for this; asyncio.run() ends it with the loop.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from taskforce.runtime.own import memory
from taskforce.runtime.processes.usage import Reading

# Usage figures read this recently serve a request again rather than being read anew: they
# cost what the kernel takes to make four small files a process, 0.4 s of CPU for 10,000
# (bench/usage_cost.py).
USAGE_MAX_AGE = 1.0
# Readings of this many processes or more leave megabytes of heap when dropped: it is
# handed back then (runtime/own/memory.py), not after the readings of a few.
TRIM_AFTER = 1000

Key = TypeVar("Key")
Target = TypeVar("Target")


class Readings(Generic[Key, Target]):
    """The latest readings by key, read in a worker thread and shared by the requests.

    `targets` says, on the loop, what the thread is to read for each key; `read` reads
    them at once, in the thread (it must touch nothing the loop changes)."""

    def __init__(
        self,
        targets: Callable[[list[Key]], list[Target]],
        read: Callable[[list[Target]], list[Reading]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._targets = targets
        self._read = read
        self._clock = clock
        self._kept: dict[Key, Reading] = {}
        self._read_at = -math.inf  # when the oldest of those kept was read
        self._reading: asyncio.Task[dict[Key, Reading]] | None = None  # under way
        self._expiry: asyncio.TimerHandle | None = None  # drops those kept when too old

    async def of(self, keys: Sequence[Key]) -> dict[Key, Reading]:
        """A reading of each of `keys` (and maybe of others): taken now, or at most
        USAGE_MAX_AGE seconds before, or by the reading under way when this was asked."""
        while True:
            fresh = self._clock() - self._read_at <= USAGE_MAX_AGE
            kept = self._kept if fresh else {}
            missing = [key for key in keys if key not in kept]
            if not missing:
                return kept
            reading = self._reading
            if reading is None:
                read = self._take(missing, self._targets(missing), fresh, self._clock())
                reading = self._reading = asyncio.create_task(read)
            # Shielded: a request that goes away leaves the reading to the others.
            found = await asyncio.shield(reading)
            # What the reading found serves this request however long it took (never read
            # again for being old by then); a reading for others may lack some keys.
            if all(key in found for key in keys):
                return found

    async def _take(
        self, missing: list[Key], targets: list[Target], fresh: bool, started: float
    ) -> dict[Key, Reading]:
        """Read the targets of `missing` in the worker thread: in addition to those kept
        (`fresh`), which then still date the whole, or as a new whole dated `started`."""
        try:
            found = await asyncio.to_thread(self._read, targets)
        finally:
            self._reading = None
        kept = self._kept if fresh else {}
        kept.update(zip(missing, found, strict=True))
        if not fresh:
            self._kept, self._read_at = kept, started
            self._expire_after(started)
        return kept

    def _expire_after(self, started: float) -> None:
        """Drop the readings kept once they are too old to serve (by the loop's clock,
        which is time.monotonic as the default clock): 10,000 processes' figures are 3
        MB, held for good otherwise. One wake-up a reading, none while idle."""
        if self._expiry is not None:
            self._expiry.cancel()
        loop = asyncio.get_running_loop()
        age = self._clock() - started
        self._expiry = loop.call_later(max(0.0, USAGE_MAX_AGE - age), self._expire, started)

    def _expire(self, started: float) -> None:
        self._expiry = None
        if self._read_at == started:  # no newer whole reading meanwhile
            dropped = len(self._kept)
            self._kept, self._read_at = {}, -math.inf
            if dropped >= TRIM_AFTER:  # their heap back to the system: 1 ms at 10,000
                memory.give_back()
