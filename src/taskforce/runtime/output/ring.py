"""Recent task output: a bounded ring per task, and bounded queues for its followers.

Both hold chunks of whole lines as captured (wall time, instance, stream, bytes), never
lines one by one: a chunk costs the same whatever its number of lines, which matters
when a task floods its output; lines are split out only when someone asks for them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

RING_BYTES = 64 * 1024  # recent output kept per task
FOLLOW_BYTES = 256 * 1024  # output queued for one follower before the oldest is skipped

Chunk = tuple[float, int, str, bytes]  # wall time, instance, stream, whole lines


def as_lines(chunks: list[Chunk] | deque[Chunk], n: int) -> list[dict[str, Any]]:
    """The last `n` lines of `chunks` as JSON-ready dicts."""
    lines: list[dict[str, Any]] = []
    for when, slot, stream, data in reversed(chunks):
        if len(lines) >= n:
            break
        texts = data.split(b"\n")[-1 - (n - len(lines)) : -1]
        lines.extend(
            {"instance": slot, "stream": stream, "time": when, "text": t.decode(errors="replace")}
            for t in reversed(texts)
        )
    lines.reverse()
    return lines


class Follower:
    """One client following a task's output: a bounded queue of chunks."""

    def __init__(self) -> None:
        self.chunks: deque[Chunk] = deque()
        self.size = 0
        self.skipped = 0  # lines dropped because the client was not keeping up
        self.ready = asyncio.Event()

    def push(self, chunk: Chunk) -> None:
        self.chunks.append(chunk)
        self.size += len(chunk[3])
        while self.size > FOLLOW_BYTES and len(self.chunks) > 1:
            dropped = self.chunks.popleft()[3]
            self.size -= len(dropped)
            self.skipped += dropped.count(b"\n")
        self.ready.set()

    def take(self) -> tuple[int, list[dict[str, Any]]]:
        """Lines skipped, and the lines queued, since the last take."""
        skipped, chunks = self.skipped, list(self.chunks)
        self.chunks.clear()
        self.size = self.skipped = 0
        self.ready.clear()
        return skipped, as_lines(chunks, sum(c[3].count(b"\n") for c in chunks))


class Ring:
    """The recent output of one task (all its instances), in whole lines."""

    def __init__(self) -> None:
        self.chunks: deque[Chunk] = deque()
        self.size = 0
        self.followers: set[Follower] = set()

    def add(self, chunk: Chunk) -> None:
        for follower in self.followers:
            follower.push(chunk)
        when, slot, stream, data = chunk
        if len(data) > RING_BYTES:
            tail = data[-RING_BYTES:]
            chunk = (when, slot, stream, tail[tail.find(b"\n") + 1 :])
        self.chunks.append(chunk)
        self.size += len(chunk[3])
        while self.size - len(self.chunks[0][3]) >= RING_BYTES:
            self.size -= len(self.chunks.popleft()[3])
