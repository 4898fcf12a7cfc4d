"""systemd's notification protocol against a datagram socket of our own: addresses (paths
and abstract names), the status line, READY once, STATUS coalesced, the end messages."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from taskforce.core.planner import Planner
from taskforce.core.spec import DesiredState, InstanceSpec, LaunchSpec, Policy, TaskSpec
from taskforce.core.vocabulary import Control
from taskforce.runtime.notify.systemd import (
    Notifier,
    SystemdStatus,
    Watchdog,
    status_line,
    watchdog_interval,
)


def receiver(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(5)
    return sock


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify")
    sock = receiver(path)
    try:
        yield sock, path
    finally:
        sock.close()


def received(sock: socket.socket) -> list[bytes]:
    """Every datagram waiting, without blocking."""
    found = []
    sock.setblocking(False)
    try:
        while True:
            found.append(sock.recv(4096))
    except BlockingIOError:
        return found
    finally:
        sock.settimeout(5)


async def arrival(sock: socket.socket, timeout: float = 5.0) -> list[bytes]:
    """The datagrams that arrive next, while the event loop runs; fails after `timeout`."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not (found := received(sock)):
        assert loop.time() < end, "nothing was sent"
        await asyncio.sleep(0.01)  # polling interval of a deadline-bounded wait
    return found


# ----- the socket -------------------------------------------------------------------------


def test_a_path_socket(systemd: tuple[socket.socket, str]) -> None:
    sock, path = systemd
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path})
    assert notifier is not None
    assert notifier.send("READY=1", "STATUS=hello")
    assert sock.recv(4096) == b"READY=1\nSTATUS=hello"
    notifier.close()


def test_an_abstract_socket() -> None:
    name = f"taskforce-test-{uuid.uuid4().hex}"
    sock = receiver("\0" + name)
    try:
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": "@" + name})
        assert notifier is not None and notifier.send("READY=1")
        assert sock.recv(4096) == b"READY=1"
        notifier.close()
    finally:
        sock.close()


def test_no_socket_no_notifier(caplog: pytest.LogCaptureFixture) -> None:
    assert Notifier.from_environ({}) is None
    assert Notifier.from_environ({"NOTIFY_SOCKET": ""}) is None
    assert Notifier.from_environ({"NOTIFY_SOCKET": "relative/path"}) is None
    assert "neither a path nor an @abstract name" in caplog.text


def test_a_missing_socket_is_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier(str(tmp_path / "gone"))
    assert not notifier.send("READY=1")
    assert not notifier.send("STATUS=x")
    assert caplog.text.count("cannot notify systemd") == 1
    notifier.close()


# ----- the status line --------------------------------------------------------------------


def spec(name: str, count: int = 1) -> TaskSpec:
    launch = LaunchSpec("prog", ("prog",), ())
    return TaskSpec(name, Control.WAIT, tuple(InstanceSpec(launch, {}) for _ in range(count)))


def planner_with(*specs: TaskSpec) -> Planner:
    """A planner whose every instance has been started (pids from 100)."""
    planner = Planner(DesiredState({s.name: s for s in specs}, Policy()))
    pid = 100
    for action in planner.plan(0.0).actions:
        pid += 1
        task, slot = action.task, action.slot
        planner.started(task, slot, pid, 0.0, 0.0)
    return planner


def test_status_line() -> None:
    planner = planner_with(spec("web", 3), spec("db"))
    assert status_line(planner) == "2 tasks, 4 processes running, 0 failing"
    planner.exited(planner.tasks["db"].instances[0].pid or 0, 256, 0.1, 0.1)
    assert status_line(planner) == "2 tasks, 3 processes running, 1 failing: db"
    planner.shutdown()
    assert status_line(planner) == "stopping: 3 processes left"


def test_status_line_names_a_few_failing_tasks() -> None:
    planner = planner_with(*(spec(f"t{n}") for n in range(5)), spec("ok"))
    for n in range(5):
        planner.exited(planner.tasks[f"t{n}"].instances[0].pid or 0, 256, 0.1, 0.1)
    line = "6 tasks, 1 process running, 5 failing: t0, t1, t2, ..."
    assert status_line(planner) == line


