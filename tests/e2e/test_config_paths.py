"""Configuration and roles paths that are not regular files: FIFOs, devices, huge files.

Each is refused with a message naming the path, at start (exit 3, or 1 with -C) and on a
live reload (the running configuration stays), and never blocks or bloats taskforce.
/dev/null is the one exception: it reads as an empty file, once, and is not watched.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from support.config import write_config
from support.probes import Probes, probe_task
from support.procfs import pid_alive
from support.runner import Taskforce
from support.wait import wait_for

FAST: dict[str, Any] = {"stop_timeout": 1, "restart": {"min_uptime": 0.2, "initial_delay": 0.1}}
# Before the fix a read of /dev/zero grew without bound: a bounded address space turns
# that into a failure of the test instead of a machine out of memory.
ADDRESS_SPACE = 1024**3


def _configure(tmp_path: Path, tasks: dict[str, Any]) -> Path:
    http = {"listen": str(tmp_path / "tf.sock"), "allow_control": True}
    return write_config(tmp_path / "tf.conf", tasks, settings={**FAST, "http": http})


def _bounded_run(taskforce: Taskforce, *args: str) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    return subprocess.run(
        taskforce.command(*args),
        env=taskforce.env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        preexec_fn=limit,  # only setrlimit between fork and exec
    )


def _special(tmp_path: Path, kind: str) -> str:
    if kind == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path)
        return str(path)
    if kind == "zero":
        return "/dev/zero"
    path = tmp_path / "huge"
    with open(path, "wb") as f:  # sparse: no disk used
        f.truncate(64 * 1024 * 1024 + 1)
    return str(path)


_REASONS = {
    "fifo": "is a FIFO, not a regular file",
    "zero": "is a character device, not a regular file",
    "huge": "is larger than 64 MiB",
}


@pytest.mark.parametrize("kind", ["fifo", "zero", "huge"])
@pytest.mark.parametrize("which", ["config", "roles"])
def test_a_special_path_is_refused_at_start(
    tmp_path: Path, taskforce: Taskforce, kind: str, which: str
) -> None:
    special = _special(tmp_path, kind)
    conf = str(_configure(tmp_path, {"a": probe_task()}))
    paths = ["-f", special] if which == "config" else ["-f", conf, "-r", special]
    started = _bounded_run(taskforce, "-e", "-p", "-", *paths)
    assert started.returncode == 3, started.stderr
    assert f"{special}: cannot read the file: {_REASONS[kind]}" in started.stderr
    assert "Traceback" not in started.stderr
    checked = _bounded_run(taskforce, "-C", *paths)
    assert checked.returncode == 1, checked.stderr
    assert f"{special}: cannot read the file: {_REASONS[kind]}" in checked.stderr


def _api_pids(taskforce: Taskforce, tmp_path: Path, task: str) -> list[int]:
    result = taskforce.run("status", "--json", "--server", str(tmp_path / "tf.sock"), timeout=30)
    assert result.returncode == 0, result.stderr
    tasks = json.loads(result.stdout)
    return [p["pid"] for p in tasks[task]["processes"] if p["pid"] is not None]


@pytest.mark.parametrize("which", ["config", "roles"])
def test_a_fifo_on_reload_is_refused_and_the_supervisor_keeps_working(
    tmp_path: Path, taskforce: Taskforce, probes: Probes, which: str
) -> None:
    roles = tmp_path / "roles"
    roles.write_text("")
    conf = _configure(tmp_path, {"a": probe_task()})
    taskforce.start("-p", "-", "-f", str(conf), "-r", str(roles))
    (first,) = probes.wait(1)
    wait_for(lambda: (tmp_path / "tf.sock").exists(), what="the control socket")
    replaced = conf if which == "config" else roles
    replaced.unlink()
    os.mkfifo(replaced)
    taskforce.wait_log(f"{replaced}: cannot read the file: is a FIFO, not a regular file")
    taskforce.wait_log("the running configuration stays in force")
    # Still serving, and still supervising: a killed task comes back.
    assert _api_pids(taskforce, tmp_path, "a") == [first["pid"]]
    os.kill(first["pid"], signal.SIGKILL)
    probes.wait(2)
    wait_for(lambda: (p := _api_pids(taskforce, tmp_path, "a")) and p != [first["pid"]])
    assert taskforce.stop() == 0


def test_dev_null_roles_is_read_once_as_empty_and_not_watched(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    trigger = tmp_path / "trigger"
    trigger.write_text("")
    hup = {"type": "file_change", "path": str(trigger), "signal": "HUP"}
    conf = _configure(
        tmp_path, {"common": probe_task(events=[hup]), "web": probe_task(roles=["web"])}
    )
    checked = taskforce.run("-C", "-f", str(conf), "-r", "/dev/null")
    assert checked.returncode == 0, checked.stderr
    taskforce.start("-p", "-", "-f", str(conf), "-r", "/dev/null")
    probes.wait(1, task="common")
    taskforce.wait_log("1 task(s) in scope for roles (none)")
    # Anyone writing to /dev/null (here: this test) is no change of roles.
    for _ in range(20):
        with open("/dev/null", "w") as null:
            null.write("x")
    # A file change after those writes: once it has been acted on, a reload the writes
    # caused would have been logged (it is scheduled as soon as a change is read).
    trigger.write_text("go")
    probes.wait(1, kind="hup", task="common")
    assert "configuration or roles file changed" not in taskforce.log()
    assert pid_alive(taskforce.pid)


@pytest.mark.parametrize("roles", [False, True], ids=["config", "roles"])
def test_fleet_push_refuses_a_fifo_without_waiting_on_it(
    tmp_path: Path, taskforce: Taskforce, roles: bool
) -> None:
    fifo = _special(tmp_path, "fifo")
    # Nothing listens there: the file is refused before etcd is reached.
    url = "etcd://127.0.0.1:9/taskforce/config"
    pushed = taskforce.run("fleet", "push", "--etcd", url, *(["--roles"] if roles else []), fifo)
    assert pushed.returncode == 1, pushed.stderr
    assert f"{fifo}: cannot read the file: is a FIFO, not a regular file" in pushed.stderr
    assert "not pushed" in pushed.stderr
