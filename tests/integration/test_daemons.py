"""Processes that outlive us: nowait and adopt, orphans, pidfiles, self-restart."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from support.config import FAST, write_config
from support.probes import Probes, probe_task
from support.procfs import pid_alive
from support.runner import Taskforce
from support.wait import wait_for


def daemon_task(
    tmp_path: Path,
    name: str,
    control: str = "nowait",
    check: list[str] | None = None,
    **keys: Any,
) -> dict[str, Any]:
    """A probe that daemonizes, found through its pidfile; checked with `check`."""
    pidfile = str(tmp_path / f"{name}.pid")
    task = probe_task("--daemonize", pidfile, control=control, pidfile=pidfile, **keys)
    if check is not None:
        task["commands"]["check"] = check
    return task


def test_nowait_daemon_is_found_through_its_pidfile_and_restarted(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    conf = write_config(tmp_path / "tf.conf", {"d": daemon_task(tmp_path, "d")}, settings=FAST)
    taskforce.start("-f", str(conf))
    (first,) = probes.wait(1, task="d")
    taskforce.wait_log(f"daemon pid {first['pid']} found")
    os.kill(first["pid"], signal.SIGKILL)
    wait_for(lambda: probes.pids("d") - {first["pid"]}, what="daemon restarted")
    assert taskforce.stop() == 0
    assert not probes.pids("d")


def test_failed_check_command_restarts_and_hanging_check_is_killed(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    flag = tmp_path / "healthy"
    flag.write_text("")
    check = [
        sys.executable,
        "-c",
        f"import os, sys; sys.exit(0 if os.path.exists({str(flag)!r}) else 1)",
    ]
    hang = [sys.executable, "-c", "import time; time.sleep(3600)"]
    tasks = {
        "d": daemon_task(tmp_path, "d", check=check),
        "h": daemon_task(tmp_path, "h", check=hang),
    }
    settings = dict(FAST, check_interval=0.2, check_timeout=0.5)
    conf = write_config(tmp_path / "tf.conf", tasks, settings=settings)
    taskforce.start("-f", str(conf))
    (first,) = probes.wait(1, task="d")
    flag.unlink()
    taskforce.wait_log("check failed")
    wait_for(lambda: probes.pids("d") - {first["pid"]}, what="restart after failed check")
    taskforce.wait_log("h[0]: check command took over 0.5s: killing it")


def test_adopt_task_survives_taskforce_and_is_adopted_again(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    conf = write_config(
        tmp_path / "tf.conf",
        {"keep": daemon_task(tmp_path, "keep", control="adopt")},
        settings=FAST,
    )
    taskforce.start("-f", str(conf))
    (first,) = probes.wait(1, task="keep")
    taskforce.wait_log("daemon pid")
    assert taskforce.stop() == 0
    assert pid_alive(first["pid"])  # left running
    taskforce.start("-f", str(conf))
    taskforce.wait_log(f"found pid {first['pid']} still running: adopting it")
    assert len(probes.records("start", "keep")) == 1  # not started again
    os.kill(first["pid"], signal.SIGTERM)
    wait_for(
        lambda: len(probes.records("start", "keep")) == 2,
        what="restart after the adopted one exits",
    )


def test_orphans_of_a_killed_taskforce_are_not_duplicated(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    tasks = {"w": probe_task(count=3), "d": daemon_task(tmp_path, "d")}
    conf = write_config(tmp_path / "tf.conf", tasks, settings=FAST)
    taskforce.start("-f", str(conf))
    probes.wait(4)
    taskforce.wait_log("daemon pid")
    old = {r["pid"] for r in probes.live()}
    assert taskforce.proc is not None
    taskforce.proc.kill()
    taskforce.proc.wait(10)
    assert all(pid_alive(p) for p in old)
    taskforce.start("-f", str(conf))
    wait_for(lambda: not any(pid_alive(p) for p in old), what="leftovers stopped")
    wait_for(
        lambda: len(probes.pids("w")) == 3 and len(probes.pids("d")) == 1,
        what="fresh processes",
    )
    assert len(probes.live()) == 4


def test_a_pidfile_naming_an_unrelated_process_is_left_alone(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    """A daemon's pidfile is looked at on start-up (it may name the daemon an earlier
    taskforce started), and what it names must run the daemon's program."""
    stranger = subprocess.Popen(["sleep", "300"])
    try:
        (tmp_path / "d.pid").write_text(f"{stranger.pid}\n")
        conf = write_config(tmp_path / "tf.conf", {"d": daemon_task(tmp_path, "d")}, settings=FAST)
        taskforce.start("-f", str(conf))
        probes.wait(1, task="d")
        taskforce.wait_log("which does not run")
        assert taskforce.stop() == 0
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def copy_of_taskforce(tmp_path: Path) -> Path:
    import taskforce

    src = tmp_path / "src"
    shutil.copytree(
        Path(taskforce.__file__).parent,
        src / "taskforce",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return src


def test_upgrade_keeps_every_task_running_and_a_broken_upgrade_changes_nothing(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    src = copy_of_taskforce(tmp_path)
    taskforce.env["PYTHONPATH"] = str(src)
    pidfile = tmp_path / "tf.pid"
    conf = write_config(
        tmp_path / "tf.conf",
        {"w": probe_task(count=3), "d": daemon_task(tmp_path, "d")},
        settings=FAST,
    )
    taskforce.start("-p", str(pidfile), "-f", str(conf))
    probes.wait(4)
    taskforce.wait_log("daemon pid")
    before = {r["pid"] for r in probes.live()}
    tf_pid = int(pidfile.read_text())
    # An upgrade: new code appears (here: a module is rewritten). taskforce re-executes.
    module = src / "taskforce" / "core" / "diff.py"
    module.write_text(module.read_text() + "\n# upgraded\n")
    taskforce.wait_log("took over 4 running process(es)")
    assert int(pidfile.read_text()) == tf_pid
    assert {r["pid"] for r in probes.live()} == before
    assert len(probes.records("start")) == 4  # nothing restarted
    # Exits are still seen by the new image.
    victim = min(probes.pids("w"))
    os.kill(victim, signal.SIGKILL)
    wait_for(
        lambda: len(probes.pids("w")) == 3 and victim not in probes.pids("w"),
        what="restart",
    )
    # A broken upgrade is refused; everything keeps running.
    module.write_text("this is not python\n")
    taskforce.wait_log("upgrade abandoned")
    assert taskforce.proc is not None and taskforce.proc.poll() is None
    assert len(probes.live()) == 4
    result = taskforce.run("upgrade", "-p", str(pidfile))
    assert result.returncode == 0, result.stderr
    wait_for(lambda: taskforce.log().count("upgrade abandoned") >= 2, what="second refusal")
    assert taskforce.stop() == 0


def test_reset_stops_what_cannot_be_adopted_and_keeps_adopted_daemons(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    pidfile = tmp_path / "tf.pid"
    tasks = {"keep": daemon_task(tmp_path, "keep", control="adopt"), "w": probe_task()}
    conf = write_config(tmp_path / "tf.conf", tasks, settings=FAST)
    taskforce.start("-p", str(pidfile), "-f", str(conf))
    probes.wait(2)
    taskforce.wait_log("daemon pid")
    (kept,) = probes.live("keep")
    (old_w,) = probes.live("w")
    tf_pid = int(pidfile.read_text())
    result = taskforce.run("-R", "-p", str(pidfile))
    assert result.returncode == 0, result.stderr
    wait_for(lambda: not pid_alive(old_w["pid"]), what="the wait task stopped")
    wait_for(lambda: probes.pids("w") - {old_w["pid"]}, what="the wait task started again")
    taskforce.wait_log(f"found pid {kept['pid']} still running: adopting it")
    assert pid_alive(kept["pid"])
    assert len(probes.records("start", "keep")) == 1
    assert int(pidfile.read_text()) == tf_pid
