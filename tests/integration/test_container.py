"""taskforce as a container's init: --exit-with TASK ends taskforce with its main task's
status, and as PID 1 of a PID namespace (`unshare --pid --fork --mount-proc`, as a
container runtime starts it; root only) it reaps every orphan, passes no signal on to its
tasks, and on SIGTERM stops every task (SIGKILL after stop_timeout) and exits 0.

Pids inside the namespace differ from ours: a probe records its own (namespace) pid, and
the tests find its pid here through the NSpid line of /proc/PID/status.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from support.config import write_config
from support.probes import Probes, probe_task
from support.procfs import parent_pid, processes_with_marker, zombies_of
from support.runner import Taskforce
from support.wait import wait_for

SETTINGS: dict[str, Any] = {
    "http": [],
    "stop_timeout": 1,
    "restart": {"min_uptime": 0.5, "initial_delay": 0.1, "factor": 2, "max_delay": 1},
}


def config(tmp_path: Path, tasks: dict[str, Any]) -> str:
    return str(write_config(tmp_path / "tf.conf", tasks, settings=SETTINGS))


# ----- --exit-with, in the plain process tree ---------------------------------------------


def test_exit_with_a_task_ends_with_its_exit_code(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    conf = config(
        tmp_path,
        {
            "main": probe_task("--exit-after", "0.5", "--exit-code", "7"),
            "sidecar": probe_task(),
        },
    )
    taskforce.start("-p", "-", "-f", conf, "--exit-with", "main")
    assert taskforce.proc is not None
    assert taskforce.proc.wait(30) == 7
    assert probes.records("term", task="sidecar")  # stopped its way, not left behind
    assert len(probes.records("start", task="main")) == 1  # not restarted first
    assert not processes_with_marker(taskforce.marker)


def test_exit_with_a_task_killed_by_a_signal_is_128_plus_it(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    conf = config(tmp_path, {"main": probe_task(), "sidecar": probe_task()})
    taskforce.start("-p", "-", "-f", conf, "--exit-with", "main")
    (main,) = probes.wait(1, task="main")
    probes.wait(1, task="sidecar")
    os.kill(main["pid"], signal.SIGKILL)
    assert taskforce.proc is not None
    assert taskforce.proc.wait(30) == 128 + signal.SIGKILL


def test_sigterm_with_exit_with_is_a_normal_stop(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    conf = config(tmp_path, {"main": probe_task("--exit-code", "5")})
    taskforce.start("-p", "-", "-f", conf, "--exit-with", "main")
    probes.wait(1, task="main")
    # main exits because taskforce stopped it: that is no reason to take its status.
    assert taskforce.stop() == 0


def test_exit_with_an_unknown_task_cannot_start(tmp_path: Path, taskforce: Taskforce) -> None:
    conf = config(tmp_path, {"web": probe_task()})
    result = taskforce.run("-e", "-p", "-", "-f", conf, "--exit-with", "mian")
    assert result.returncode == 3
    assert "--exit-with: no task named 'mian'" in result.stderr
    assert "tasks in scope: web" in result.stderr and "Traceback" not in result.stderr
    assert not processes_with_marker(taskforce.marker)


# ----- PID 1 of a PID namespace -----------------------------------------------------------


@cache
def _unshare() -> str | None:
    """unshare, when it can make a PID namespace here (root, and not forbidden)."""
    program = shutil.which("unshare")
    if program is None or os.geteuid() != 0:
        return None
    probe = subprocess.run(
        [program, "--pid", "--fork", "--mount-proc", "true"], capture_output=True, timeout=30
    )
    return program if probe.returncode == 0 else None


def _ns_pids(pid: int) -> list[int]:
    """A process's pids from the outermost namespace in, as /proc/PID/status has them."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return [int(p) for p in line.split()[1:]]
    except OSError:
        pass
    return []


def _children(pid: int) -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and parent_pid(int(p)) == pid]


