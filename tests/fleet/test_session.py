"""The etcd session and the loops on it, when a connection fails under them.

These need no etcd: the failure they pin down is a race inside one taskforce. Every part
of the fleet (the lease, the election, the status, the key followers) shares one
connection, and the failure of any call replaces it and closes the old one in the
background. A follower that had just taken the old connection then used its stubs, which
the close had removed: AttributeError, which ended the follower's task without a word,
and the host never saw a configuration change again (issue #8, the total outage test).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "taskforce.fleet.session", reason="the fleet extra is not installed: pip install -e '.[fleet]'"
)

from taskforce.fleet import session as session_module
from taskforce.fleet.session import KV, EtcdUnavailableError, Event, Session
from taskforce.fleet.source import EtcdSource
from taskforce.fleet.urls import parse_etcd_url

# Nothing listens there: a call that got as far as the network would fail differently.
URL = "etcd://127.0.0.1:9/fleet/config"
DEADLINE = 20.0


def closed_while_connecting(monkeypatch: pytest.MonkeyPatch, session: Session) -> list[Any]:
    """Make every connection fail, and be closed, while its caller waits for connect():
    what another part of the fleet does to a shared connection at the wrong moment."""
    original = session_module._Client.connect
    clients: list[Any] = []

    async def connect(client: Any) -> None:
        await original(client)
        clients.append(client)
        session._failed(client, None)  # say, the lease's renewal on it failed meanwhile
        await asyncio.wait(set(session._closing))  # and its close has run

    monkeypatch.setattr(session_module._Client, "connect", connect)
    return clients


def test_a_connection_closed_under_a_call_fails_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        session = Session(parse_etcd_url(URL).connection, rpc_timeout=0.5)
        clients = closed_while_connecting(monkeypatch, session)
        try:
            # Was: AttributeError: 'NoneType' object has no attribute 'Range'.
            with pytest.raises(EtcdUnavailableError):
                await session.get(b"/fleet/config")
            with pytest.raises(EtcdUnavailableError):
                await session.put(b"/fleet/k", b"v")
            with pytest.raises(EtcdUnavailableError):
                async for _ in session.watch(b"/fleet/config", 1):
                    pass
        finally:
            await session.close()
        # aetcd reconnects a closed client when asked to watch: no channel was reopened
        # on a connection that the session has given up (nobody would close it).
        assert clients and all(c.channel is None for c in clients)

    asyncio.run(scenario())


class _FlakySession:
    """A session whose first read fails with a bug (not an etcd error), then works."""

    def __init__(self) -> None:
        self.reads = 0
        self.events: asyncio.Queue[Event] = asyncio.Queue()

    async def get(self, key: bytes) -> tuple[KV | None, int]:
        self.reads += 1
        if self.reads == 1:
            raise RuntimeError("a bug in the session")
        return KV(key, b"second", 5, 0), 5

    async def watch(self, key: bytes, start: int, *, prefix: bool = False) -> AsyncIterator[Event]:
        while True:
            yield await self.events.get()


async def _until(condition: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(DEADLINE):
        while not condition():
            await asyncio.sleep(0.01)  # the polling interval of a bounded wait
    assert condition(), what


def test_following_a_key_survives_an_unexpected_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        flaky = _FlakySession()
        url = parse_etcd_url(URL)
        source = EtcdSource(flaky, url, str(tmp_path / "copy"), missing=None)  # type: ignore[arg-type]
        source._value = b"first"
        source._revision = 0  # as after an outage: the key is read afresh
        changes: list[bytes] = []
        source.watch(lambda: changes.append(source.read()))
        try:
            await _until(lambda: changes == [b"second"], "the key read after the failure")
            flaky.events.put_nowait(Event(False, KV(url.key.encode(), b"third", 6, 0)))
            await _until(lambda: changes == [b"second", b"third"], "the watch to go on")
        finally:
            await source.close()

    with caplog.at_level(logging.ERROR, logger="taskforce.fleet"):
        asyncio.run(scenario())
    assert "following the key failed; retrying" in caplog.text
