"""/logs/TASK: recent output as JSON, and following it as server-sent events."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from taskforce.api.auth import Access
from taskforce.api.logstream import LogFollow
from taskforce.api.routes import Deferred, EventStream, Reply, Request, Router
from taskforce.runtime.manage import ControlError
from taskforce.runtime.output.ring import Follower, Ring

LINE = {"instance": 0, "stream": "stdout", "time": 1.0, "text": "hello"}


class FakeOutput:
    """What the routes and the stream need of the Controller, over a real Ring."""

    def __init__(self) -> None:
        self.ring = Ring()
        self.asked: list[tuple[str, int]] = []

    def logs(self, task: str, n: int) -> dict[str, Any]:
        if task == "quiet":
            raise ControlError(409, "the output of 'quiet' is not captured")
        if task != "web":
            raise ControlError(404, f"no task named {task!r}")
        self.asked.append((task, n))
        return {"task": task, "lines": [LINE] if n else []}

    def follow_logs(self, task: str) -> Follower:
        follower = Follower()
        self.ring.followers.add(follower)
        return follower

    def unfollow_logs(self, task: str, follower: Follower) -> None:
        self.ring.followers.discard(follower)


def handle(
    fake: FakeOutput, target: str, access: Access | None = None
) -> Reply | EventStream | Deferred:
    # FakeOutput has only the log routes' part of the ControlSurface.
    router = Router(fake, access or Access(allow_control=True))  # type: ignore[arg-type]
    return router.handle(Request("GET", target))


def test_recent_lines_as_json() -> None:
    fake = FakeOutput()
    reply = handle(fake, "/logs/web?n=7")
    assert isinstance(reply, Reply) and reply.status == 200
    assert json.loads(bytes(reply.body)) == {"task": "web", "lines": [LINE]}
    assert fake.asked == [("web", 7)]
    handle(fake, "/logs/web")
    assert fake.asked[-1] == ("web", 100)


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/logs/quiet", 409),
        ("/logs/nope", 404),
        ("/logs/web?n=-1", 400),
        ("/logs/web?n=x", 400),
        ("/logs/web?n=1&n=2", 400),
        ("/logs/", 404),
    ],
)
def test_refusals(target: str, status: int) -> None:
    reply = handle(FakeOutput(), target)
    assert isinstance(reply, Reply) and reply.status == status
    assert "error" in json.loads(bytes(reply.body))


def test_logs_need_control_access() -> None:
    reply = handle(FakeOutput(), "/logs/web", Access(allow_control=False))
    assert isinstance(reply, Reply) and reply.status == 403


def test_task_names_are_unquoted() -> None:
    reply = handle(FakeOutput(), "/logs/w%65b")
    assert isinstance(reply, Reply) and reply.status == 200


def test_follow_turns_into_an_event_stream() -> None:
    fake = FakeOutput()
    stream = handle(fake, "/logs/web?follow=1&n=3")
    assert isinstance(stream, EventStream) and stream.events is not None
    for off in ("follow=0", "follow=no", "follow=false"):
        assert isinstance(handle(fake, f"/logs/web?{off}"), Reply)
    assert isinstance(handle(fake, "/logs/quiet?follow=1"), Reply)  # refused before streaming


def test_the_stream_sends_recent_then_new_lines_then_skips() -> None:
    fake = FakeOutput()
    sent: list[bytes] = []

    async def scenario() -> None:
        reader = asyncio.StreamReader()
        got = asyncio.Event()

        async def send(payload: bytes) -> None:
            sent.append(payload)
            got.set()

        async def until(count: int) -> None:
            while len(sent) < count:
                got.clear()
                await asyncio.wait_for(got.wait(), 10)

        task = asyncio.ensure_future(LogFollow(fake, "web", 3).run(send, reader))
        await until(1)
        fake.ring.add((2.0, 1, "stderr", b"new\n"))
        await until(2)
        chunk = b"z" * 99 + b"\n"
        for _ in range(5000):  # far more than a follower may queue
            fake.ring.add((3.0, 0, "stdout", chunk))
        await until(4)
        reader.feed_eof()  # the client leaves
        await asyncio.wait_for(task, 10)

    asyncio.run(scenario())
    events = [parse(payload) for payload in sent]
    assert events[0] == ("lines", [LINE])
    assert events[1] == ("lines", [{"instance": 1, "stream": "stderr", "time": 2.0, "text": "new"}])
    assert events[2][0] == "skipped" and events[2][1]["lines"] > 1000
    assert events[3][0] == "lines" and events[3][1][-1]["text"] == "z" * 99
    assert fake.ring.followers == set()  # unfollowed when the client left


def parse(payload: bytes) -> tuple[str, Any]:
    head, data, end = payload.decode().split("\n", 2)
    assert end == "\n" and head.startswith("event: ") and data.startswith("data: ")
    return head[len("event: ") :], json.loads(data[len("data: ") :])
