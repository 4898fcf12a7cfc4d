"""Notifications without a supervisor: what is sent, the webhook client against a local
server (success, retries, final refusals, a server that never answers), commands through
a fake runner (environment, failures), filters, the bounded queue and closing."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import pytest

from support.wait import until
from taskforce.config.model import NotifyEvent, NotifyTarget
from taskforce.runtime.notify.notifications import (
    Notifications,
    document,
    environment,
    label,
    message,
)
from taskforce.runtime.notify.webhook import request_parts
from webhook_server import WebhookServer

T = TypeVar("T")
DEADLINE = 20.0
EXITED: dict[str, object] = {
    "event": "exited",
    "task": "web",
    "detail": "pid 42 exited 1 after 0.1s",
    "time": 1700000000.25,
    "instance": 0,
    "pid": 42,
}
FLAPPING: dict[str, object] = {**EXITED, "event": "flapping", "failures": 3, "retry_in": 2.0}
RELOAD: dict[str, object] = {
    "event": "reload_failed",
    "task": None,
    "detail": "t.conf:1:1: bad",
    "time": 1700000000.0,
}


def run(main: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(DEADLINE):
            return await main()

    return asyncio.run(bounded())


def fixed(*targets: NotifyTarget) -> Callable[[], tuple[NotifyTarget, ...]]:
    return lambda: targets


# ----- what is sent -----------------------------------------------------------------------


def test_messages() -> None:
    assert message(EXITED) == "web[0] exited: pid 42 exited 1 after 0.1s"
    assert message(FLAPPING) == (
        "web[0] flapping: pid 42 exited 1 after 0.1s (failure 3 in a row, retrying in 2s)"
    )
    assert message(RELOAD) == "reload_failed: t.conf:1:1: bad"
    recovered = {"event": "recovered", "task": "db", "detail": "running steadily again"}
    assert message(recovered) == "db recovered: running steadily again"


def test_the_document_and_the_environment() -> None:
    assert document(FLAPPING, "h1") == {**FLAPPING, "host": "h1", "message": message(FLAPPING)}
    env = environment(FLAPPING, "h1", {"PATH": "/bin"})
    assert env == {
        "PATH": "/bin",
        "TASKFORCE_EVENT": "flapping",
        "TASKFORCE_TASK": "web",
        "TASKFORCE_DETAIL": "pid 42 exited 1 after 0.1s",
        "TASKFORCE_TIME": "1700000000.25",
        "TASKFORCE_INSTANCE": "0",
        "TASKFORCE_PID": "42",
        "TASKFORCE_FAILURES": "3",
        "TASKFORCE_RETRY_IN": "2.0",
        "TASKFORCE_HOST": "h1",
        "TASKFORCE_MESSAGE": message(FLAPPING),
        "TASKFORCE_JSON": json.dumps(document(FLAPPING, "h1"), separators=(",", ":")),
    }
    assert "TASKFORCE_TASK" not in environment(RELOAD, "h1", {})  # None: left out


def test_labels_hide_credentials() -> None:
    target = NotifyTarget(url="https://user:secret@hooks.example.com:8443/a/b?key=secret")
    assert label(target) == "https://hooks.example.com:8443/a/b"
    assert label(NotifyTarget(command=("/usr/bin/logger", "-t", "tf"))) == "/usr/bin/logger"


def test_request_parts() -> None:
    host, port, tls, target, headers = request_parts("https://u%40x:p%3A@[::1]:8443/h?k=v")
    assert (host, port, tls, target) == ("::1", 8443, True, "/h?k=v")
    secret = base64.b64encode(b"u@x:p:").decode()
    assert headers == [("Host", "[::1]:8443"), ("Authorization", f"Basic {secret}")]
    assert request_parts("http://example.com")[:4] == ("example.com", 80, False, "/")


# ----- webhooks ---------------------------------------------------------------------------


def test_a_webhook_gets_the_event_as_json() -> None:
    with WebhookServer() as server:
        target = NotifyTarget(
            url=server.url.replace("http://", "http://alice:pw@") + "?k=1",
            headers=(("X-Api-Key", "k3y"),),
        )

        async def main() -> Notifications:
            notifications = Notifications(fixed(target), host="h1")
            notifications.notify(EXITED)
            await until(lambda: notifications.delivered == 1, "the delivery")
            await notifications.close()
            return notifications

        notifications = run(main)
        (got,) = server.received
    assert got.path == "/hook?k=1"
    assert got.body == document(EXITED, "h1")
    assert got.headers["content-type"] == "application/json"
    assert got.headers["x-api-key"] == "k3y"
    assert got.headers["authorization"] == "Basic " + base64.b64encode(b"alice:pw").decode()
    assert got.headers["user-agent"].startswith("taskforce/")
    assert notifications.failed == 0


def test_a_failing_webhook_is_retried_then_given_up(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "taskforce")
    with WebhookServer(statuses=(503,)) as server:
        target = NotifyTarget(url=server.url, attempts=3)

        async def main() -> Notifications:
            notifications = Notifications(fixed(target), backoff=0.01)
            notifications.notify(EXITED)
            notifications.notify(RELOAD)  # waits its turn, then fails the same way
            await until(lambda: notifications.failed == 2, "both to be given up")
            await notifications.close()
            return notifications

        notifications = run(main)
        assert server.events() == ["exited"] * 3 + ["reload_failed"] * 3
    assert notifications.delivered == 0
    assert "exited notification to http://127.0.0.1" in caplog.text
    assert "failed (the server answered 503): trying again in 0.01s" in caplog.text
    assert "failed (the server answered 503): trying again in 0.02s" in caplog.text
    assert "failed after 3 attempt(s): the server answered 503" in caplog.text


def test_a_webhook_that_recovers_gets_the_event_once() -> None:
    with WebhookServer(statuses=(500, 429, 204)) as server:

        async def main() -> Notifications:
            notifications = Notifications(fixed(NotifyTarget(url=server.url)), backoff=0.01)
            notifications.notify(EXITED)
            await until(lambda: notifications.delivered == 1, "the delivery")
            return notifications

        assert run(main).failed == 0
        assert server.events() == ["exited"] * 3


@pytest.mark.parametrize("status", [404, 301])
def test_a_refusal_is_final(status: int, caplog: pytest.LogCaptureFixture) -> None:
    with WebhookServer(statuses=(status,)) as server:

        async def main() -> Notifications:
            notifications = Notifications(fixed(NotifyTarget(url=server.url)), backoff=0.01)
            notifications.notify(EXITED)
            await until(lambda: notifications.failed == 1, "the refusal")
            return notifications

        run(main)
        assert server.events() == ["exited"]
    assert f"failed after 1 attempt(s): the server answered {status}" in caplog.text


def test_an_unreachable_webhook_is_retried() -> None:
    with WebhookServer() as server:
        url = server.url
    # The server is gone: connections are refused.

    async def main() -> Notifications:
        notifications = Notifications(fixed(NotifyTarget(url=url, attempts=2)), backoff=0.01)
        notifications.notify(EXITED)
        await until(lambda: notifications.failed == 1, "the failure")
        return notifications

    assert run(main).delivered == 0


def test_a_webhook_that_never_answers_blocks_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with WebhookServer(hang=True) as server:
        target = NotifyTarget(url=server.url, timeout=0.3, attempts=2)

        async def main() -> tuple[Notifications, int]:
            notifications = Notifications(fixed(target), backoff=0.01)
            notifications.notify(EXITED)
            # notify() only queues: nothing has been sent when it returns.
            assert server.received == []
            # The loop keeps turning while the server sits on a request: count the turns
            # that see a request held and not yet given up on.
            turns_while_held = 0
            while notifications.failed == 0:
                await asyncio.sleep(0.01)
                if server.received and notifications.failed == 0:
                    turns_while_held += 1
            return notifications, turns_while_held

        notifications, turns_while_held = run(main)
        assert len(server.received) == 2
    assert turns_while_held >= 2
    assert "failed after 2 attempt(s): no answer within 0.3s" in caplog.text
    assert notifications.delivered == 0


# ----- commands ---------------------------------------------------------------------------


class FakeRunner:
    """Records commands; each ends when the test says so (end()), or at once with `status`."""

    def __init__(self, start: bool = True, status: int | None = None) -> None:
        self.start = start
        self.status = status
        self.commands: list[tuple[tuple[str, ...], dict[str, str], float | None]] = []
        self.on_exits: list[Callable[[int], None]] = []
        self.on_event: Callable[[dict[str, object]], None] | None = None

    def run_command(
        self,
        argv: tuple[str, ...],
        what: str,
        on_exit: Callable[[int], None],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> bool:
        if self.start:
            self.commands.append((argv, dict(env or {}), timeout))
            self.on_exits.append(on_exit)
            if self.status is not None:
                asyncio.get_running_loop().call_soon(on_exit, self.status)
        return self.start

    def end(self, index: int, status: int) -> None:
        self.on_exits[index](status)


def test_a_command_gets_the_event_in_its_environment() -> None:
    target = NotifyTarget(command=("/usr/bin/send_nsca", "-H", "nagios"), timeout=4)
    runner = FakeRunner()

    async def main() -> Notifications:
        notifications = Notifications(fixed(target), host="h1", environ={"PATH": "/bin"})
        notifications.attach(runner)
        assert runner.on_event is not None
        runner.on_event(dict(FLAPPING))
        await until(lambda: len(runner.commands) == 1, "the command")
        runner.end(0, 0)
        await until(lambda: notifications.delivered == 1, "the delivery")
        return notifications

    run(main)
    ((argv, env, timeout),) = runner.commands
    assert argv == ("/usr/bin/send_nsca", "-H", "nagios") and timeout == 4
    assert env == environment(FLAPPING, "h1", {"PATH": "/bin"})


def test_a_failing_command_is_retried(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "taskforce")
    runner = FakeRunner()

    async def main() -> Notifications:
        notifications = Notifications(fixed(NotifyTarget(command=("x",))), backoff=0.01)
        notifications.attach(runner)
        notifications.notify(EXITED)
        for attempt, status in enumerate((1 << 8, 9, -1)):  # exit 1, SIGKILL, exec failed

            def tried(n: int = attempt) -> bool:
                return len(runner.commands) > n

            await until(tried, f"attempt {attempt + 1}")
            runner.end(attempt, status)
        await until(lambda: notifications.failed == 1, "giving up")
        return notifications

    run(main)
    assert "failed (the command exited 1)" in caplog.text
    assert "failed (the command killed by SIGKILL)" in caplog.text
    assert "failed after 3 attempt(s): the command could not be run" in caplog.text


def test_a_command_that_cannot_start_is_retried() -> None:
    runner = FakeRunner(start=False)

    async def main() -> Notifications:
        notifications = Notifications(fixed(NotifyTarget(command=("x",))), backoff=0.01)
        notifications.attach(runner)
        notifications.notify(EXITED)
        await until(lambda: notifications.failed == 1, "giving up")
        return notifications

    assert run(main).delivered == 0


# ----- filters, queues, hooks -------------------------------------------------------------


def test_each_target_gets_the_events_it_asks_for() -> None:
    runner = FakeRunner(status=0)
    only_flapping = NotifyTarget(command=("flap",), events=(NotifyEvent.FLAPPING,))
    muted = NotifyTarget(command=("muted",), events=())
    everything = NotifyTarget(command=("all",))

    async def main() -> None:
        notifications = Notifications(fixed(only_flapping, muted, everything))
        notifications.attach(runner)
        for event in (EXITED, FLAPPING, RELOAD):
            notifications.notify(event)
        await until(lambda: notifications.delivered == 4, "the deliveries")

    run(main)
    sent = [(argv[0], env["TASKFORCE_EVENT"]) for argv, env, _ in runner.commands]
    assert sorted(sent) == [
        ("all", "exited"),
        ("all", "flapping"),
        ("all", "reload_failed"),
        ("flap", "flapping"),
    ]


def test_a_full_queue_drops_the_oldest(caplog: pytest.LogCaptureFixture) -> None:
    runner = FakeRunner()
    target = NotifyTarget(command=("slow",), queue=2)

    async def main() -> None:
        notifications = Notifications(fixed(target))
        notifications.attach(runner)
        notifications.notify({**EXITED, "pid": 0})
        await until(lambda: len(runner.commands) == 1, "the first command")
        for n in range(1, 6):
            notifications.notify({**EXITED, "pid": n})
        # 0 is being delivered; 1 to 3 were dropped as 4 and 5 came.
        assert "dropping the oldest" in caplog.text
        for index in range(3):

            def ran(n: int = index) -> bool:
                return len(runner.commands) > n

            await until(ran, "the next command")
            runner.end(index, 0)
        await until(lambda: notifications.delivered == 3, "the deliveries")

    run(main)
    assert [env["TASKFORCE_PID"] for _, env, _ in runner.commands] == ["0", "4", "5"]
    assert caplog.text.count("dropping the oldest") == 1
    assert "notifications to slow: 3 event(s) dropped while it was behind" in caplog.text


def test_the_targets_are_read_at_each_event() -> None:
    runner = FakeRunner(status=0)
    targets: list[NotifyTarget] = []

    async def main() -> None:
        notifications = Notifications(lambda: targets)
        notifications.attach(runner)
        notifications.notify(EXITED)  # no target yet
        targets.append(NotifyTarget(command=("new",)))
        notifications.notify(FLAPPING)
        await until(lambda: len(runner.commands) == 1, "the command")

    run(main)
    assert [env["TASKFORCE_EVENT"] for _, env, _ in runner.commands] == ["flapping"]


def test_attach_chains_the_previous_listener() -> None:
    runner = FakeRunner()
    heard: list[object] = []
    runner.on_event = heard.append

    async def main() -> None:
        notifications = Notifications(fixed(NotifyTarget(command=("x",))))
        notifications.attach(runner)
        assert runner.on_event is not None
        runner.on_event(dict(EXITED))
        await until(lambda: len(runner.commands) == 1, "the command")

    run(main)
    assert heard == [EXITED]


def test_close_drops_what_is_left(caplog: pytest.LogCaptureFixture) -> None:
    runner = FakeRunner()

    async def main() -> None:
        notifications = Notifications(fixed(NotifyTarget(command=("x",))))
        notifications.attach(runner)
        notifications.notify(EXITED)
        notifications.notify(FLAPPING)
        await until(lambda: len(runner.commands) == 1, "the command")
        await notifications.close(grace=0.05)  # the command never ends
        notifications.notify(RELOAD)  # closed: ignored
        assert runner.commands[1:] == []

    run(main)
    assert "notifications: 2 event(s) not delivered: taskforce is stopping" in caplog.text


def test_a_broken_target_list_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> tuple[NotifyTarget, ...]:
        raise RuntimeError("oops")

    async def main() -> None:
        Notifications(broken).notify(EXITED)

    run(main)
    assert "notifications: cannot tell the targets" in caplog.text


def test_events_are_known_to_the_configuration() -> None:
    # What the supervisor emits is what a target can ask for.
    emitted = {"exited", "flapping", "recovered", "unhealthy", "failed", "reload_failed"}
    assert {e.value for e in NotifyEvent} == emitted
