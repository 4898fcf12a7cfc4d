"""Limits and cgroups of real task processes, read back from their /proc and cgroup files.

The cgroup tests need a hierarchy taskforce may create cgroups in (root, as on the test
machine: cgroup v1 memory/pids/cpu controllers beside an empty cgroup v2 hierarchy); they
are skipped elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.config import FAST, write_config
from support.procfs import pid_alive, proc_exe
from support.runner import Taskforce
from support.wait import wait_for
from taskforce.core.spec import CgroupLimits
from taskforce.runtime.limits.cgroups import Cgroups, parse_membership

# Double-forks a daemon with an empty environment (nothing of Task_* to find it by) in a
# session of its own, ignoring SIGTERM; its pid goes to argv[1]. Then the task's own
# process waits, or with argv[2] "exit" exits once the daemon is there.
DAEMON = r"""
import os, signal, sys
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with open(sys.argv[1] + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(sys.argv[1] + ".tmp", sys.argv[1])
        os.execve("/bin/sleep", ["sleep", "3600"], {})
    os._exit(0)
if sys.argv[2] == "exit":
    # Not before the daemon is out of this process group, which goes with the task.
    while not os.path.exists(sys.argv[1]):
        signal.sigtimedwait([signal.SIGCHLD], 0.01)
    sys.exit(0)
while True:
    signal.pause()
"""


def usable() -> bool:
    """Whether taskforce would get cgroups here."""
    return os.geteuid() == 0 and Cgroups.discover(None).available


needs_cgroups = pytest.mark.skipif(not usable(), reason="no cgroup hierarchy to write to")


@pytest.fixture(autouse=True)
def _no_leftover_base() -> Iterator[None]:
    # Cgroups.discover(None) above made a directory named after this pid: not a leak.
    yield
    with contextlib.suppress(Exception):
        Cgroups.discover(None).remove_all()


@contextlib.contextmanager
def daemon_killed(marker: Path) -> Iterator[None]:
    """Kill the daemon whose pid is in `marker` at the end, if a failure left it: its
    cleared environment hides it from the fixture's clean-up."""
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(marker.read_text()), signal.SIGKILL)


def started_pid(taskforce: Taskforce, label: str, nth: int = 1) -> int:
    needle = f"{label}: started pid "
    log = wait_for(lambda: taskforce.log().count(needle) >= nth and taskforce.log(), what=needle)
    return int(log.split(needle)[nth].split()[0])


