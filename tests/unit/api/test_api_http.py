"""The service over real sockets (unix and loopback TCP) with a fake controller: HTTP
framing, limits, timeouts, connection bounds and the event stream."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import pytest

from support.fakes import FakeController, Subscribers
from support.wait import until
from taskforce.api import http as api_http
from taskforce.api import server, sse
from taskforce.api.http import MAX_BODY, MAX_HEADERS
from taskforce.api.query import EVERYTHING, TaskQuery
from taskforce.api.server import ApiService
from taskforce.api.status import Controller
from taskforce.config.model import HttpListener
from taskforce.runtime.own import memory

DEADLINE = 10.0  # seconds any client waits on a socket before the test fails


class ChangingController(FakeController, Subscribers):
    """A fake whose task table the test changes, telling subscribers as the real one does."""

    def __init__(self) -> None:
        FakeController.__init__(self)
        Subscribers.__init__(self)
        self.rows: dict[str, Any] = {"web": {"running": 1}}

    def tasks(self, *, usage: bool = False, query: TaskQuery = EVERYTHING) -> dict[str, Any]:
        return dict(self.rows)


# --- clients (blocking: run them with asyncio.to_thread) --------------------------------


def connect(address: str) -> socket.socket:
    if address.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(DEADLINE)
        sock.connect(address[len("unix:") :])
        return sock
    url = urlsplit(address)
    assert url.hostname is not None and url.port is not None
    return socket.create_connection((url.hostname, url.port), timeout=DEADLINE)


class Client(http.client.HTTPConnection):
    """http.client over any address the service reports."""

    def __init__(self, address: str) -> None:
        super().__init__("localhost", timeout=DEADLINE)
        self.address = address

    def connect(self) -> None:
        self.sock = connect(self.address)


def fetch(address: str, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    client = Client(address)
    try:
        client.request(method, path, body=body)
        response = client.getresponse()
        return response.status, json.loads(response.read())
    finally:
        client.close()


def until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    return data


def raw(address: str, data: bytes) -> bytes:
    sock = connect(address)
    # The server may answer and close before it has read everything.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(data)
    return until_closed(sock)


def status_of(reply: bytes) -> tuple[int, Any]:
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body) if body else None


# --- running the service ----------------------------------------------------------------

Scenario = Callable[[ApiService, ChangingController], Awaitable[None]]


def run(
    tmp_path: Path,
    scenario: Scenario,
    controller: type[ChangingController] = ChangingController,
    **options: Any,
) -> None:
    """Serve a unix socket and a loopback port, run `scenario`, close everything."""
    directory = tmp_path / "run"
    directory.mkdir(mode=0o700, exist_ok=True)

    async def main() -> None:
        fake = controller()
        service = ApiService(cast(Controller, fake))
        try:
            for listen in (str(directory / "api.sock"), "127.0.0.1:0"):
                await service.open(HttpListener(listen=listen, allow_control=False, **options))
            await scenario(service, fake)
        finally:
            await service.close()
        assert not (directory / "api.sock").exists()

    asyncio.run(main())


def test_requests_on_both_listeners(tmp_path: Path) -> None:
    async def scenario(service: ApiService, fake: ChangingController) -> None:
        unix_address, tcp_address = service.addresses
        assert unix_address == f"unix:{tmp_path}/run/api.sock"
        assert tcp_address.startswith("http://127.0.0.1:")
        for address in service.addresses:
            assert await asyncio.to_thread(fetch, address, "GET", "/status/tasks") == (
                200,
                {"web": {"running": 1}},
            )
            assert (await asyncio.to_thread(fetch, address, "GET", "/manage/reload"))[0] == 403

    run(tmp_path, scenario)


def test_keep_alive_and_pipelining(tmp_path: Path) -> None:
    async def scenario(service: ApiService, fake: ChangingController) -> None:
        request = b"GET /status/version HTTP/1.1\r\nHost: localhost\r\n\r\n"
        last = b"GET /status/version HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        reply = await asyncio.to_thread(raw, service.addresses[0], request * 2 + last)
        assert reply.count(b"HTTP/1.1 200 OK\r\n") == 3
        assert reply.count(b'{"taskforce":"test"}') == 3

    run(tmp_path, scenario)


def test_malformed_requests_get_400(tmp_path: Path) -> None:
    async def scenario(service: ApiService, fake: ChangingController) -> None:
        for junk in (b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nno colon\r\n\r\n", b"\x16\x03\x01"):
            reply = await asyncio.to_thread(raw, service.addresses[1], junk + b"\r\n\r\n")
            status, body = status_of(reply)
            assert status == 400 and body["error"].startswith("bad request")

    run(tmp_path, scenario)


def test_oversized_headers_get_431(tmp_path: Path) -> None:
    async def scenario(service: ApiService, fake: ChangingController) -> None:
        huge = (
            b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * MAX_HEADERS * 2 + b"\r\n\r\n"
        )
        reply = await asyncio.to_thread(raw, service.addresses[0], huge)
        assert status_of(reply) == (431, {"error": "request headers too large"})

    run(tmp_path, scenario)


def test_oversized_bodies_get_413(tmp_path: Path) -> None:
    async def scenario(service: ApiService, fake: ChangingController) -> None:
        declared = b"POST /manage/plan HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n"
        reply = await asyncio.to_thread(raw, service.addresses[0], declared % (MAX_BODY + 1))
        assert status_of(reply)[0] == 413
        chunk = b"a" * 65536
        chunked = (
            b"POST /manage/plan HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunked += b"%x\r\n%s\r\n" % (len(chunk), chunk) * (MAX_BODY // len(chunk) + 1)
        reply = await asyncio.to_thread(raw, service.addresses[1], chunked)
        assert status_of(reply) == (413, {"error": f"the request body is over {MAX_BODY} bytes"})
        assert fake.calls == []

    run(tmp_path, scenario)


def test_a_chunk_without_its_line_ending_is_refused(tmp_path: Path) -> None:
    """CVE-2025-43859: h11 before 0.16 took any two bytes after a chunk for its CRLF, so a
    proxy and taskforce could disagree on where a request ends (request smuggling)."""

    async def scenario(service: ApiService, fake: ChangingController) -> None:
        smuggled = (
            b"POST /status/tasks HTTP/1.1\r\nHost: localhost\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"
        )
        for address in service.addresses:
            status, body = status_of(await asyncio.to_thread(raw, address, smuggled))
            assert status == 400 and body["error"].startswith("bad request"), body

    run(tmp_path, scenario)


def test_slow_and_idle_clients_are_dropped(tmp_path: Path) -> None:
    async def scenario(service: ApiService, fake: ChangingController) -> None:
        def slowloris(address: str) -> bytes:
            sock = connect(address)
            sock.sendall(b"GET /status/tasks HTTP/1.1\r\nHost: localhost\r\n")  # and never the rest
            return until_closed(sock)

        def idle(address: str) -> bytes:
            return until_closed(connect(address))

        for address in service.addresses:
            reply = await asyncio.to_thread(slowloris, address)
            assert status_of(reply) == (408, {"error": "the request took too long to arrive"})
            assert await asyncio.to_thread(idle, address) == b""

    run(tmp_path, scenario, timeout=0.3)


def test_connections_beyond_the_limit_get_503(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "MAX_CONNECTIONS", 2)

    async def scenario(service: ApiService, fake: ChangingController) -> None:
        address = service.addresses[0]
        held = [Client(address) for _ in range(2)]
        try:
            for client in held:  # a full exchange: the connection is surely counted
                await asyncio.to_thread(client.request, "GET", "/status/version")
                response = await asyncio.to_thread(client.getresponse)
                assert response.status == 200
                response.read()
            reply = await asyncio.to_thread(
                raw, address, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
            )
            assert status_of(reply) == (503, {"error": "too many connections; try again later"})
        finally:
            for client in held:
                client.close()

    run(tmp_path, scenario)


# --- the event stream -------------------------------------------------------------------


class Events:
    """A blocking reader of one /events stream."""

    def __init__(self, address: str) -> None:
        self.sock = connect(address)
        self.sock.sendall(b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        self.buffer = b""
        head = self._until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n"), head
        assert b"content-type: text/event-stream" in head

    def _until(self, end: bytes) -> bytes:
        while end not in self.buffer:
            chunk = self.sock.recv(65536)
            assert chunk, "the stream ended"
            self.buffer += chunk
        found, _, self.buffer = self.buffer.partition(end)
        return found

    def next(self) -> Any:
        """The data of the next event (chunked framing is skipped over)."""
        self._until(b"event: tasks\ndata: ")
        return json.loads(self._until(b"\n\n"))

    def close(self) -> None:
        self.sock.close()


def test_events_are_sent_on_connect_and_on_changes_coalesced(tmp_path: Path) -> None:
    async def scenario(service: ApiService, fake: ChangingController) -> None:
        events = await asyncio.to_thread(Events, service.addresses[0])
        try:
            assert await asyncio.to_thread(events.next) == {"web": {"running": 1}}
            for count in range(10):  # in one go: folded into a single event
                fake.rows = {"web": {"running": count}}
                fake.changed()
            fake.changed()  # nothing new: no event
            assert await asyncio.to_thread(events.next) == {"web": {"running": 9}}
            fake.changed()  # the same again: no event for it
            await asyncio.sleep(0)
            fake.rows = {"db": {"running": 0}}
            fake.changed()
            assert await asyncio.to_thread(events.next) == {"db": {"running": 0}}
            assert service.streams == 1
        finally:
            events.close()
        await until(lambda: service.streams == 0, "the stream to end")
        assert fake.subscribers == set()

    run(tmp_path, scenario)


def test_event_streams_are_bounded(tmp_path: Path) -> None:
    async def scenario(service: ApiService, fake: ChangingController) -> None:
        unix_slots = service._listening[0].slots
        unix_slots.size = 1
        events = await asyncio.to_thread(Events, service.addresses[0])
        other: Events | None = None
        try:
            request = b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n"
            reply = await asyncio.to_thread(raw, service.addresses[0], request)
            status, body = status_of(reply)
            assert status == 503 and "too many event streams" in body["error"]
            # Each listener has slots of its own.
            other = await asyncio.to_thread(Events, service.addresses[1])
        finally:
            events.close()
            if other is not None:
                other.close()

    run(tmp_path, scenario)


def stream_status(address: str, headers: str = "") -> tuple[int, socket.socket]:
    """Open /events; the reply's status and the connection (a 200 stays open)."""
    sock = connect(address)
    sock.sendall(f"GET /events HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n".encode())
    head = b""
    while b"\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, "closed before a reply"
        head += chunk
    return int(head.split(b" ")[1]), sock


