"""Included files are watched as a set: a file added to conf.d starts its tasks, a removed
one stops them, a rename is one change, and a bad file anywhere keeps everything."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from support.config import FAST, replace_file, write_config
from support.probes import Probes, probe_task
from support.runner import Taskforce
from support.wait import wait_for


def fragment(tasks: dict[str, Any], **more: Any) -> str:
    return json.dumps({**more, "tasks": tasks})


def start(taskforce: Taskforce, tmp_path: Path, a_conf: dict[str, Any], **top: Any) -> Path:
    """taskforce on a configuration that includes conf.d/*.conf, where a.conf holds the
    tasks `a_conf`; conf.d."""
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir(exist_ok=True)
    (conf_d / "a.conf").write_text(fragment(a_conf))
    conf = write_config(tmp_path / "tf.conf", {}, settings=FAST, include="conf.d/*.conf", **top)
    taskforce.start("-f", str(conf))
    return conf_d


def test_files_added_removed_and_renamed(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    conf_d = start(taskforce, tmp_path, {"a": probe_task()})
    probes.wait(1, task="a")
    a_pids = probes.pids("a")
    # A new file starts its tasks.
    replace_file(conf_d / "b.conf", fragment({"b": probe_task()}))
    probes.wait(1, task="b")
    b_pids = probes.pids("b")
    # Renamed to a name the pattern does not match: its tasks stop.
    os.rename(conf_d / "b.conf", conf_d / "b.conf.disabled")
    wait_for(lambda: not probes.pids("b"), what="b stopped")
    # Renamed back: they start again.
    os.rename(conf_d / "b.conf.disabled", conf_d / "b.conf")
    wait_for(lambda: probes.pids("b") and probes.pids("b") != b_pids, what="b again")
    # Removed: they stop.
    (conf_d / "b.conf").unlink()
    wait_for(lambda: not probes.pids("b"), what="b stopped again")
    assert probes.pids("a") == a_pids


def test_moving_a_task_between_files_keeps_its_process(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    conf_d = start(taskforce, tmp_path, {"a": probe_task(), "x": probe_task()})
    probes.wait(2)
    x_pids = probes.pids("x")
    # One rename brings the new file in, then x leaves the old one: a duplicate meanwhile
    # would be refused and the running configuration kept, so nothing restarts either way.
    replace_file(conf_d / "b.conf", fragment({"x": probe_task()}))
    taskforce.wait_log("defined twice")
    replace_file(conf_d / "a.conf", fragment({"a": probe_task()}))
    taskforce.wait_log("configuration reloaded: nothing changed")
    assert probes.pids("x") == x_pids


def test_a_bad_file_anywhere_keeps_everything(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    conf_d = start(taskforce, tmp_path, {"a": probe_task()})
    probes.wait(1, task="a")
    before = probes.pids("a")
    # A new file with a mistake: nothing applies, not even a later change of a good file.
    replace_file(conf_d / "z.conf", fragment({"z": {"control": "wiat", "commands": {}}}))
    taskforce.wait_log("new configuration not applied")
    assert "z.conf:1:29: tasks.z.control: 'wiat' is not one of" in taskforce.log()
    # (The listing of conf.d changes twice for one replace_file: the refusals may be more
    # than one a change.)
    not_applied = "new configuration not applied"
    refused = taskforce.log().count(not_applied)
    replace_file(conf_d / "a.conf", fragment({"a": probe_task("--changed")}))
    wait_for(lambda: taskforce.log().count(not_applied) > refused, what="another refusal")
    assert probes.pids("a") == before
    assert not probes.pids("z")
    # The bad file is watched too: fixing it applies everything.
    replace_file(conf_d / "z.conf", fragment({"z": probe_task()}))
    probes.wait(1, task="z")
    wait_for(lambda: probes.pids("a") and probes.pids("a") != before, what="a restarted")


def test_an_env_file_change_restarts_only_the_tasks_using_it(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    env = tmp_path / "app.env"
    env.write_text("GREETING='hello world'\n")
    start(
        taskforce,
        tmp_path,
        {"a": probe_task("{GREETING}", env_file="../app.env"), "b": probe_task()},
    )
    (a,) = probes.wait(1, task="a")
    assert a["env"]["GREETING"] == "hello world"
    assert "hello world" in a["argv"]
    probes.wait(1, task="b")
    b_pids = probes.pids("b")
    replace_file(env, 'export GREETING="bonjour"\n')
    wait_for(lambda: any(r["env"]["GREETING"] == "bonjour" for r in probes.live("a")), what="a")
    assert probes.pids("b") == b_pids
