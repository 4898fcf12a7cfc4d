"""Zero-downtime restarts, end to end (issue 17): a client loop of hundreds of requests a
second against a task served through a socket taskforce holds, while the task is
restarted, rolled, reloaded and taskforce itself upgraded, sees no failed connection; the
same loop against a task that binds its own socket sees refusals (the control).

The task is tests/programs/activated_http.py, which takes its socket from LISTEN_FDS.
"""

from __future__ import annotations

import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support.config import FAST, write_config
from support.runner import Taskforce
from support.wait import wait_for
from taskforce.cli.client import Client, ClientError, Endpoint

SERVER = str(Path(__file__).parent.parent / "programs" / "activated_http.py")
SETTINGS = {**FAST, "stop_timeout": 5}
# The client loop's bounds: requests, seconds, and the pause between two requests.
MAX_REQUESTS = 60_000
MAX_SECONDS = 150.0
PAUSE = 0.002


class Clients:
    """One client asking over a fresh loopback connection each time, in a thread."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.answered = 0
        self.failures: list[str] = []
        self.pids: set[int] = set()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Clients:
        self._thread.start()
        self.progressed()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(30)

    def _run(self) -> None:
        end = time.monotonic() + MAX_SECONDS
        asked = 0
        while not self._done.is_set() and asked < MAX_REQUESTS and time.monotonic() < end:
            asked += 1
            try:
                self.pids.add(self._ask())
                self.answered += 1
            except (OSError, ValueError) as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
            self._done.wait(PAUSE)

    def _ask(self) -> int:
        with socket.create_connection(self.address, timeout=10) as conn:
            conn.sendall(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
            reply = b""
            while chunk := conn.recv(4096):
                reply += chunk
        head, _, body = reply.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.0 200"):
            raise ValueError(f"unexpected answer {reply[:60]!r}")
        return int(body)

    def progressed(self, requests: int = 30) -> None:
        """Wait until the loop has had `requests` more answered (traffic flows)."""
        seen = self.answered
        wait_for(lambda: self.answered >= seen + requests, what=f"{requests} more answers")

    def served_by(self, generation: set[int]) -> None:
        """Wait until one of `generation` has answered, and traffic flows.

        Not a count of the processes that answered: the kernel hands a connection to
        whichever server accepts first, and on a loaded machine a server that lived a
        second (one scaled away) may never be first."""
        wait_for(lambda: self.pids & generation, what=f"an answer from one of {generation}")
        self.progressed()


def status(runtime: Path, task: str = "web") -> dict[str, Any]:
    reply: dict[str, Any] = Client(Endpoint("unix", str(runtime / "taskforce.sock"))).get(
        "/status/tasks"
    )
    entry: dict[str, Any] = reply[task]
    return entry


def pids(runtime: Path) -> set[int]:
    return {p["pid"] for p in status(runtime)["processes"] if p["pid"]}


def settled(
    runtime: Path, count: int, other_than: set[int], task: str = "web"
) -> Callable[[], set[int] | None]:
    """A condition: `count` processes run, none of `other_than`, no roll under way."""

    def check() -> set[int] | None:
        try:
            web = status(runtime, task)
        except ClientError:  # not listening yet
            return None
        now = {p["pid"] for p in web["processes"] if p["pid"]}
        done = len(now) == count and not now & other_than and web["rolling"] is None
        return now if done and web["state"] == "running" else None

    return check


def web_task(**keys: Any) -> dict[str, Any]:
    return {
        "commands": {"start": [sys.executable, SERVER, *keys.pop("args", ())]},
        "defines": {"VERSION": keys.pop("version", "1")},
        **keys,
    }


def test_no_connection_fails_through_restarts_rolls_reloads_and_an_upgrade(
    tmp_path: Path, runtime: Path, taskforce: Taskforce
) -> None:
    conf = tmp_path / "taskforce.conf"
    held = {"sockets": {"http": "127.0.0.1:0"}, "count": 2}
    write_config(conf, {"web": web_task(**held)}, settings=SETTINGS)
    taskforce.start("-f", str(conf))
    first = wait_for(settled(runtime, 2, set()), what="two servers")
    [sock] = status(runtime)["sockets"]
    host, _, port = sock["address"].rpartition(":")
    run = taskforce.run
    with Clients((host, int(port))) as clients:
        # A rolling restart: a new process beside each old one, one at a time.
        assert run("restart", "web").returncode == 0
        rolled = wait_for(settled(runtime, 2, first), what="a rolling restart")
        clients.served_by(rolled)
        # A reload that changes the task (its environment): rolled the same way.
        write_config(conf, {"web": web_task(version="2", **held)}, settings=SETTINGS)
        assert run("reload").returncode == 0
        reloaded = wait_for(settled(runtime, 2, rolled), what="a roll after the reload")
        clients.served_by(reloaded)
        # taskforce re-executes itself: the processes and the socket stay.
        assert run("upgrade").returncode == 0
        taskforce.wait_log("upgrade: took over 2 running process(es)")
        assert pids(runtime) == reloaded
        clients.progressed()
        # The new image passes on the socket it took over.
        assert run("restart", "web").returncode == 0
        upgraded = wait_for(settled(runtime, 2, reloaded), what="a roll after the upgrade")
        clients.served_by(upgraded)
        # One process that cannot run twice: stopped, then started; the socket queues the
        # connections meanwhile.
        assert run("scale", "web", "1").returncode == 0
        single = wait_for(settled(runtime, 1, set()), what="one server")
        assert run("restart", "web").returncode == 0
        restarted = wait_for(settled(runtime, 1, single | upgraded), what="a plain restart")
        clients.served_by(restarted)
    assert clients.failures == []
    assert clients.pids & first  # and every later generation answered (served_by)
    assert clients.answered > 300
    log = taskforce.log()
    assert log.count("listening on 127.0.0.1:") == 1  # bound once, held throughout


def test_the_control_a_task_binding_its_own_socket_refuses_connections_on_restart(
    tmp_path: Path, runtime: Path, taskforce: Taskforce
) -> None:
    with socket.socket() as probe:  # a free port for the server to bind itself
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf = tmp_path / "taskforce.conf"
    write_config(conf, {"web": web_task(args=[f"127.0.0.1:{port}"])}, settings=SETTINGS)
    taskforce.start("-f", str(conf))
    wait_for(settled(runtime, 1, set()), what="the server")
    clients = Clients(("127.0.0.1", port))
    with clients:
        for _ in range(5):  # between the old process's exit and the new one's bind
            before = pids(runtime)
            assert taskforce.run("restart", "web").returncode == 0
            wait_for(settled(runtime, 1, before), what="a restart")
            clients.progressed(10)
            if clients.failures:
                break
    assert clients.failures, "connections should have been refused during the restarts"
    assert any("Connection refused" in f or "reset" in f for f in clients.failures)


EXAMPLES = Path(__file__).parent.parent.parent / "examples"


def test_the_example_serves_through_its_held_socket_and_rolls(
    tmp_path: Path, runtime: Path, taskforce: Taskforce
) -> None:
    # The example as written, but on a port of the kernel's choosing and run from a copy.
    shutil.copytree(EXAMPLES / "bin", tmp_path / "bin", symlinks=True)
    text = (EXAMPLES / "zero-downtime.conf").read_text()
    assert '"127.0.0.1:8080"' in text
    conf = tmp_path / "zero-downtime.conf"
    conf.write_text(text.replace('"127.0.0.1:8080"', '"127.0.0.1:0"'))
    taskforce.env["PATH"] = f"{Path(sys.executable).parent}:{taskforce.env['PATH']}"
    taskforce.start("-f", str(conf), cwd=tmp_path)
    first = wait_for(settled(runtime, 3, set(), task="hello"), what="three hello servers")
    [sock] = status(runtime, "hello")["sockets"]
    host, _, port = sock["address"].rpartition(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert b"hello from version 1, pid" in conn.makefile("rb").read()
    assert taskforce.run("restart", "hello").returncode == 0
    wait_for(settled(runtime, 3, first, task="hello"), what="a rolling restart")
    assert "rolling restart" in taskforce.log()