def test_anonymous_streams_leave_slots_to_the_unix_socket_and_to_tokens(tmp_path: Path) -> None:
    """Anonymous clients of a TCP listener fill only what anonymous clients may take: the
    owner's unix socket keeps its own streams, and a client with the token gets one of
    the slots kept for it (it was: 32 anonymous streams, and `logs -f` got 503)."""
    directory = tmp_path / "run"
    directory.mkdir(mode=0o700)

    async def main() -> None:
        fake = ChangingController()
        service = ApiService(cast(Controller, fake))
        held: list[socket.socket] = []
        try:
            await service.open(HttpListener(listen=str(directory / "api.sock")))
            await service.open(HttpListener(listen="127.0.0.1:0"))
            await service.open(HttpListener(listen="127.0.0.1:0", token="s3cret"))
            unix_address, open_tcp, token_tcp = service.addresses
            for address in (open_tcp, token_tcp):
                while True:  # anonymous streams until they are refused
                    status, sock = await asyncio.to_thread(stream_status, address)
                    held.append(sock)
                    if status != 200:
                        assert status == 503
                        break
                    assert len(held) <= 2 * sse.MAX_STREAMS, "anonymous streams are unbounded"
            assert service.streams == 2 * (sse.MAX_STREAMS - sse.RESERVED_STREAMS)
            for _ in range(sse.RESERVED_STREAMS):
                status, sock = await asyncio.to_thread(
                    stream_status, token_tcp, "Authorization: Bearer s3cret\r\n"
                )
                held.append(sock)
                assert status == 200
            for _ in range(sse.MAX_STREAMS):
                status, sock = await asyncio.to_thread(stream_status, unix_address)
                held.append(sock)
                assert status == 200
        finally:
            for sock in held:
                sock.close()
            await service.close()

    asyncio.run(main())


