"""Readiness gates `requires`: each probe kind, and readiness in status."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from support.probes import PROBE, Probes, probe_task
from support.runner import Taskforce

# A server that becomes ready (listens / answers) only after `delay` seconds, then waits.
SERVER = r"""
import os, sys, time, socket, runpy
kind, port, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
time.sleep(delay)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port)); s.listen(8)
open(os.environ["PROBE_DIR"] + "/listening-" + os.environ["Task_name"], "w").close()
while True:
    c, _ = s.accept()
    if kind == "http":
        c.recv(4096); c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
    c.close()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gated(ready: dict[str, Any], first: dict[str, Any]) -> dict[str, Any]:
    first = dict(first, ready=ready)
    return {"first": first, "second": probe_task(requires="first")}


@pytest.mark.parametrize("kind", ["tcp", "http"])
def test_network_probe_gates_requires(kind: str, taskforce: Taskforce, probes: Probes) -> None:
    port = free_port()
    target = f"127.0.0.1:{port}" if kind == "tcp" else f"http://127.0.0.1:{port}/health"
    server = {"commands": {"start": [sys.executable, "-c", SERVER, kind, str(port), "0.5"]}}
    taskforce.start_tasks(gated({kind: target, "interval": 0.05}, server))
    (second,) = probes.wait(1, task="second")
    listening = probes.dir / "listening-first"
    assert listening.exists()
    assert second["time"] >= listening.stat().st_mtime - 0.05
    taskforce.wait_log("first[0]: pid")
    assert "is ready" in taskforce.log()


def test_command_probe_gates_requires(taskforce: Taskforce, probes: Probes, tmp_path: Path) -> None:
    flag = tmp_path / "ready-flag"
    check = [
        sys.executable,
        "-c",
        f"import os, sys; sys.exit(0 if os.path.exists({str(flag)!r}) else 1)",
    ]
    taskforce.start_tasks(gated({"command": check, "interval": 0.05}, probe_task()))
    probes.wait(1, task="first")
    taskforce.wait_log("first[0]: started")
    assert probes.records("start", "second") == []
    flag.write_text("")
    probes.wait(1, task="second")


def test_pidfile_probe_gates_requires(taskforce: Taskforce, probes: Probes, tmp_path: Path) -> None:
    pidfile = tmp_path / "first.pid"
    writer = [
        sys.executable,
        "-c",
        "import os, sys, time, runpy; time.sleep(0.3); "
        f"open({str(pidfile)!r}, 'w').write(str(os.getpid())); "
        f"sys.argv = [{PROBE!r}]; runpy.run_path({PROBE!r}, run_name='__main__')",
    ]
    first = {"commands": {"start": writer}, "pidfile": str(pidfile)}
    taskforce.start_tasks(gated({"pidfile": True, "interval": 0.05}, first))
    (second,) = probes.wait(1, task="second")
    assert second["time"] >= pidfile.stat().st_mtime - 0.05


def test_never_ready_is_restarted_after_the_timeout(taskforce: Taskforce, probes: Probes) -> None:
    never = [sys.executable, "-c", "raise SystemExit(1)"]
    taskforce.start_tasks(gated({"command": never, "interval": 0.05, "timeout": 0.5}, probe_task()))
    probes.wait(2, task="first")
    taskforce.wait_log("not ready 0.5s after it started")
    assert probes.records("start", "second") == []
