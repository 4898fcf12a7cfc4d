"""The service: every listener started, served and stopped together.

The command line goes through :func:`taskforce.api.run.serve_with_api`; a library user who
runs the legion otherwise calls :func:`start_api` and, at the end, ``close()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from taskforce import lean_asyncio
from taskforce.api.http import HttpConnection
from taskforce.api.listen import ApiConfigError, Endpoint, prepare
from taskforce.api.paths import INHERITED_ENV
from taskforce.api.routes import Router
from taskforce.api.sse import EventFeed, Fleet
from taskforce.api.unix import UnixSocket, close_inherited
from taskforce.config.model import HttpListener
from taskforce.runtime.control import Controller
from taskforce.runtime.legion import Legion

if TYPE_CHECKING:
    import ssl

log = logging.getLogger("taskforce")

MAX_CONNECTIONS = 64  # per listener
HAND_OVER_GRACE = 1.0  # seconds the requests under way get to finish before a re-exec
_TURNS_TO_START = 10
_BUSY_BODY = b'{"error":"too many connections; try again later"}\n'
# Sent, unread, to a client over the connection limit: nothing is spent parsing its request.
BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


# A client reaches a listener on every address through the loopback one.
_WILDCARD_TO_LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1"}


@dataclass(slots=True)
class _Listening:
    endpoint: Endpoint
    router: Router
    unix: UnixSocket | None = None
    server: asyncio.Server | None = None
    connections: set[asyncio.Task[None]] = field(default_factory=set)


class ApiService:
    """The running listeners; `addresses` says where they are, `close()` stops them all."""

    def __init__(self, controller: Controller, fleet: Fleet | None = None) -> None:
        self.controller = controller
        self.fleet = fleet
        self.feed = EventFeed(controller)
        self._listening: list[_Listening] = []
        self._quiet: _QuietAcceptErrors | None = None

    @property
    def addresses(self) -> list[str]:
        """`unix:PATH`, `http://HOST:PORT` or `https://HOST:PORT`, one per bound socket."""
        found = []
        for listening in self._listening:
            if listening.unix is not None:
                found.append(f"unix:{listening.unix.path}")
                continue
            scheme = "https" if listening.endpoint.tls else "http"
            sockets = listening.server.sockets if listening.server is not None else ()
            for sock in sockets:
                host, port = sock.getsockname()[:2]
                found.append(f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}")
        return found

    def client_servers(self) -> list[str]:
        """Where a client command can reach this service (as `--server` takes it), best
        first: listeners that allow control before the others, unix sockets before TCP."""
        ranked = []
        for listening in self._listening:
            control = not listening.endpoint.access.allow_control
            if listening.unix is not None:
                ranked.append((control, 0, listening.unix.path))
                continue
            scheme = "https" if listening.endpoint.tls else "http"
            sockets = listening.server.sockets if listening.server is not None else ()
            for sock in sockets:
                host, port = sock.getsockname()[:2]
                host = _WILDCARD_TO_LOOPBACK.get(host, host)
                ranked.append(
                    (control, 1, f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}")
                )
        return [server for *_, server in sorted(ranked, key=lambda r: r[:2])]

    async def open(self, listener: HttpListener) -> None:
        if self._quiet is None:
            self._quiet = _QuietAcceptErrors(asyncio.get_running_loop())
        endpoint = prepare(listener)
        tls = _tls_context(endpoint.listener.certfile) if endpoint.tls else None
        handshake = endpoint.timeout if tls else None
        origin = f"unix:{endpoint.path}" if endpoint.path is not None else listener.listen
        router = Router(self.controller, endpoint.access, self.fleet, origin)
        listening = _Listening(endpoint, router)

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            # Only close() cancels a connection; asyncio 3.11 would log a cancelled one as
            # an error, so it ends here, quietly.
            with contextlib.suppress(asyncio.CancelledError):
                await self._connection(listening, reader, writer)

        if endpoint.path is not None:
            unix = listening.unix = UnixSocket(endpoint.path)
            try:
                listening.server = await asyncio.start_unix_server(
                    on_connect, sock=unix.sock, ssl=tls, ssl_handshake_timeout=handshake
                )
            except BaseException:
                unix.sock.close()
                unix.remove()
                raise
        else:
            hosts = await _resolve(endpoint)
            try:
                listening.server = await asyncio.start_server(
                    on_connect,
                    hosts,
                    endpoint.port,
                    reuse_address=True,
                    ssl=tls,
                    ssl_handshake_timeout=handshake,
                )
            except OSError as exc:
                what = listener.listen
                raise ApiConfigError(f"cannot listen on {what}: {exc.strerror}") from None
        self._listening.append(listening)

    async def _connection(
        self,
        listening: _Listening,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        if len(listening.connections) >= MAX_CONNECTIONS:
            with contextlib.suppress(OSError):
                writer.write(BUSY)
                writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        listening.connections.add(task)
        try:
            timeout = listening.endpoint.timeout
            await HttpConnection(reader, writer, listening.router, self.feed, timeout).serve()
        finally:
            listening.connections.discard(task)

    async def close(self, hand_over: bool = False) -> None:
        """Stop listening, end every connection, remove the unix sockets; or, with
        `hand_over` (taskforce is about to re-execute itself), leave the unix sockets
        listening for the next image, named in the environment it inherits."""
        listening, self._listening = self._listening, []
        if hand_over:
            kept = {each.unix.path: each.unix.hand_over() for each in listening if each.unix}
            os.environ[INHERITED_ENV] = json.dumps(kept)
        servers = [each.server for each in listening if each.server is not None]
        for server in servers:
            server.close()
        if hand_over:
            # A connection accepted just now gets its task a few turns of the loop later
            # (transport, then protocol, then task): let them all start, to be answered.
            for _ in range(_TURNS_TO_START):
                await asyncio.sleep(0)
        tasks = [task for each in listening for task in each.connections]
        if hand_over and tasks:
            # Requests under way are answered (the next image answers the ones after);
            # only what outlasts the grace, an event stream say, is cut.
            await asyncio.wait(tasks, timeout=HAND_OVER_GRACE)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for server in servers:
            await server.wait_closed()
        for each in listening:
            if each.unix is not None and not hand_over:
                each.unix.remove()
        if self._quiet is not None:
            self._quiet.restore()
            self._quiet = None


class _QuietAcceptErrors:
    """Out of file descriptors (or memory), asyncio's accept loop reports every failed
    accept() (up to a backlog's worth each second) as an error with a traceback. Say it
    once a minute, in one line, with what to do; leave every other report as it was."""

    EVERY = 60.0

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._previous = loop.get_exception_handler()
        self._said_at: float | None = None
        self._missed = 0
        loop.set_exception_handler(self._handle)

    def restore(self) -> None:
        if self._loop.get_exception_handler() == self._handle:
            self._loop.set_exception_handler(self._previous)

    def _handle(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if context.get("message") == "socket.accept() out of system resource" and isinstance(
            exc, OSError
        ):
            now = loop.time()
            if self._said_at is None or now - self._said_at >= self.EVERY:
                self._said_at = now
                extra = f" ({self._missed} more since)" if self._missed else ""
                self._missed = 0
                log.error(
                    "HTTP service cannot accept connections: %s%s; clients wait until it "
                    "can (raise the open file limit, `ulimit -n`)",
                    exc.strerror or exc,
                    extra,
                )
            else:
                self._missed += 1
            return
        if self._previous is not None:
            self._previous(loop, context)
        else:
            loop.default_exception_handler(context)


async def start_api(
    legion: Legion,
    controller: Controller,
    listeners: Sequence[HttpListener],
    *,
    best_effort: Sequence[HttpListener] = (),
    fleet: Fleet | None = None,
) -> ApiService:
    """Start listening on every one of `listeners` (ApiConfigError if one cannot), and on
    each of `best_effort` that can (a warning for each one that cannot). `fleet`: the
    fleet's statuses, when the configuration comes from etcd."""
    if controller.legion is not legion:
        raise ValueError("the controller must be the legion's")
    service = ApiService(controller, fleet)
    try:
        for listener in listeners:
            await service.open(listener)
        for listener in best_effort:
            try:
                await service.open(listener)
            except ApiConfigError as exc:
                log.warning("HTTP service not offered: %s", exc)
    except BaseException:
        await service.close()
        raise
    finally:
        close_inherited()
    controller.attach()
    for address in service.addresses:
        log.info("HTTP service listening on %s", address)
    return service


async def _resolve(endpoint: Endpoint) -> list[str]:
    """The addresses to bind; ApiConfigError if control would reach beyond loopback in clear."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(
            endpoint.host, endpoint.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError as exc:
        raise ApiConfigError(f"cannot listen on {endpoint.listener.listen}: {exc}") from None
    hosts = sorted({str(info[4][0]) for info in infos})
    if endpoint.access.allow_control and not endpoint.tls:
        import ipaddress  # TCP listeners only

        outside = [h for h in hosts if not ipaddress.ip_address(h.split("%")[0]).is_loopback]
        if outside:
            raise ApiConfigError(
                f"control on {endpoint.host} ({', '.join(outside)}), which is not a loopback "
                "address, needs TLS: set 'certfile', or listen on 127.0.0.1 or ::1"
            )
    return hosts


def _tls_context(certfile: str | None) -> ssl.SSLContext:
    tls = lean_asyncio.tls()
    context: ssl.SSLContext = tls.create_default_context(tls.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(certfile))
    except (OSError, tls.SSLError) as exc:
        raise ApiConfigError(f"cannot use the certificate file {certfile}: {exc}") from None
    context.set_alpn_protocols(["http/1.1"])
    return context
