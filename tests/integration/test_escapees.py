"""What a task's processes leave outside their process group is stopped with them."""

from __future__ import annotations

import sys
from pathlib import Path

from support.config import write_config
from support.probes import Probes, probe_task
from support.procfs import pid_alive
from support.runner import Taskforce
from support.wait import wait_for

# Forks a grandchild that daemonizes (setsid + fork, ignoring SIGTERM), records its pid,
# then waits: stopping the task must not leave the grandchild behind.
ESCAPE = r"""
import os, signal, sys, time
marker = sys.argv[1]
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        open(marker, "w").write(str(os.getpid()))
        time.sleep(3600)
    os._exit(0)
while True:
    signal.pause()
"""


def test_daemonized_grandchildren_are_stopped_on_stop_and_on_restart(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    marker = tmp_path / "grandchild"
    task = {"commands": {"start": [sys.executable, "-c", ESCAPE, str(marker)]}}
    conf = write_config(tmp_path / "tf.conf", {"esc": task}, settings={"stop_timeout": 1})
    taskforce.start("-f", str(conf))
    wait_for(marker.exists, what="grandchild")
    first = int(wait_for(lambda: marker.read_text(), what="grandchild pid"))
    marker.unlink()
    # A restart (the leader is killed): the old grandchild goes, a new one comes.
    leader = int(
        taskforce.wait_log("esc[0]: started pid").split("esc[0]: started pid ")[1].split()[0]
    )
    import os
    import signal

    os.kill(leader, signal.SIGKILL)
    wait_for(lambda: not pid_alive(first), what="old grandchild stopped (SIGKILL after timeout)")
    wait_for(marker.exists, what="new grandchild")
    second = int(wait_for(lambda: marker.read_text(), what="grandchild pid"))
    assert taskforce.stop() == 0
    assert not pid_alive(second)
    # Killed with the task's cgroup where it has one, else found by its Task_* variables.
    log = taskforce.log()
    assert "left in its cgroup" in log or "left behind by pid" in log


def test_unrelated_processes_are_never_swept(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    conf = write_config(
        tmp_path / "tf.conf",
        {"a": probe_task("--exit-after", "0.2")},
        settings={"restart": {"min_uptime": 0.1}},
    )
    import subprocess

    bystander = subprocess.Popen(["sleep", "300"])
    try:
        taskforce.start("-f", str(conf))
        probes.wait(3, task="a")
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