# ----- following a supervisor -------------------------------------------------------------


class FakeSupervisor:
    def __init__(self, planner: Planner) -> None:
        self.planner = planner
        self.on_change: Callable[[], None] | None = None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ready_once_then_status_on_change_coalesced(systemd: tuple[socket.socket, str]) -> None:
    sock, path = systemd

    async def main() -> None:
        planner = planner_with(spec("web", 2))
        supervisor = FakeSupervisor(planner)
        heard: list[str] = []
        supervisor.on_change = lambda: heard.append("previous")
        clock = Clock()
        status = SystemdStatus(Notifier(path), interval=0.05, clock=clock)
        status.attach(supervisor)
        assert supervisor.on_change is not None
        supervisor.on_change()
        assert heard == ["previous"]  # chained, not replaced
        assert received(sock) == [b"READY=1\nSTATUS=1 task, 2 processes running, 0 failing"]

        supervisor.on_change()  # nothing changed: nothing sent
        assert received(sock) == []

        planner.exited(planner.tasks["web"].instances[0].pid or 0, 256, 0.1, 0.1)
        supervisor.on_change()  # too soon after the last send: a timer folds changes in
        assert received(sock) == []
        planner.exited(planner.tasks["web"].instances[1].pid or 0, 256, 0.1, 0.1)
        supervisor.on_change()
        clock.now += 0.05
        assert await arrival(sock) == [b"STATUS=1 task, 0 processes running, 1 failing: web"]
        assert status._timer is None  # idle: no timer

        clock.now += 1
        planner.shutdown()
        supervisor.on_change()  # long after the last send: at once
        assert received(sock) == [b"STATUS=stopping: 0 processes left"]
        status.ended(reexecuting=False)
        assert received(sock) == [b"STOPPING=1\nSTATUS=stopped"]
        supervisor.on_change()  # detached: quiet
        assert received(sock) == []
        status.close()

    asyncio.run(main())


def test_reexecuting_says_reloading(systemd: tuple[socket.socket, str]) -> None:
    sock, path = systemd
    status = SystemdStatus(Notifier(path))
    status.attach(FakeSupervisor(planner_with(spec("web"))))
    status.ended(reexecuting=True)
    (message,) = received(sock)
    lines = message.decode().split("\n")
    assert lines[0] == "RELOADING=1" and lines[2] == "STATUS=re-executing"
    assert lines[1].startswith("MONOTONIC_USEC=") and int(lines[1].split("=")[1]) > 0
    status.close()


# ----- the watchdog -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({}, None),  # no WatchdogSec=: no timer at all
        ({"WATCHDOG_USEC": "30000000"}, 15.0),  # half the timeout
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 15.0),  # for us
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # for our parent
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
    ],
)
def test_watchdog_interval(environ: dict[str, str], interval: float | None) -> None:
    assert watchdog_interval(environ, pid=4242) == interval


def test_no_watchdog_asked_no_timer(
    systemd: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = systemd
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)

    notifier = Notifier(path)

    async def main() -> None:
        assert Watchdog.start_if_asked(notifier) is None

    try:
        asyncio.run(main())
    finally:
        notifier.sock.close()
    assert received(sock) == []


def test_the_watchdog_is_fed_from_the_loop_until_stopped(
    systemd: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = systemd
    monkeypatch.setenv("WATCHDOG_USEC", "20000")  # fed every 10 ms
    monkeypatch.delenv("WATCHDOG_PID", raising=False)

    async def main() -> None:
        watchdog = Watchdog.start_if_asked(Notifier(path))
        assert watchdog is not None and watchdog.interval == 0.01
        assert received(sock) == [b"WATCHDOG=1"]  # at once
        assert set(await arrival(sock)) == {b"WATCHDOG=1"}  # and again, from the loop
        watchdog.stop()
        assert watchdog._timer is None
        watchdog.notifier.close()

    asyncio.run(main())
