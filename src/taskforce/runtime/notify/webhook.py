"""A minimal HTTP/1.1 client for webhooks: one POST, its status code, nothing more.

asyncio streams carry the request and h11 frames it, so a delivery never blocks the event
loop (names are resolved in asyncio's thread pool). TLS, verified against the system's
certificates, is used only for https:// URLs. The URL was checked when the configuration
was loaded (:mod:`taskforce.config.notify_targets`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import h11

from taskforce import __version__, lean_asyncio

if TYPE_CHECKING:
    import ssl

READ_SIZE = 16 * 1024


class WebhookError(Exception):
    """The server answered something that is not HTTP, or closed without answering."""


@functools.cache
def _tls() -> ssl.SSLContext:
    # Loading the system's certificates reads files: done once, not per delivery.
    return lean_asyncio.tls().create_default_context()  # type: ignore[no-any-return]


def request_parts(url: str) -> tuple[str, int, bool, str, list[tuple[str, str]]]:
    """(host, port, tls, target, headers) for a POST to `url`."""
    parts = urlsplit(url)
    tls = parts.scheme.lower() == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if tls else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = [("Host", parts.netloc.rpartition("@")[2])]
    if parts.username is not None:
        secret = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers.append(("Authorization", "Basic " + base64.b64encode(secret.encode()).decode()))
    return host, port, tls, target, headers


async def post(
    url: str, body: bytes, headers: Sequence[tuple[str, str]] = (), timeout: float = 10.0
) -> int:
    """POST `body` (JSON) to `url`; the status code of the answer.

    Raises TimeoutError after `timeout` seconds, OSError when the server cannot be reached
    and WebhookError when its answer is not HTTP. The body of the answer is not read.
    """
    host, port, tls, target, own = request_parts(url)
    conn = h11.Connection(h11.CLIENT)
    request = h11.Request(
        method="POST",
        target=target,
        headers=[
            *own,
            ("User-Agent", f"taskforce/{__version__}"),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
            *headers,
        ],
    )
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(
            host, port, ssl=_tls() if tls else None, server_hostname=host if tls else None
        )
        try:
            writer.write(
                (conn.send(request) or b"")
                + (conn.send(h11.Data(data=body)) or b"")
                + (conn.send(h11.EndOfMessage()) or b"")
            )
            await writer.drain()
            return await _status(conn, reader)
        finally:
            # The answer is all we wanted: no closing handshake to wait for.
            with contextlib.suppress(OSError):
                writer.transport.abort()


async def _status(conn: h11.Connection, reader: asyncio.StreamReader) -> int:
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise WebhookError(f"not an HTTP answer: {exc}") from None
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(READ_SIZE))
        elif isinstance(event, h11.Response):
            return int(event.status_code)
        elif isinstance(event, h11.ConnectionClosed):
            raise WebhookError("the server closed the connection without answering")
        # An informational answer (100 Continue): the real one follows.
