"""/status/fleet and /events/fleet against a fake fleet view (the real one: tests/fleet)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from support.fakes import FakeController, Subscribers
from taskforce.api.auth import Access
from taskforce.api.routes import Deferred, EventStream, Reply, Request, Router
from taskforce.api.sse import FleetFeed
from taskforce.runtime.manage import ControlError

HOSTS = {"h1": {"roles": ["web"], "tasks": {"nginx": {"state": "running"}}}}


class FakeFleet(Subscribers):
    def __init__(self, error: ControlError | None = None) -> None:
        super().__init__()
        self.error = error

    def document(self) -> dict[str, Any]:
        return {"fleet": True, "host": "h1", "current": True, "error": None, "hosts": HOSTS}

    async def snapshot(self) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        return self.document()


def get(router: Router, target: str) -> Reply:
    outcome = router.handle(Request("GET", target))
    if isinstance(outcome, Deferred):
        outcome = asyncio.run(router.finish(outcome))
    assert isinstance(outcome, Reply)
    return outcome


def test_without_a_fleet_the_paths_say_why_not() -> None:
    router = Router(FakeController(), Access())
    for path in ("/status/fleet", "/events/fleet"):
        reply = get(router, path)
        assert reply.status == 404
        assert "not in fleet mode" in json.loads(bytes(reply.body))["error"]


def test_access_says_whether_the_fleet_paths_work() -> None:
    assert "fleet" not in json.loads(
        bytes(get(Router(FakeController(), Access()), "/status/access").body)
    )
    reply = get(Router(FakeController(), Access(), FakeFleet()), "/status/access")
    assert json.loads(bytes(reply.body))["fleet"] is True


def test_the_fleet_status_is_every_host() -> None:
    reply = get(Router(FakeController(), Access(), FakeFleet()), "/status/fleet?indent=1")
    assert reply.status == 200
    assert json.loads(bytes(reply.body))["hosts"] == HOSTS
    unreachable = FakeFleet(ControlError(503, "etcd is unreachable: timed out"))
    reply = get(Router(FakeController(), Access(), unreachable), "/status/fleet")
    assert (reply.status, json.loads(bytes(reply.body))) == (
        503,
        {"error": "etcd is unreachable: timed out"},
    )


def test_the_fleet_event_stream_sends_each_change() -> None:
    fleet = FakeFleet()
    outcome = Router(FakeController(), Access(), fleet).handle(Request("GET", "/events/fleet"))
    assert isinstance(outcome, EventStream) and outcome.events is not None
    feed = FleetFeed(fleet, interval=0)
    first = feed.payload()
    assert first.startswith(b"event: fleet\ndata: {") and first.endswith(b"\n\n")
    assert feed.payload() is first  # made once per change
    HOSTS["h2"] = {"roles": [], "tasks": {}}
    try:
        fleet.changes += 1
        assert b'"h2"' in feed.payload()
    finally:
        del HOSTS["h2"]

    async def scenario() -> list[bytes]:
        sent: list[bytes] = []
        reader = asyncio.StreamReader()

        async def send(payload: bytes) -> None:
            sent.append(payload)
            if len(sent) == 1:  # a change after the first event: a second one
                HOSTS["h3"] = {}
                fleet.changed()
            else:
                reader.feed_eof()  # the client leaves

        async with asyncio.timeout(10):
            await feed.stream(send, reader)
        assert not fleet.subscribers
        return sent

    try:
        sent = asyncio.run(scenario())
    finally:
        HOSTS.pop("h3", None)
    assert len(sent) == 2 and b'"h3"' in sent[1]
