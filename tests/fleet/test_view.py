"""The fleet view follows the hosts' statuses only while someone looks (no etcd here: a
fake session; the real one is in test_http.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace

import pytest

pytest.importorskip(
    "taskforce.fleet.session", reason="the fleet extra is not installed: pip install -e '.[fleet]'"
)

from taskforce.fleet.session import KV, EtcdUnavailableError, Event
from taskforce.fleet.view import FleetView
from taskforce.runtime.manage import ControlError

PREFIX = "/fleet/status/"
DEADLINE = 20.0


class FakeSession:
    def __init__(self) -> None:
        self.rpc_timeout = 0.05
        self.connection = SimpleNamespace(endpoints=[("127.0.0.1", 9)])
        self.reachable = True
        self.watching = 0  # watches open now
        self.events: asyncio.Queue[Event] = asyncio.Queue()

    async def get_prefix(self, prefix: bytes) -> tuple[list[KV], int]:
        if not self.reachable:
            raise EtcdUnavailableError("UNAVAILABLE: connection refused")
        return [KV(prefix + b"h1", json.dumps({"roles": ["web"]}).encode(), 3, 7)], 3

    async def watch(self, key: bytes, start: int, *, prefix: bool = False) -> AsyncIterator[Event]:
        self.watching += 1
        try:
            while True:
                yield await self.events.get()
        finally:
            self.watching -= 1


async def until(condition: Callable[[], bool], what: str) -> None:
    try:
        async with asyncio.timeout(DEADLINE):
            while not condition():
                await asyncio.sleep(0.01)  # the polling interval of a bounded wait
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def test_the_view_follows_while_looked_at_then_stops() -> None:
    async def scenario() -> None:
        session = FakeSession()
        view = FleetView(session, "/fleet/", "h1", linger=0.2)  # type: ignore[arg-type]
        try:
            assert session.watching == 0  # nobody has looked yet
            document = await view.snapshot()
            assert document["hosts"] == {"h1": {"roles": ["web"]}} and document["current"]
            changed = view.subscribe()
            await until(lambda: session.watching == 1, "the watch")
            session.events.put_nowait(Event(False, KV(PREFIX.encode() + b"h2", b"{}", 4, 8)))
            await until(changed.is_set, "the change to be told")
            assert list(view.document()["hosts"]) == ["h1", "h2"]
            session.events.put_nowait(Event(True, KV(PREFIX.encode() + b"h1", b"", 5, 0)))
            await until(lambda: list(view.document()["hosts"]) == ["h2"], "h1 to leave")
            # A stream keeps it going past the linger; the last one to leave lets it stop.
            view._maybe_idle()  # as the linger's timer does
            assert view._task is not None and not view._task.cancelling()
            assert view._idle is not None  # rearmed
            view.unsubscribe(changed)
            await until(lambda: session.watching == 0, "the watch to stop")
            assert view.document()["current"] is False
            await view.snapshot()  # looking again starts again
            await until(lambda: session.watching == 1, "the watch again")
        finally:
            await view.close()
        assert session.watching == 0

    asyncio.run(scenario())


def test_unreachable_etcd_is_a_503_then_the_last_known_hosts() -> None:
    async def scenario() -> None:
        session = FakeSession()
        session.reachable = False
        view = FleetView(session, "/fleet/", "h1")  # type: ignore[arg-type]
        try:
            with pytest.raises(ControlError) as refused:
                await view.snapshot()
            assert refused.value.status == 503 and "unreachable" in refused.value.message
            session.reachable = True
            await until(lambda: view.document()["current"], "the statuses once etcd is back")
            assert view.document()["error"] is None
        finally:
            await view.close()

    asyncio.run(scenario())
