"""Live reconfiguration: only what changed is touched; a bad config changes nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from support.config import FAST, replace_file, write_config
from support.probes import Probes, probe_task
from support.runner import Taskforce
from support.wait import wait_for


def config_text(tasks: dict[str, Any]) -> str:
    return json.dumps({"settings": FAST, "tasks": tasks})


def start(taskforce: Taskforce, tmp_path: Path, tasks: dict[str, Any], *extra: str) -> Path:
    conf = tmp_path / "tf.conf"
    write_config(conf, tasks, settings=FAST)
    taskforce.start("-f", str(conf), *extra)
    return conf


def test_only_the_changed_task_restarts(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    tasks = {"a": probe_task(), "b": probe_task(), "c": probe_task()}
    conf = start(taskforce, tmp_path, tasks)
    probes.wait(3)
    before = {t: probes.pids(t) for t in "abc"}
    tasks["b"] = probe_task("--changed")
    replace_file(conf, config_text(tasks))
    wait_for(lambda: probes.pids("b") and probes.pids("b") != before["b"], what="b restarted")
    assert probes.pids("a") == before["a"]
    assert probes.pids("c") == before["c"]
    assert "restart: b (argv)" in taskforce.log()


def test_count_change_starts_and_stops_only_the_instances_concerned(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    tasks = {"w": probe_task(count=2)}
    conf = start(taskforce, tmp_path, tasks)
    probes.wait(2, task="w")
    before = probes.pids("w")
    tasks["w"] = probe_task(count=4)
    replace_file(conf, config_text(tasks))
    wait_for(lambda: len(probes.pids("w")) == 4, what="4 instances")
    assert before <= probes.pids("w")
    tasks["w"] = probe_task(count=1)
    replace_file(conf, config_text(tasks))
    wait_for(lambda: len(probes.pids("w")) == 1, what="1 instance")
    (survivor,) = probes.live("w")
    assert survivor["env"]["Task_instance"] == "0"
    assert survivor["pid"] in before


def test_new_task_starts_removed_task_stops_and_new_requires_wait(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    tasks: dict[str, Any] = {"a": probe_task(), "gone": probe_task()}
    conf = start(taskforce, tmp_path, tasks)
    probes.wait(2)
    a_pids = probes.pids("a")
    del tasks["gone"]
    tasks["init"] = probe_task("--exit-after", "0.5", control="once")
    tasks["late"] = probe_task(requires=["init"])
    replace_file(conf, config_text(tasks))
    wait_for(lambda: not probes.pids("gone"), what="removed task stopped")
    (late,) = probes.wait(1, task="late")
    (init_exit,) = probes.records("exit", "init")
    assert late["monotonic"] > init_exit["monotonic"]  # it waited for init to exit
    assert probes.pids("a") == a_pids


def test_invalid_new_config_keeps_everything_running(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    conf = start(taskforce, tmp_path, {"a": probe_task()})
    probes.wait(1)
    before = probes.pids("a")
    replace_file(conf, '{"tasks": {"a": {"control": "wiat", "commands": {"start": ["x"]}}}}')
    taskforce.wait_log("new configuration not applied")
    assert "'wiat' is not one of" in taskforce.log()
    conf.unlink()  # a config file that disappears stops nothing either
    taskforce.wait_log("cannot read the file")
    assert probes.pids("a") == before
    assert taskforce.proc is not None and taskforce.proc.poll() is None


def test_edits_in_place_and_delete_recreate_are_seen(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    tasks = {"a": probe_task()}
    conf = start(taskforce, tmp_path, tasks)
    probes.wait(1)
    with open(conf, "w") as f:  # in place, as an editor without atomic saves does
        f.write(config_text({"a": probe_task(), "b": probe_task()}))
    probes.wait(1, task="b")
    conf.unlink()
    conf.write_text(config_text({"a": probe_task(), "b": probe_task(), "c": probe_task()}))
    probes.wait(1, task="c")


def test_roles_file_change_migrates_tasks(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    roles = tmp_path / "roles"
    roles.write_text("web\n")
    tasks = {
        "front": probe_task(roles=["web"]),
        "back": probe_task(roles=["db"]),
        "all": probe_task(),
    }
    start(taskforce, tmp_path, tasks, "-r", str(roles))
    probes.wait(2)
    assert probes.pids("front") and not probes.pids("back")
    all_pids = probes.pids("all")
    replace_file(roles, "db\n")
    wait_for(lambda: probes.pids("back") and not probes.pids("front"), what="role migration")
    assert probes.pids("all") == all_pids
    roles.unlink()  # a vanished roles file keeps the roles as they were
    taskforce.wait_log("keeping roles as they were")
    assert probes.pids("back")


def test_check_against_a_running_instance_prints_the_plan(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    tasks = {"a": probe_task(), "b": probe_task(count=2), "c": probe_task(), "d": probe_task()}
    pidfile = tmp_path / "tf.pid"
    start(taskforce, tmp_path, tasks, "-p", str(pidfile))
    probes.wait(5)
    new = dict(tasks)
    new["a"] = probe_task("--changed")
    new["b"] = probe_task(count=3)
    del new["c"]
    new["e"] = probe_task()
    new["d"] = probe_task(
        events=[{"type": "file_change", "path": "/nonexistent", "command": "stop"}]
    )
    candidate = tmp_path / "new.conf"
    candidate.write_text(config_text(new))
    wait_for(lambda: (tmp_path / "tf.sock").exists(), what="control socket")
    result = taskforce.run("-C", "-p", str(pidfile), "-f", str(candidate))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "restart: a (argv)" in out
    assert "scale: b (count 2 -> 3)" in out
    assert "stop: c" in out
    assert "start: e" in out
    assert "update: d (events)" in out
    assert len(probes.records("start")) == 5  # nothing was applied


def test_a_reload_to_a_requires_chain_deeper_than_the_recursion_limit(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    sock = str(tmp_path / "tf.sock")
    settings = {**FAST, "http": {"listen": sock, "allow_control": True}}
    conf = write_config(tmp_path / "tf.conf", {"a": probe_task()}, settings=settings)
    taskforce.start("-f", str(conf))
    probes.wait(1)
    wait_for(lambda: os.path.exists(sock), what="the control socket")
    length = 3000  # three times Python's default recursion limit

    def chained(closed: bool) -> str:
        tasks: dict[str, Any] = {"a": probe_task()}
        for i in range(length):
            tasks[f"t{i}"] = probe_task(control="off", requires=f"t{i + 1}")
        tasks[f"t{length - 1}"]["requires"] = "t0" if closed else []
        return json.dumps({"settings": settings, "tasks": tasks})

    replace_file(conf, chained(closed=True))
    refused = taskforce.run("reload", "--server", sock, timeout=60)
    assert refused.returncode == 1, refused.stderr
    assert f"requires cycle: t0 -> t1 -> t2 -> t3 -> t4 -> t5 -> ... ({length - 11} more)" in (
        refused.stderr
    )
    replace_file(conf, chained(closed=False))
    applied = taskforce.run("reload", "--server", sock, timeout=60)
    assert applied.returncode == 0, applied.stderr
    status = taskforce.run("status", "--json", "--server", sock, "t0", timeout=60)
    assert json.loads(status.stdout)["t0"]["requires"] == ["t1"]
    assert "Traceback" not in taskforce.log()
    assert len(probes.records(task="a")) == 1
