"""The service: every listener started, served and stopped together.

The command line goes through :func:`taskforce.app.serve.serve_with_api`; a library user who
runs the legion otherwise calls :func:`start_api` and, at the end, ``close()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from taskforce import lean_asyncio
from taskforce.api.listen import ApiConfigError, Endpoint, prepare
from taskforce.api.paths import INHERITED_ENV
from taskforce.api.sse import EventFeed, Fleet, StreamSlots
from taskforce.api.status import Controller
from taskforce.api.unix import UnixSocket, close_inherited
from taskforce.config.model import HttpListener
from taskforce.runtime.legion import Legion
from taskforce.runtime.own.open_files import in_reserve

if TYPE_CHECKING:
    import ssl

    from taskforce.api.hosts import HostCheck
    from taskforce.api.routes import Router

log = logging.getLogger("taskforce")

# Per listener, counted from accept; the service also leaves the descriptors of
# runtime.limits' reserve alone, whatever the count.
MAX_CONNECTIONS = 64
BACKLOG = 64  # connections the kernel holds for us while we are busy
HAND_OVER_GRACE = 1.0  # seconds the requests under way get to finish before a re-exec
# A client reaches a listener on every address through the loopback one.
_WILDCARD_TO_LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1"}
_BUSY_BODY = b'{"error":"too many connections; try again later"}\n'
# Sent, unread, to a client over the connection limit: nothing is spent parsing its request.
BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)
# accept() failing for want of descriptors or memory: wait this long before the next try,
# and say so in the log at most once every SHORTAGE_EVERY seconds.
_SHORTAGES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
# accept() failing for what a client did (gone before it was accepted): the next one.
_CLIENT_GONE = (errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EAGAIN, errno.EINTR)
SHORTAGE_RETRY = 1.0
# Connections accepted in one turn of the loop at most (the rest wait for the next turn).
_ACCEPTS_A_TURN = 16
SHORTAGE_EVERY = 60.0


@dataclass(slots=True)
class _Listening:
    endpoint: Endpoint
    origin: str  # as the log names the listener: "unix:/run/tf.sock"
    router: Router | None = None  # made for the first connection (see _connection)
    unix: UnixSocket | None = None
    sockets: list[socket.socket] = field(default_factory=list)  # the listening ones
    # Listening sockets whose readiness is watched, and a resume after a shortage.
    watched: list[socket.socket] = field(default_factory=list)
    resume: asyncio.TimerHandle | None = None
    tls: ssl.SSLContext | None = None
    hosts: HostCheck | None = None  # TCP only
    slots: StreamSlots = field(default_factory=lambda: StreamSlots(None))
    connections: set[asyncio.Task[None]] = field(default_factory=set)


class ApiService:
    """The running listeners; `addresses` says where they are, `close()` stops them all.

    Each listening socket is accepted from by a reader callback (not asyncio's servers): a
    connection is counted from the moment it is accepted, and one over the limit is
    closed before the next is accepted, so clients that connect and say nothing (before
    a TLS handshake, say) can never hold more descriptors than the limit.
    """

    def __init__(self, controller: Controller, fleet: Fleet | None = None) -> None:
        self.controller = controller
        self.fleet = fleet
        self.feed = EventFeed(controller)
        self._listening: list[_Listening] = []
        self._shortage_said: float | None = None
        self._shortage_missed = 0

    @property
    def streams(self) -> int:
        """Event streams open, on every listener."""
        return sum(each.slots.used for each in self._listening)

    @property
    def addresses(self) -> list[str]:
        """`unix:PATH`, `http://HOST:PORT` or `https://HOST:PORT`, one per bound socket."""
        found = []
        for listening in self._listening:
            if listening.unix is not None:
                found.append(f"unix:{listening.unix.path}")
                continue
            scheme = "https" if listening.endpoint.tls else "http"
            for sock in listening.sockets:
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
            for sock in listening.sockets:
                host, port = sock.getsockname()[:2]
                host = _WILDCARD_TO_LOOPBACK.get(host, host)
                ranked.append(
                    (control, 1, f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}")
                )
        return [server for *_, server in sorted(ranked, key=lambda r: r[:2])]

    async def open(self, listener: HttpListener) -> None:
        endpoint = prepare(listener)
        origin = f"unix:{endpoint.path}" if endpoint.path is not None else listener.listen
        listening = _Listening(endpoint, origin)
        if endpoint.tls:
            listening.tls = _tls_context(endpoint.listener.certfile)
        if endpoint.path is not None:
            unix = listening.unix = UnixSocket(endpoint.path)
            listening.sockets.append(unix.sock)
        else:
            from taskforce.api.hosts import HostCheck  # TCP only: ipaddress costs memory

            listening.hosts = HostCheck(endpoint.host, listener.hosts)
            listening.slots = StreamSlots(endpoint.access)
            try:
                for host in await _resolve(endpoint):
                    listening.sockets.append(_bind(host, endpoint.port))
            except OSError as exc:
                for sock in listening.sockets:
                    sock.close()
                what = listener.listen
                raise ApiConfigError(f"cannot listen on {what}: {exc.strerror}") from None
        for sock in listening.sockets:
            sock.setblocking(False)
        self._watch(listening)
        self._listening.append(listening)

    def _watch(self, listening: _Listening) -> None:
        loop = asyncio.get_running_loop()
        listening.resume = None
        for sock in listening.sockets:
            loop.add_reader(sock.fileno(), self._accept, listening, sock)
            listening.watched.append(sock)

    def _unwatch(self, listening: _Listening) -> None:
        loop = asyncio.get_running_loop()
        for sock in listening.watched:
            loop.remove_reader(sock.fileno())
        listening.watched.clear()
        if listening.resume is not None:
            listening.resume.cancel()
            listening.resume = None

    def _accept(self, listening: _Listening, listener: socket.socket) -> None:
        """Accept what waits on a readable listening socket.

        A reader callback, not an awaited accept: between accept() and the connection's
        task nothing can be cancelled, so stopping (removing the reader) never drops an
        accepted connection, and what is not accepted stays in the backlog (for the next
        image, on a hand-over).
        """
        for _ in range(_ACCEPTS_A_TURN):
            try:
                conn, _ = listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in _CLIENT_GONE:
                    continue
                self._unwatch(listening)
                if exc.errno in _SHORTAGES:
                    self._shortage(exc)
                    loop = asyncio.get_running_loop()
                    listening.resume = loop.call_later(SHORTAGE_RETRY, self._watch, listening)
                else:
                    log.error("HTTP service stops accepting connections: %s", exc)
                return
            self._admit(listening, conn)

    def _admit(self, listening: _Listening, conn: socket.socket) -> None:
        # Counted from here, before any TLS handshake: a client that never says a word
        # holds a descriptor as surely as one that does.
        if len(listening.connections) >= MAX_CONNECTIONS or in_reserve(conn.fileno()):
            with contextlib.suppress(OSError):
                if listening.tls is None:
                    conn.setblocking(False)
                    conn.send(BUSY)  # best effort: it fits in any socket buffer
            conn.close()
            return
        task = asyncio.create_task(self._connection(listening, conn))
        listening.connections.add(task)
        task.add_done_callback(listening.connections.discard)

    def _shortage(self, exc: OSError) -> None:
        """Out of descriptors (or memory): say it once a minute, in one line, with what
        to do; clients wait in the backlog meanwhile."""
        now = asyncio.get_running_loop().time()
        if self._shortage_said is not None and now - self._shortage_said < SHORTAGE_EVERY:
            self._shortage_missed += 1
            return
        self._shortage_said = now
        extra = f" ({self._shortage_missed} more since)" if self._shortage_missed else ""
        self._shortage_missed = 0
        log.error(
            "HTTP service cannot accept connections: %s%s; clients wait until it can "
            "(raise the open file limit, `ulimit -n`)",
            exc.strerror or exc,
            extra,
        )

    async def _connection(self, listening: _Listening, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        timeout = listening.endpoint.timeout
        reader = asyncio.StreamReader(loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        try:
            # With TLS, the handshake: it must end within the listener's timeout.
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol,
                conn,
                ssl=listening.tls,
                ssl_handshake_timeout=timeout if listening.tls is not None else None,
            )
        except asyncio.CancelledError:
            conn.close()
            return  # close(): asyncio 3.11 would log a cancelled connection as an error
        except (OSError, TimeoutError) as exc:
            log.debug("HTTP connection not set up: %s", exc or type(exc).__name__)
            conn.close()
            return
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        # HTTP (h11) and the routes are imported by the first connection, not at start-up,
        # which they would delay by a tenth of its time with a hundred tasks.
        from taskforce.api.http import HttpConnection

        if listening.router is None:
            from taskforce.api.routes import Router

            origin = listening.origin
            listening.router = Router(
                self.controller, listening.endpoint.access, self.fleet, origin
            )
        connection = HttpConnection(
            reader, writer, listening.router, self.feed, timeout, listening.slots, listening.hosts
        )
        with contextlib.suppress(asyncio.CancelledError):
            await connection.serve()

    async def close(self, hand_over: bool = False) -> None:
        """Stop listening, end every connection, remove the unix sockets; or, with
        `hand_over` (taskforce is about to re-execute itself), leave the unix sockets
        listening for the next image, named in the environment it inherits: the clients
        that connect meanwhile wait in their backlog for the next image to accept them."""
        listening, self._listening = self._listening, []
        if hand_over:
            kept = {each.unix.path: each.unix.hand_over() for each in listening if each.unix}
            os.environ[INHERITED_ENV] = json.dumps(kept)
        for each in listening:
            self._unwatch(each)
        for sock in (sock for each in listening for sock in each.sockets):
            sock.close()
        tasks = [task for each in listening for task in each.connections]
        if hand_over and tasks:
            # Requests under way are answered (the next image answers the ones after);
            # only what outlasts the grace, an event stream say, is cut.
            await asyncio.wait(tasks, timeout=HAND_OVER_GRACE)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for each in listening:
            if each.unix is not None and not hand_over:
                each.unix.remove()


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on `host` (an address), as asyncio's servers make them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=BACKLOG)


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