def test_idle_anonymous_streams_are_ended(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An anonymous stream with nothing to send for IDLE seconds is ended (a browser's
    EventSource reconnects by itself); one with events, or from the unix socket, stays."""
    monkeypatch.setattr(sse, "ANONYMOUS_IDLE", 0.5)

    async def scenario(service: ApiService, fake: ChangingController) -> None:
        unix_address, tcp_address = service.addresses
        quiet = await asyncio.to_thread(Events, tcp_address)
        owner = await asyncio.to_thread(Events, unix_address)
        try:
            await asyncio.to_thread(quiet.next)
            await asyncio.to_thread(owner.next)
            # Ended cleanly: the last chunk of the chunked body, then the close.
            assert (await asyncio.to_thread(until_closed, quiet.sock)).endswith(b"0\r\n\r\n")
            await until(lambda: service.streams == 1, "the idle stream to end")
            fake.rows = {"web": {"running": 2}}
            fake.changed()
            assert await asyncio.to_thread(owner.next) == {"web": {"running": 2}}
        finally:
            quiet.close()
            owner.close()

    run(tmp_path, scenario)


def test_closing_the_service_ends_streams(tmp_path: Path) -> None:
    directory = tmp_path / "run"
    directory.mkdir(mode=0o700)

    async def main() -> None:
        fake = ChangingController()
        service = ApiService(cast(Controller, fake))
        await service.open(HttpListener(listen=str(directory / "api.sock")))
        events = await asyncio.to_thread(Events, service.addresses[0])
        await asyncio.to_thread(events.next)
        await service.close()
        assert await asyncio.to_thread(until_closed, events.sock) == b""
        assert service.streams == 0 and service.addresses == []

    asyncio.run(main())


class LargeTable(ChangingController):
    """A table of many pieces, larger than a write batch and than TRIM_AFTER."""

    PIECES = [b"{", *(b'"task-%05d":{"running":1},' % i for i in range(60_000)), b'"z":{}}']

    async def table_with_usage(self, query: TaskQuery = EVERYTHING) -> list[bytes]:
        return list(self.PIECES)


def test_a_body_in_pieces_is_written_whole_in_batches_then_the_heap_trimmed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trims: list[int] = []
    monkeypatch.setattr(memory, "give_back", lambda: trims.append(1))
    body = b"".join(LargeTable.PIECES) + b"\n"
    assert len(body) > max(api_http.BATCH, api_http.TRIM_AFTER)

    async def scenario(service: ApiService, fake: ChangingController) -> None:
        ask = b"GET /status/tasks HTTP/1.1\r\nHost: localhost\r\n\r\n"
        last = b"GET /status/version HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        for address in service.addresses:
            trims.clear()
            reply = await asyncio.to_thread(raw, address, ask * 2 + last)
            length = b"content-length: %d\r\n" % len(body)
            got, _, rest = reply.partition(b"\r\n\r\n")
            assert got.startswith(b"HTTP/1.1 200 OK\r\n") and length in got
            assert rest[: len(body)] == body
            again, _, rest = rest[len(body) :].partition(b"\r\n\r\n")
            assert length in again and rest[: len(body)] == body
            rest = rest[len(body) :]
            assert rest.startswith(b"HTTP/1.1 200 OK\r\n") and rest.endswith(
                b'{"taskforce":"test"}\n'
            )
            assert len(trims) == 2  # after each large reply, not after the small one

    run(tmp_path, scenario, LargeTable)
