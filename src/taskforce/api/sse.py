"""The /events stream: the task table as server-sent events, sent again on every change
(and /events/fleet, every host of the fleet, the same way).

A client gets `event: tasks` with the JSON of Controller.table() at once, then again after
changes, at most one every `interval` seconds (changes in between are folded into one),
and only when the JSON differs from what it last got. Nothing runs while nothing changes:
each stream waits on the controller's change event, and a timer exists only to space out
two sends. The JSON is made once per change, however many clients there are.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol

from taskforce.api.auth import Access, authorized
from taskforce.runtime.manage import ControlError

INTERVAL = 0.1  # seconds, at least, between two events to one client
# Event streams of every kind (/events, /events/fleet, /logs/TASK?follow=1), per listener:
MAX_STREAMS = 32
# of which anonymous clients of a TCP listener may not take these: they are kept for
# clients with the listener's token.
RESERVED_STREAMS = 8
# Seconds an anonymous stream may go without an event before it is ended: a client that
# vanished without a word (nothing was written to find out) frees its slot. A browser's
# EventSource reconnects by itself.
ANONYMOUS_IDLE = 300.0


class Subscribable(Protocol):
    """What tells a stream of its changes: an event set at each, until unsubscribed."""

    def subscribe(self) -> asyncio.Event: ...
    def unsubscribe(self, event: asyncio.Event) -> None: ...


class Changes(Subscribable, Protocol):
    """What the stream needs of :class:`taskforce.api.status.Controller`."""

    changes: int

    def table(self) -> bytes: ...


class EventFeed:
    """The event streams of one service: admission, the shared payload, the send loop."""

    def __init__(self, controller: Changes, interval: float = INTERVAL) -> None:
        self.controller = controller
        self.interval = interval
        self._cached: tuple[int, bytes] | None = None

    def payload(self) -> bytes | None:
        """The current event, or None when there are no tasks to show (not running)."""
        changes = self.controller.changes
        if self._cached is not None and self._cached[0] == changes:
            return self._cached[1]
        try:
            # Compact JSON has no newline, so it fits on one `data:` line.
            data = self.controller.table()
        except ControlError:
            return None
        event = b"event: tasks\ndata: " + data + b"\n\n"
        self._cached = (changes, event)
        return event

    async def stream(
        self, send: Callable[[bytes], Awaitable[None]], reader: asyncio.StreamReader
    ) -> None:
        """Send events until the client goes away or the state cannot be shown any more."""
        await serve_events(self.payload, self.controller, send, reader, self.interval)


class StreamSlots:
    """The event streams one listener may hold: `size` in all, of which anonymous clients
    may not take the last `reserved`. A client is anonymous on a TCP listener (`access`)
    unless it sends the listener's token; the unix socket (`access` None), which only its
    owner reaches, has no anonymous clients."""

    def __init__(
        self, access: Access | None, size: int = MAX_STREAMS, reserved: int = RESERVED_STREAMS
    ) -> None:
        self.access = access
        self.size = size
        self.reserved = reserved
        self.used = 0
        self.anonymous = 0

    def is_anonymous(self, authorization: bytes | None) -> bool:
        access = self.access
        return access is not None and (
            access.token is None or not authorized(access, authorization)
        )

    def take(self, anonymous: bool) -> bool:
        """Take a slot (False when none is left for this client); give it back with
        give_back()."""
        if self.used >= self.size or (anonymous and self.anonymous >= self.size - self.reserved):
            return False
        self.used += 1
        self.anonymous += anonymous
        return True

    def give_back(self, anonymous: bool) -> None:
        self.used -= 1
        self.anonymous -= anonymous


class Fleet(Subscribable, Protocol):
    """What /status/fleet and /events/fleet need of :class:`taskforce.fleet.view.FleetView`."""

    changes: int

    def document(self) -> dict[str, Any]: ...
    async def snapshot(self) -> dict[str, Any]: ...


class FleetFeed:
    """/events/fleet: `event: fleet` with every host's status, sent again on every change,
    as /events sends the task table (and with the same spacing)."""

    def __init__(self, fleet: Fleet, interval: float = INTERVAL) -> None:
        self.fleet = fleet
        self.interval = interval
        self._cached: tuple[int, bytes] | None = None

    def payload(self) -> bytes:
        changes = self.fleet.changes
        if self._cached is None or self._cached[0] != changes:
            data = json.dumps(self.fleet.document(), separators=(",", ":")).encode()
            self._cached = (changes, b"event: fleet\ndata: " + data + b"\n\n")
        return self._cached[1]

    async def stream(
        self, send: Callable[[bytes], Awaitable[None]], reader: asyncio.StreamReader
    ) -> None:
        await serve_events(self.payload, self.fleet, send, reader, self.interval)


async def serve_events(
    payload: Callable[[], bytes | None],
    source: Subscribable,
    send: Callable[[bytes], Awaitable[None]],
    reader: asyncio.StreamReader,
    interval: float,
) -> None:
    """Send `payload()` now and after each change `source` tells of (at most one every
    `interval` seconds, only when it differs), until the client goes away or the payload
    is None."""
    loop = asyncio.get_running_loop()
    with _subscribed(source) as changed, ClientWait(reader) as client:
        last: bytes | None = None
        sent_at = -interval
        while True:
            current = payload()
            if current is None:
                return
            if current is not last and current != last:
                await send(current)
                last, sent_at = current, loop.time()
            if not await client.wait(changed):
                return
            pause = sent_at + interval - loop.time()
            if pause > 0:
                await asyncio.sleep(pause)
            changed.clear()  # after the pause: what changed during it goes in this event


@contextlib.contextmanager
def _subscribed(source: Subscribable) -> Iterator[asyncio.Event]:
    changed = source.subscribe()
    try:
        yield changed
    finally:
        source.unsubscribe(changed)


class ClientWait:
    """How an event stream waits for its next event: until something is to be sent, or
    the client goes away. Used as a context manager, which ends the waits left over."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._closed = asyncio.ensure_future(_until_closed(reader))
        self._waiting: asyncio.Future[Any] | None = None

    async def wait(self, ready: asyncio.Event) -> bool:
        """True once `ready` is set; False if the client went away first."""
        self._waiting = asyncio.ensure_future(ready.wait())
        await asyncio.wait((self._waiting, self._closed), return_when=asyncio.FIRST_COMPLETED)
        return not self._closed.done()

    def __enter__(self) -> ClientWait:
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed.cancel()
        if self._waiting is not None:
            self._waiting.cancel()


async def _until_closed(reader: asyncio.StreamReader) -> None:
    # A client has nothing to say on an event stream: what it sends is dropped.
    with contextlib.suppress(OSError):
        while await reader.read(4096):
            pass