def tasks_status(taskforce: Taskforce) -> dict[str, Any]:
    done = taskforce.run("status", "--json")
    assert done.returncode in (0, 3), done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def proc_limits(pid: int) -> dict[str, list[str]]:
    with open(f"/proc/{pid}/limits") as f:
        return {line[:26].strip(): line[26:].split()[:2] for line in f.read().splitlines()[1:]}


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def test_limits_from_the_configuration_are_read_back_from_proc(
    taskforce: Taskforce, tmp_path: Path
) -> None:
    task = {
        "commands": {"start": ["sleep", "3600"]},
        "limits": {"nofile": [256, 512], "core": 0, "stack": "8M", "nproc": [1000, 2000]},
        "umask": "0027",
        "nice": 5,
        "oom_score_adj": 300,
    }
    conf = write_config(tmp_path / "tf.conf", {"lim": task}, settings=FAST)
    taskforce.start("-f", str(conf))
    pid = started_pid(taskforce, "lim[0]")
    limits = proc_limits(pid)
    assert limits["Max open files"] == ["256", "512"]
    assert limits["Max core file size"] == ["0", "0"]
    assert limits["Max stack size"] == [str(8 << 20), str(8 << 20)]
    assert limits["Max processes"] == ["1000", "2000"]
    status = dict(line.split(":\t", 1) for line in read(f"/proc/{pid}/status").splitlines())
    assert status["Umask"].strip() == "0027"
    assert read(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()[16] == "5"
    assert read(f"/proc/{pid}/oom_score_adj").strip() == "300"
    assert taskforce.stop() == 0


@needs_cgroups
def test_each_instance_runs_in_its_own_cgroup_with_its_limits(
    taskforce: Taskforce, tmp_path: Path
) -> None:
    task = {
        "commands": {"start": ["sleep", "3600"]},
        "count": 2,
        "limits": {"memory": "64M", "pids": 20, "cpu": 0.5},
    }
    conf = write_config(tmp_path / "tf.conf", {"box": task}, settings=FAST)
    taskforce.start("-f", str(conf))
    first, second = started_pid(taskforce, "box[0]"), started_pid(taskforce, "box[1]")
    groups = [parse_membership(read(f"/proc/{pid}/cgroup")) for pid in (first, second)]
    for slot, membership in enumerate(groups):
        for hierarchy, path in membership.items():
            if hierarchy in ("", "memory", "pids", "cpu"):  # where it has limits
                assert path.endswith(f"/box@{slot}"), (hierarchy, path)
    mounts = {h: m for h, m in _v1_mounts().items() if h in groups[0]}
    if "memory" in mounts:
        limit = read(f"{mounts['memory']}{groups[0]['memory']}/memory.limit_in_bytes")
        assert int(limit) == 64 << 20
    if "pids" in mounts:
        assert read(f"{mounts['pids']}{groups[0]['pids']}/pids.max").strip() == "20"
    if "cpu" in mounts:
        assert read(f"{mounts['cpu']}{groups[0]['cpu']}/cpu.cfs_quota_us").strip() == "50000"
    entry = wait_for(
        lambda: (p := tasks_status(taskforce)["box"]["processes"][0]).get("cgroup") and p,
        what="cgroup usage in status",
    )
    assert entry["cgroup"]["processes"] == 1
    assert taskforce.stop() == 0
    # Gone with taskforce: its cgroups too.
    for membership in groups:
        for hierarchy, path in membership.items():
            if hierarchy in mounts and "@" in path:
                assert not os.path.exists(f"{mounts[hierarchy]}{path}")


def _v1_mounts() -> dict[str, str]:
    found = {}
    for line in read("/proc/self/mountinfo").splitlines():
        fields = line.split()
        dash = fields.index("-")
        if fields[dash + 1] == "cgroup":
            for option in fields[dash + 3].split(","):
                if option in ("memory", "pids", "cpu", "cpuacct"):
                    # The path in /proc/PID/cgroup is from the hierarchy's root.
                    found[option] = fields[4] if fields[3] == "/" else fields[4][: -len(fields[3])]
    return found


@needs_cgroups
@pytest.mark.parametrize("leader", ["waits", "exits"])
def test_a_daemon_with_a_cleared_environment_is_stopped_through_its_cgroup(
    taskforce: Taskforce, tmp_path: Path, leader: str
) -> None:
    marker = tmp_path / "daemon.pid"
    control = "wait" if leader == "waits" else "once"
    argv = [sys.executable, "-c", DAEMON, str(marker), "exit" if leader == "exits" else "wait"]
    task = {"commands": {"start": argv}, "control": control}
    conf = write_config(tmp_path / "tf.conf", {"d": task}, settings=FAST)
    with daemon_killed(marker):
        taskforce.start("-f", str(conf))
        daemon = int(wait_for(lambda: marker.exists() and marker.read_text(), what="daemon"))
        # It names itself just before its exec: read its environment after that.
        sleep = os.path.realpath("/bin/sleep")
        wait_for(lambda: proc_exe(daemon) == sleep, what="the daemon to exec sleep")
        environ = read(f"/proc/{daemon}/environ")
        assert environ == ""  # nothing for the Task_* sweep to find it by
        if leader == "exits":
            taskforce.wait_log("d[0]: pid")  # the once task's own process is gone...
            assert pid_alive(daemon)  # ...its daemon lives on, in its cgroup
        assert taskforce.stop() == 0
        assert not pid_alive(daemon)


@needs_cgroups
def test_a_memory_limit_hit_is_reported_as_an_oom_kill(
    taskforce: Taskforce, tmp_path: Path
) -> None:
    hog = "x = []\nwhile True:\n    x.append(bytearray(1 << 20))\n"
    task = {"commands": {"start": [sys.executable, "-c", hog]}, "limits": {"memory": "48M"}}
    settings = dict(FAST, restart={"min_uptime": 0.5, "initial_delay": 30})
    conf = write_config(tmp_path / "tf.conf", {"hog": task}, settings=settings)
    taskforce.start("-f", str(conf))
    log = taskforce.wait_log("out of memory")
    assert "killed by SIGKILL" in log.split("out of memory")[0].splitlines()[-1]
    process = tasks_status(taskforce)["hog"]["processes"][0]
    assert process["exit_cause"].startswith("out of memory: its cgroup's memory limit of 48M")
    assert "out of memory" in process["exit"]
    assert taskforce.stop() == 0


@needs_cgroups
def test_memory_restart_restarts_an_instance_that_grows_past_it(
    taskforce: Taskforce, tmp_path: Path
) -> None:
    # Grows to about 80M, then holds it.
    grow = (
        "import time\nx = []\nfor _ in range(80):\n    x.append(bytearray(1 << 20))\n"
        "    time.sleep(0.01)\ntime.sleep(3600)\n"
    )
    task = {"commands": {"start": [sys.executable, "-c", grow]}, "memory_restart": "40M"}
    conf = write_config(tmp_path / "tf.conf", {"grow": task}, settings=FAST)
    taskforce.start("-f", str(conf))
    first = started_pid(taskforce, "grow[0]")
    log = taskforce.wait_log("passed memory_restart 40.0M")
    assert f"stopping pid {first}" in log
    second = started_pid(taskforce, "grow[0]", nth=2)
    assert second != first
    assert taskforce.stop() == 0


@needs_cgroups
def test_after_sigkill_the_next_taskforce_stops_the_daemon_through_the_same_cgroup(
    taskforce: Taskforce, tmp_path: Path
) -> None:
    marker = tmp_path / "daemon.pid"
    task = {"commands": {"start": [sys.executable, "-c", DAEMON, str(marker), "wait"]}}
    conf = write_config(tmp_path / "tf.conf", {"d": task}, settings=FAST)
    with daemon_killed(marker):
        taskforce.start("-f", str(conf))
        daemon = int(wait_for(lambda: marker.exists() and marker.read_text(), what="daemon"))
        leader = started_pid(taskforce, "d[0]")
        taskforce.stop(signal.SIGKILL)
        assert pid_alive(leader) and pid_alive(daemon)
        taskforce.start("-f", str(conf))
        taskforce.wait_log(f"found pid {leader} still running")
        assert taskforce.stop() == 0
        assert not pid_alive(daemon)
        assert not pid_alive(leader)


def test_without_a_hierarchy_one_line_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("22 1 0:21 / /proc rw - proc proc rw\n")
    membership = tmp_path / "cgroup"
    membership.write_text("0::/\n")
    with caplog.at_level("INFO", logger="taskforce"):
        cgroups = Cgroups.discover(None, str(mountinfo), str(membership))
    assert not cgroups.available
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "without cgroups of their own" in lines[0]
    assert cgroups.usage("t", 0) is None


@needs_cgroups
def test_an_upgrade_keeps_each_process_in_its_cgroup_with_its_limits(
    taskforce: Taskforce, tmp_path: Path
) -> None:
    marker = tmp_path / "daemon.pid"
    task = {
        "commands": {"start": [sys.executable, "-c", DAEMON, str(marker), "wait"]},
        "limits": {"nofile": 300, "pids": 50},
        "nice": 3,
    }
    pidfile = tmp_path / "tf.pid"
    conf = write_config(tmp_path / "tf.conf", {"d": task}, settings=FAST)
    with daemon_killed(marker):
        taskforce.start("-p", str(pidfile), "-f", str(conf))
        daemon = int(wait_for(lambda: marker.exists() and marker.read_text(), what="daemon"))
        leader = started_pid(taskforce, "d[0]")
        group = read(f"/proc/{leader}/cgroup")
        result = taskforce.run("upgrade", "-p", str(pidfile))
        assert result.returncode == 0, result.stderr
        taskforce.wait_log("took over 1 running process(es)")
        # The new image's signal handlers are in place once it has looked for cgroups.
        wait_for(lambda: taskforce.log().count("cgroup of its own") == 2, what="new image")
        assert taskforce.log().count("d[0]: started pid") == 1  # not restarted
        assert read(f"/proc/{leader}/cgroup") == group
        assert taskforce.stop() == 0
        assert not pid_alive(daemon)


def _v1_only(tmp_path: Path) -> Path:
    """This process's mountinfo without the cgroup v2 mount: a host with v1 alone."""
    lines = [
        line for line in read("/proc/self/mountinfo").splitlines() if " - cgroup2 " not in line
    ]
    if not any(" - cgroup " in line and "freezer" in line for line in lines):
        pytest.skip("no cgroup v1 freezer")
    path = tmp_path / "mountinfo"
    path.write_text("\n".join(lines) + "\n")
    return path


@needs_cgroups
def test_without_cgroup_v2_a_v1_freezer_cgroup_is_frozen_and_killed(tmp_path: Path) -> None:
    from taskforce.core.spec import LaunchSpec
    from taskforce.runtime.processes import spawn as process

    cgroups = Cgroups.discover(str(tmp_path / "records"), str(_v1_only(tmp_path)))
    marker = tmp_path / "daemon.pid"
    try:
        assert {"freezer", "pids"} <= {c for h in cgroups.hierarchies for c in h.controllers}
        assert all(h.version == 1 for h in cgroups.hierarchies)
        procs = cgroups.prepare("d", 0, CgroupLimits())
        argv = (sys.executable, "-c", DAEMON, str(marker), "wait")
        launch = LaunchSpec(sys.executable, argv, (("PATH", "/usr/bin:/bin"),))
        with open(os.devnull, "rb") as null:
            job = process.prepare(
                launch, stdin=null.fileno(), stdout=null.fileno(), stderr=null.fileno(),
                cgroups=procs,
            )  # fmt: skip
            leader = job().pid
        with daemon_killed(marker):
            daemon = int(wait_for(lambda: marker.exists() and marker.read_text(), what="daemon"))
            # The daemon's parent, which forked it and exits, may be a moment behind it.
            wait_for(
                lambda: set(cgroups.members("d", 0)) == {leader, daemon},
                what="the leader and the daemon alone in the cgroup",
            )
            assert cgroups.kill("d", 0) == 2
            os.waitpid(leader, 0)
            wait_for(lambda: not pid_alive(daemon), what="the daemon killed")
            wait_for(lambda: not cgroups.members("d", 0), what="an empty cgroup")
    finally:
        cgroups.remove_all()
    assert not any(os.path.exists(h.base) for h in cgroups.hierarchies)


# Counts the SIGTERMs it gets, one line each, in argv[1]; lingers 0.5 s after the first
# (as a daemon finishing its requests would), then exits.
TERM_COUNTER = r"""
import os, signal, sys, time
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
os.write(fd, b"up\n")
signal.sigwait([signal.SIGTERM])
os.write(fd, b"TERM\n")
end = time.monotonic() + 0.5
while (left := end - time.monotonic()) > 0:
    if signal.sigtimedwait([signal.SIGTERM], left) is not None:
        os.write(fd, b"TERM\n")
sys.exit(0)
"""


@needs_cgroups
def test_a_stop_signals_each_process_of_the_group_once(
    taskforce: Taskforce, tmp_path: Path
) -> None:
    # The stop signal goes to the process group, and to the cgroup's members outside it;
    # a daemon for which a second SIGTERM means "now, without finishing" (as many do)
    # must not get it twice.
    counted = tmp_path / "terms"
    task = {"commands": {"start": [sys.executable, "-c", TERM_COUNTER, str(counted)]}}
    conf = write_config(tmp_path / "tf.conf", {"t": task}, settings=FAST | {"stop_timeout": 5})
    taskforce.start("-f", str(conf))
    wait_for(lambda: counted.exists() and "up" in counted.read_text(), what="task up")
    assert taskforce.stop() == 0
    assert counted.read_text().split() == ["up", "TERM"]
    assert "t[0]: pid" in taskforce.log() and "exited 0" in taskforce.log()
