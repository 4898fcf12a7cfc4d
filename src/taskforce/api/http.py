"""One HTTP/1.1 connection: requests read within limits and a deadline, replies written.

h11 parses and frames; this module adds what a service facing untrusted clients needs:
- a request (its headers and body) must arrive within the listener's `timeout`, and an
  idle kept-alive connection is closed after it too, so slow clients (slowloris) cannot
  hold the service; a reply must be taken within it as well;
- headers over 16 KiB get 431, bodies over 1 MiB get 413, malformed requests 400, each
  with a JSON error, and the connection is closed;
- on a TCP listener, a request for a host name it does not answer to gets 421
  (:mod:`taskforce.api.hosts`: DNS rebinding);
- /events turns the connection into an event stream (:mod:`taskforce.api.sse`), if the
  listener has a slot left for the client; an anonymous one ends after ANONYMOUS_IDLE
  seconds without an event.
Request contents are never logged above DEBUG.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING

import h11

from taskforce.api import sse
from taskforce.api.routes import Deferred, EventStream, Pieces, Reply, Request, Router, error
from taskforce.api.sse import EventFeed, StreamSlots
from taskforce.runtime.own import memory

if TYPE_CHECKING:
    from taskforce.api.hosts import HostCheck

log = logging.getLogger("taskforce")

MAX_HEADERS = 16 * 1024
MAX_BODY = 1024 * 1024
READ_SIZE = 64 * 1024
# After an error, a client's unread data is drained (so that it sees the reply) while it
# keeps coming: until it stops for LINGER seconds, LINGER_TOTAL at most.
LINGER = 1.0
LINGER_TOTAL = 10.0
# A body given in pieces (routes.Pieces) goes out in batches of this many bytes: the copies
# on its way (the join, the transport's buffer) stay this small, not the body's size.
BATCH = 256 * 1024
# After a body this large, the heap its making took is handed back to the system (see
# runtime/own/memory.py): 1 ms of CPU at 10,000 tasks, against 500 ms for the request;
# never after the small replies.
TRIM_AFTER = 1024 * 1024
COMMON_HEADERS = [("cache-control", "no-store"), ("x-content-type-options", "nosniff")]


class _RefusedError(Exception):
    """A request refused before it was read whole."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class HttpConnection:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        router: Router,
        feed: EventFeed,
        timeout: float,
        slots: StreamSlots,
        hosts: HostCheck | None = None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.router = router
        self.feed = feed
        self.timeout = timeout
        self.slots = slots  # the listener's event streams
        self.hosts = hosts  # None: any Host (a unix socket)
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADERS)
        self._received = False  # bytes of the current request have arrived
        self._head = False  # the current request is a HEAD: replies carry no body

    async def serve(self) -> None:
        """Answer requests until the client leaves, errs or idles; then close."""
        clean = False
        try:
            await self._exchanges()
            clean = True
        except (OSError, TimeoutError) as exc:
            log.debug("HTTP connection dropped: %s", exc or type(exc).__name__)
        except Exception:
            log.exception("HTTP connection failed")
        finally:
            await self._close(clean)

    async def _exchanges(self) -> None:
        while True:
            self._received = False
            self._head = False
            try:
                async with asyncio.timeout(self.timeout):
                    request = await self._read_request()
            except TimeoutError:
                if self._received or self.conn.their_state is not h11.IDLE:
                    await self._fail(408, "the request took too long to arrive")
                return
            except h11.RemoteProtocolError as exc:
                status = exc.error_status_hint
                message = "request headers too large" if status == 431 else f"bad request: {exc}"
                await self._fail(status, message)
                return
            except _RefusedError as exc:
                await self._fail(exc.status, exc.message)
                return
            if request is None:
                return
            outcome = self._misdirected(request) or self.router.handle(request)
            if isinstance(outcome, Deferred):
                outcome = await self.router.finish(outcome)
            if isinstance(outcome, EventStream):
                await self._stream(outcome, request)
                return
            log.debug("HTTP %s %s: %d", request.method, _path(request), outcome.status)
            await self._reply(outcome)
            if self.conn.our_state is not h11.DONE or self.conn.their_state is not h11.DONE:
                return
            self.conn.start_next_cycle()

    def _misdirected(self, request: Request) -> Reply | None:
        """421 for a Host this listener does not answer to (see taskforce.api.hosts)."""
        host = request.headers.get(b"host")
        if self.hosts is None:
            return None
        sockname = self.writer.get_extra_info("sockname")
        local = sockname[0] if isinstance(sockname, tuple) else None
        if self.hosts.allows(host, local):
            return None
        shown = (host or b"").decode("ascii", "replace")[:200]
        return error(
            421,
            f"this listener does not answer for the host {shown!r}: reach it by its address "
            "or by localhost, or add the name to the listener's 'hosts' setting",
        )

    async def _read_request(self) -> Request | None:
        """The next request, read whole; None if the client closed the connection first."""
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                if self.conn.they_are_waiting_for_100_continue:
                    await self._write(
                        self.conn.send(
                            h11.InformationalResponse(
                                status_code=100, headers=[], reason=b"Continue"
                            )
                        )
                    )
                self.conn.receive_data(await self._read())
            elif isinstance(event, h11.Request):
                head = event
                self._head = event.method == b"HEAD"
                # h11 bounds only headers still arriving; a read can bring more at once.
                if len(event.target) + sum(len(n) + len(v) for n, v in event.headers) > MAX_HEADERS:
                    raise _RefusedError(431, "request headers too large")
                length = _content_length(event)
                if length is not None and length > MAX_BODY:
                    raise _RefusedError(413, f"the request body is over {MAX_BODY} bytes")
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY:
                    raise _RefusedError(413, f"the request body is over {MAX_BODY} bytes")
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                headers = {name: value for name, value in head.headers}
                method = head.method.decode("ascii", "replace")
                target = head.target.decode("ascii", "replace")
                return Request(method, target, headers, bytes(body))
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None  # closed; or (PAUSED) a protocol switch we never agree to

    async def _read(self) -> bytes:
        try:
            data = await self.reader.read(READ_SIZE)
        except ConnectionError:
            data = b""
        self._received = self._received or bool(data)
        return data

    async def _write(self, data: bytes | None) -> None:
        if not data:
            return
        self.writer.write(data)
        async with asyncio.timeout(self.timeout):
            await self.writer.drain()

    async def _reply(self, reply: Reply, close: bool = False) -> None:
        body = reply.body
        size = body.size if isinstance(body, Pieces) else len(body)
        headers = [
            ("content-type", reply.content_type),
            ("content-length", str(size)),
            *COMMON_HEADERS,
            *reply.headers,
        ]
        if close:
            headers.append(("connection", "close"))
        data = self.conn.send(
            h11.Response(status_code=reply.status, headers=headers, reason=_reason(reply.status))
        )
        if isinstance(body, Pieces):
            await self._write(data)
            if not self._head:
                await self._write_pieces(body.parts)
            await self._write(self.conn.send(h11.EndOfMessage()))
            if size >= TRIM_AFTER:
                memory.give_back()
            return
        if not self._head:  # h11 (rightly) refuses a body in the reply to a HEAD
            data = (data or b"") + (self.conn.send(h11.Data(data=body)) or b"")
        await self._write((data or b"") + (self.conn.send(h11.EndOfMessage()) or b""))

    async def _write_pieces(self, parts: Iterable[bytes]) -> None:
        """Write a body's pieces a batch of about BATCH bytes at a time, each taken by
        the socket (or the transport's buffer, drained to its low-water mark) before
        the next is joined."""
        # Drained to a quarter of twice a batch, not to the default 16 KB: the socket
        # always has the next bytes while the next batch is joined.
        transport = self.writer.transport
        low, high = transport.get_write_buffer_limits()
        transport.set_write_buffer_limits(high=2 * BATCH)
        try:
            await self._write_batches(parts)
        finally:
            transport.set_write_buffer_limits(high, low)

    async def _write_batches(self, parts: Iterable[bytes]) -> None:
        batch: list[bytes] = []
        size = 0
        for part in parts:
            batch.append(part)
            size += len(part)
            if size >= BATCH:
                await self._write(self.conn.send(h11.Data(data=b"".join(batch))))
                batch.clear()
                size = 0
        if batch:
            await self._write(self.conn.send(h11.Data(data=b"".join(batch))))

    async def _fail(self, status: int, message: str) -> None:
        """Answer a request that cannot be served (if h11 still can), then close."""
        log.debug("HTTP request refused: %d %s", status, message)
        if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        await self._reply(error(status, message), close=True)
        await self._linger()

    async def _linger(self) -> None:
        # Closing with unread data makes the kernel send a reset, which can destroy the
        # reply before the client reads it: say we are done, and drop what still comes.
        # Not only the first MiB: a client sending a body over the limit sends all of it.
        if not self.writer.can_write_eof():
            return
        with contextlib.suppress(OSError, TimeoutError):
            self.writer.write_eof()
            async with asyncio.timeout(min(LINGER_TOTAL, self.timeout)):
                while True:
                    async with asyncio.timeout(min(LINGER, self.timeout)):
                        if not await self.reader.read(READ_SIZE):
                            return

    async def _stream(self, outcome: EventStream, request: Request) -> None:
        anonymous = self.slots.is_anonymous(request.headers.get(b"authorization"))
        if not self.slots.take(anonymous):
            await self._fail(503, "too many event streams are open; try again later")
            return
        try:
            headers = [
                ("content-type", "text/event-stream; charset=utf-8"),
                *COMMON_HEADERS,
                ("x-accel-buffering", "no"),  # proxies must not hold events back
            ]
            await self._write(
                self.conn.send(h11.Response(status_code=200, headers=headers, reason=b"OK"))
            )
            log.debug("HTTP event stream opened (%d open here)", self.slots.used)
            loop = asyncio.get_running_loop()
            idle = sse.ANONYMOUS_IDLE if anonymous else None
            try:
                async with asyncio.timeout(idle) as quiet:

                    async def send(payload: bytes) -> None:
                        await self._write(self.conn.send(h11.Data(data=payload)))
                        if idle is not None:
                            quiet.reschedule(loop.time() + idle)

                    await (outcome.events or self.feed.stream)(send, self.reader)
            except TimeoutError:
                if not quiet.expired():
                    raise  # a write that was not taken in time: not ours to end cleanly
                log.debug("HTTP event stream ended: nothing to send for %gs", idle)
            with contextlib.suppress(h11.LocalProtocolError):
                await self._write(self.conn.send(h11.EndOfMessage()))
        finally:
            self.slots.give_back(anonymous)

    async def _close(self, clean: bool) -> None:
        if not clean:
            self.writer.transport.abort()
            return
        self.writer.close()
        try:
            async with asyncio.timeout(self.timeout):
                await self.writer.wait_closed()
        except (OSError, TimeoutError):
            self.writer.transport.abort()


def _content_length(request: h11.Request) -> int | None:
    for name, value in request.headers:
        if name == b"content-length":
            return int(value)  # h11 has checked that it is a number
    return None


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def _path(request: Request) -> str:
    return request.target.partition("?")[0]
