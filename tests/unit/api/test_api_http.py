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
from taskforce.api import server
from taskforce.api.http import MAX_BODY, MAX_HEADERS
from taskforce.api.server import ApiService
from taskforce.config.model import HttpListener
from taskforce.runtime.control import Controller

DEADLINE = 10.0  # seconds any client waits on a socket before the test fails


class ChangingController(FakeController, Subscribers):
    """A fake whose task table the test changes, telling subscribers as the real one does."""

    def __init__(self) -> None:
        FakeController.__init__(self)
        Subscribers.__init__(self)
        self.table: dict[str, Any] = {"web": {"running": 1}}

    def tasks(self) -> dict[str, Any]:
        return dict(self.table)


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


def run(tmp_path: Path, scenario: Scenario, **options: Any) -> None:
    """Serve a unix socket and a loopback port, run `scenario`, close everything."""
    directory = tmp_path / "run"
    directory.mkdir(mode=0o700, exist_ok=True)

    async def main() -> None:
        fake = ChangingController()
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
        request = b"GET /status/version HTTP/1.1\r\nHost: x\r\n\r\n"
        last = b"GET /status/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
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
        huge = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * MAX_HEADERS * 2 + b"\r\n\r\n"
        reply = await asyncio.to_thread(raw, service.addresses[0], huge)
        assert status_of(reply) == (431, {"error": "request headers too large"})

    run(tmp_path, scenario)


def test_oversized_bodies_get_413(tmp_path: Path) -> None:
    async def scenario(service: ApiService, fake: ChangingController) -> None:
        declared = b"POST /manage/plan HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
        reply = await asyncio.to_thread(raw, service.addresses[0], declared % (MAX_BODY + 1))
        assert status_of(reply)[0] == 413
        chunk = b"a" * 65536
        chunked = b"POST /manage/plan HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        chunked += b"%x\r\n%s\r\n" % (len(chunk), chunk) * (MAX_BODY // len(chunk) + 1)
        reply = await asyncio.to_thread(raw, service.addresses[1], chunked)
        assert status_of(reply) == (413, {"error": f"the request body is over {MAX_BODY} bytes"})
        assert fake.calls == []

    run(tmp_path, scenario)


def test_slow_and_idle_clients_are_dropped(tmp_path: Path) -> None:
    async def scenario(service: ApiService, fake: ChangingController) -> None:
        def slowloris(address: str) -> bytes:
            sock = connect(address)
            sock.sendall(b"GET /status/tasks HTTP/1.1\r\nHost: x\r\n")  # and never the rest
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
            reply = await asyncio.to_thread(raw, address, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
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
        self.sock.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
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
                fake.table = {"web": {"running": count}}
                fake.changed()
            fake.changed()  # nothing new: no event
            assert await asyncio.to_thread(events.next) == {"web": {"running": 9}}
            fake.changed()  # the same again: no event for it
            await asyncio.sleep(0)
            fake.table = {"db": {"running": 0}}
            fake.changed()
            assert await asyncio.to_thread(events.next) == {"db": {"running": 0}}
            assert service.feed.clients == 1
        finally:
            events.close()
        await until(lambda: service.feed.clients == 0, "the stream to end")
        assert fake.subscribers == set()

    run(tmp_path, scenario)


def test_event_streams_are_bounded(tmp_path: Path) -> None:
    async def scenario(service: ApiService, fake: ChangingController) -> None:
        service.feed.max_clients = 1
        events = await asyncio.to_thread(Events, service.addresses[1])
        try:
            request = b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n"
            reply = await asyncio.to_thread(raw, service.addresses[0], request)
            status, body = status_of(reply)
            assert status == 503 and "too many event streams" in body["error"]
        finally:
            events.close()

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
        assert service.feed.clients == 0 and service.addresses == []

    asyncio.run(main())
