"""Sockets taskforce holds for a task: what a process gets, and how long a socket lives
(restarts and reloads that keep it, a changed definition rebinding it, a removed task
closing it, a bind that fails being a start that fails)."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path
from typing import Any

from support.config import FAST, write_config
from support.probes import Probes, probe_task
from support.runner import Taskforce
from support.wait import wait_for


def socket_of(pid: int, fd: int) -> str:
    """What descriptor `fd` of a task process is ("socket:[inode]")."""
    return os.readlink(f"/proc/{pid}/fd/{fd}")


def replace_config(path: Path, tasks: dict[str, Any]) -> None:
    new = path.with_suffix(".new")
    new.write_text(json.dumps({"settings": FAST, "tasks": tasks}))
    os.replace(new, path)


def accepts(address: tuple[str, int] | str) -> bool:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.settimeout(5)
        try:
            probe.connect(address)
        except OSError:
            return False
    return True


def bound_port(taskforce: Taskforce, task: str, name: str) -> int:
    log = taskforce.wait_log(f"{task}: listening on 127.0.0.1:")
    line = next(line for line in log.splitlines() if f"(socket {name})" in line)
    return int(line.split("listening on 127.0.0.1:")[1].split()[0])


def test_every_process_gets_the_sockets_from_3_the_systemd_way(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    unix = tmp_path / "web.sock"
    sockets = {"http": "127.0.0.1:0", "ctl": {"listen": str(unix), "mode": "0640"}}
    conf = tmp_path / "tf.conf"
    write_config(conf, {"web": probe_task(count=2, sockets=sockets)}, settings=FAST)
    taskforce.start("-f", str(conf))
    records = probes.wait(2, task="web")
    for record in records:
        env = record["env"]
        assert (env["LISTEN_FDS"], env["LISTEN_FDNAMES"]) == ("2", "http:ctl")
        assert env["LISTEN_PID"] == str(record["pid"])
    # Both processes hold the very same two sockets.
    first, second = (r["pid"] for r in records)
    assert socket_of(first, 3) == socket_of(second, 3) != socket_of(first, 4)
    assert socket_of(first, 4) == socket_of(second, 4)
    assert stat.S_IMODE(unix.stat().st_mode) == 0o640 and unix.is_socket()
    port = bound_port(taskforce, "web", "http")
    assert accepts(("127.0.0.1", port)) and accepts(str(unix))


def test_a_socket_lives_as_long_as_its_definition(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    unix = tmp_path / "other.sock"
    tasks: dict[str, Any] = {
        "web": probe_task(sockets={"http": "127.0.0.1:0"}),
        "other": probe_task(sockets={"ctl": str(unix)}),
    }
    conf = tmp_path / "tf.conf"
    write_config(conf, tasks, settings=FAST)
    taskforce.start("-f", str(conf))
    [web] = probes.wait(1, task="web")
    held = socket_of(web["pid"], 3)
    port = bound_port(taskforce, "web", "http")
    # A reload that changes the task but not its socket: a new process, the same socket.
    tasks["web"] = probe_task("--changed", sockets={"http": "127.0.0.1:0"})
    replace_config(conf, tasks)
    new = wait_for(lambda: probes.pids("web") - {web["pid"]}, what="web restarted")
    (pid,) = new
    assert socket_of(pid, 3) == held
    # A changed definition: a socket bound anew, the old one closed.
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        other_port = spare.getsockname()[1]
    tasks["web"] = probe_task("--changed", sockets={"http": f"127.0.0.1:{other_port}"})
    replace_config(conf, tasks)
    rebound = wait_for(lambda: probes.pids("web") - new, what="web restarted again")
    (pid,) = rebound
    assert socket_of(pid, 3) != held
    assert accepts(("127.0.0.1", other_port))
    wait_for(lambda: not accepts(("127.0.0.1", port)), what="the old socket closed")
    # A removed task: its socket closed, its file removed.
    assert unix.is_socket()
    del tasks["other"]
    replace_config(conf, tasks)
    wait_for(lambda: not unix.exists(), what="the unix socket removed")
    assert "other: socket ctl" in taskforce.wait_log("other: socket ctl")


def test_a_socket_that_cannot_be_bound_is_a_start_that_fails(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        conf = tmp_path / "tf.conf"
        tasks = {
            "web": probe_task(sockets={"http": f"127.0.0.1:{port}"}),
            "fine": probe_task(),
        }
        write_config(conf, tasks, settings=FAST)
        taskforce.start("-f", str(conf))
        probes.wait(1, task="fine")
        log = taskforce.wait_log(f"cannot listen on 127.0.0.1:{port} (socket http)")
        assert "Address already in use" in log
        assert "Traceback" not in log
        assert probes.records(task="web") == []
    # Once the address is free, a retry binds it.
    probes.wait(1, task="web")
    assert accepts(("127.0.0.1", port))
