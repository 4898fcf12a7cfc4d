"""GET /logs/TASK?follow=1: a task's captured output as server-sent events, as it comes.

The stream opens with `event: lines` holding the last `n` lines, then sends each new batch
of lines as another `event: lines` (data: a JSON list of {instance, stream, time, text}).
A client that does not keep up gets `event: skipped` (data: {"lines": N}) in place of what
was dropped for it: taskforce queues a bounded amount per client, so a slow reader can
neither hold a task up nor make taskforce grow. Nothing runs while the task is quiet.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from taskforce.api.sse import ClientWait
from taskforce.runtime.output.capture import Follower

Send = Callable[[bytes], Awaitable[None]]


class LogSource(Protocol):
    """What the stream needs of :class:`taskforce.api.status.Controller`."""

    def logs(self, task: str, n: int) -> dict[str, Any]: ...
    def follow_logs(self, task: str) -> Follower: ...
    def unfollow_logs(self, task: str, follower: Follower) -> None: ...


def event(name: str, data: object) -> bytes:
    # Compact JSON has no newline, so it fits on one `data:` line.
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class LogFollow:
    """One client following one task."""

    def __init__(self, source: LogSource, task: str, n: int) -> None:
        self.source = source
        self.task = task
        self.n = n

    async def run(self, send: Send, reader: asyncio.StreamReader) -> None:
        # Taken in the same step of the loop: no line is missed or sent twice between them.
        follower = self.source.follow_logs(self.task)
        recent = self.source.logs(self.task, self.n)["lines"]
        try:
            with ClientWait(reader) as client:
                await send(event("lines", recent))
                while await client.wait(follower.ready):
                    skipped, lines = follower.take()
                    if skipped:
                        await send(event("skipped", {"lines": skipped}))
                    if lines:
                        await send(event("lines", lines))
        finally:
            self.source.unfollow_logs(self.task, follower)
