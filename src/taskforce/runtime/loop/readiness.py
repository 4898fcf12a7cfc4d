"""Readiness and liveness probes: is a started process ready to serve yet, and still working?

Each probe is one short attempt, run on the event loop (TCP and HTTP with asyncio
streams, the pidfile by reading it); the command probe runs as a helper process like
checks do. Each gives None on success, else why it failed (liveness probes report it).
The planner schedules readiness probes with backoff until one succeeds, and liveness
probes every interval for as long as the process runs.
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


async def tcp_probe(target: str, timeout: float = ATTEMPT_TIMEOUT) -> str | None:
    """Connect to `target` ([host]:port): None when it accepts, else why not."""
    host, port = split_host_port(target)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except TimeoutError:
        return f"no connection to {target} within {timeout:g}s"
    except OSError as err:
        return f"cannot connect to {target}: {err.strerror or err}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return None


async def http_probe(url: str, timeout: float = ATTEMPT_TIMEOUT) -> str | None:
    """GET `url`: None when it answers 2xx, else why not."""
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
            asyncio.open_connection(host, port, ssl=ssl_context), timeout
        )
    except TimeoutError:
        return f"no connection to {url} within {timeout:g}s"
    except OSError as err:
        return f"cannot connect to {url}: {err.strerror or err}"
    try:
        request = f"GET {path} HTTP/1.0\r\nHost: {parts.netloc}\r\nUser-Agent: taskforce\r\n\r\n"
        writer.write(request.encode("ascii", "replace"))
        status_line = await asyncio.wait_for(reader.readline(), timeout)
    except TimeoutError:
        return f"no answer from {url} within {timeout:g}s"
    except OSError as err:
        return f"{url}: {err.strerror or err}"
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    words = status_line.split()
    if len(words) >= 2 and words[0].startswith(b"HTTP/") and words[1][:1] == b"2":
        return None
    answer = status_line.strip().decode("ascii", "replace")[:80] or "nothing"
    return f"{url} answered {answer!r}"


def pidfile_probe(path: str) -> str | None:
    """None when the pidfile at `path` names a live process, else why not."""
    pid = read_pidfile(path) if path else None
    if pid is None:
        return f"no pid in {path or 'the pidfile'}"
    return None if identify(pid) is not None else f"pid {pid} (from {path}) is not running"
