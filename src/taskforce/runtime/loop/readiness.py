"""Readiness probes: is a started process ready to serve yet?

Each probe is one short attempt, run on the event loop (TCP and HTTP with asyncio
streams, the pidfile by reading it); the command probe runs as a helper process like
checks do. The planner schedules probes with backoff until one succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib

from taskforce import lean_asyncio
from taskforce.runtime.processes.identity import identify, read_pidfile

# One attempt may take this long before it counts as "not ready".
ATTEMPT_TIMEOUT = 2.0
DEFAULT_HOST = "127.0.0.1"


def split_host_port(target: str) -> tuple[str, int]:
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected [host]:port, got {target!r}")
    host = host.strip("[]") or DEFAULT_HOST
    return host, int(port)


async def tcp_ready(target: str) -> bool:
    host, port = split_host_port(target)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), ATTEMPT_TIMEOUT)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def http_ready(url: str) -> bool:
    from urllib.parse import urlsplit  # here: it imports ipaddress (memory)

    parts = urlsplit(url)
    secure = parts.scheme == "https"
    host = parts.hostname or DEFAULT_HOST
    port = parts.port or (443 if secure else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    ssl_context = None
    if secure:
        # Only when an https probe is configured: ssl costs memory.
        ssl_context = lean_asyncio.tls().create_default_context()
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ssl_context), ATTEMPT_TIMEOUT
        )
    except (OSError, TimeoutError):
        return False
    try:
        request = f"GET {path} HTTP/1.0\r\nHost: {parts.netloc}\r\nUser-Agent: taskforce\r\n\r\n"
        writer.write(request.encode("ascii", "replace"))
        status_line = await asyncio.wait_for(reader.readline(), ATTEMPT_TIMEOUT)
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    words = status_line.split()
    return len(words) >= 2 and words[0].startswith(b"HTTP/") and words[1][:1] == b"2"


def pidfile_ready(path: str) -> bool:
    pid = read_pidfile(path) if path else None
    return pid is not None and identify(pid) is not None