class Init:
    """taskforce started as PID 1 of a new PID namespace."""

    def __init__(self, taskforce: Taskforce, *args: str) -> None:
        unshare = _unshare()
        if unshare is None:
            pytest.skip("cannot make a PID namespace here (needs root and unshare)")
        self.taskforce = taskforce
        self.proc = taskforce.spawn(
            [unshare, "--pid", "--fork", "--mount-proc", *taskforce.command("-e", "-v", *args)]
        )
        self.pid: int = wait_for(
            lambda: next(iter(_children(self.proc.pid)), None), what="taskforce in its namespace"
        )
        assert _ns_pids(self.pid)[-1] == 1

    def host_pid(self, ns_pid: int) -> int | None:
        """Our pid for a process of the namespace (found among the test's processes)."""
        for pid in [*processes_with_marker(self.taskforce.marker), self.pid]:
            pids = _ns_pids(pid)
            if len(pids) > 1 and pids[-1] == ns_pid:
                return pid
        return None


def test_pid_1_reaps_orphans_and_forwards_no_signal(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    conf = config(
        tmp_path,
        {"parent": probe_task("--orphan", "--orphan-life", "2"), "other": probe_task()},
    )
    init = Init(taskforce, "-p", "-", "-f", conf)
    (parent,) = probes.wait(1, task="parent")
    probes.wait(1, task="other")
    assert parent["ppid"] == 1  # started by PID 1 (it sees itself as in its namespace)

    # The orphan's parent left at once: it is PID 1's now, and reaped when it exits.
    orphan = init.host_pid(parent["orphan"])
    assert orphan is not None
    assert parent_pid(orphan) == init.pid
    wait_for(lambda: parent_pid(orphan) is None, what="the orphan to exit and be reaped")
    assert not zombies_of(init.pid)

    # A signal for taskforce is not its tasks' (SIGUSR1 reopens taskforce's log files).
    os.kill(init.pid, signal.SIGUSR1)
    taskforce.wait_log("SIGUSR1 received")
    assert not probes.records("usr1")

    assert init.proc.poll() is None
    os.kill(init.pid, signal.SIGTERM)  # what `docker stop` sends PID 1
    assert init.proc.wait(30) == 0
    assert probes.records("term", task="other")
    assert not processes_with_marker(taskforce.marker)


def test_pid_1_kills_what_ignores_sigterm_after_stop_timeout(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    conf = config(tmp_path, {"stubborn": probe_task("--ignore-term"), "polite": probe_task()})
    init = Init(taskforce, "-p", "-", "-f", conf)
    probes.wait(1, task="stubborn")
    probes.wait(1, task="polite")
    os.kill(init.pid, signal.SIGTERM)
    assert init.proc.wait(30) == 0  # stop_timeout is 1 s: SIGKILL, then a clean exit
    assert "SIGKILL" in taskforce.log()
    assert not processes_with_marker(taskforce.marker)


def test_pid_1_exits_with_its_main_task(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    conf = config(
        tmp_path,
        {
            "main": probe_task("--exit-after", "0.5", "--exit-code", "42"),
            "sidecar": probe_task(),
        },
    )
    init = Init(taskforce, "-p", "-", "-f", conf, "--exit-with", "main")
    # unshare exits with the status of its child, PID 1: the container's exit status.
    assert init.proc.wait(30) == 42
    assert probes.records("term", task="sidecar")
    assert not processes_with_marker(taskforce.marker)


# ----- the Dockerfile ---------------------------------------------------------------------


def test_the_dockerfile_runs_taskforce_as_init_unprivileged() -> None:
    import json

    lines = (Path(__file__).parents[2] / "Dockerfile").read_text().splitlines()
    instructions = [line.split(None, 1) for line in lines if line and not line[0].isspace()]
    instructions = [i for i in instructions if i[0].isupper() and len(i) == 2]
    final = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    image = instructions[final:]
    assert image[0][1].startswith("python:3.11-slim")
    users = [rest for word, rest in image if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    (entrypoint,) = [json.loads(rest) for word, rest in image if word == "ENTRYPOINT"]
    assert entrypoint[0] == "taskforce" and "-e" in entrypoint  # no syslog in a container
    assert entrypoint[entrypoint.index("-p") + 1] == "-"
