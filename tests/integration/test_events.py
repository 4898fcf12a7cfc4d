"""Task events: file_change, self and python, each action, and the restart event."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from support.config import replace_file, write_config
from support.probes import PROBE, Probes, probe_task
from support.runner import Taskforce
from support.wait import wait_for


def append(path: Path, text: str) -> None:
    with open(path, "a") as f:  # an in-place write
        f.write(text)


def test_file_change_stop_restarts_the_task(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    watched = tmp_path / "app.conf"
    watched.write_text("v1")
    event = {"type": "file_change", "path": str(watched), "command": "stop"}
    taskforce.start_tasks({"app": probe_task(events=[event]), "other": probe_task()})
    (other,) = probes.wait(1, task="other")
    changes: list[Callable[[], None]] = [
        lambda: replace_file(watched, "v2"),
        lambda: append(watched, "more"),
    ]
    for started, change in enumerate(changes, 1):
        pid = probes.wait(started, task="app")[-1]["pid"]
        # The process runs before taskforce has it as started (its log says when): a
        # change seen in between would find nothing running to stop.
        taskforce.wait_log(f"app[0]: started pid {pid} ")
        change()
        # This change stopped this process: not a second report of the one before.
        taskforce.wait_log(
            f"app[0]: stopping pid {pid} with SIGTERM (file_change event: {watched} changed)"
        )
    probes.wait(3, task="app")
    assert probes.live("other") == [other]


def test_a_watched_path_that_appears_later(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    watched = tmp_path / "later" / "flag"
    event = {"type": "file_change", "path": str(watched), "signal": "USR1"}
    taskforce.start_tasks({"app": probe_task(events=[event])})
    probes.wait(1)
    watched.parent.mkdir()
    watched.write_text("here")
    probes.wait(1, kind="usr1")


def test_signal_action_with_relative_path_and_hup(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    (tmp_path / "db.conf").write_text("x")
    event = {"type": "file_change", "path": "db.conf", "signal": "SIGHUP"}
    taskforce.start_tasks({"db": probe_task(count=2, events=[event])})
    probes.wait(2)
    before = probes.pids("db")
    replace_file(tmp_path / "db.conf", "y")
    probes.wait(2, kind="hup")
    assert probes.pids("db") == before


def test_command_action_runs_a_named_command(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    watched = tmp_path / "conf"
    watched.write_text("x")
    marker = tmp_path / "reconfig-ran"
    task = probe_task(events=[{"type": "file_change", "path": str(watched), "command": "reconfig"}])
    task["commands"]["reconfig"] = [
        sys.executable,
        "-c",
        f"open({str(marker)!r}, 'w').write('{{Task_pid}}')",
    ]
    taskforce.start_tasks({"app": task})
    (rec,) = probes.wait(1)
    replace_file(watched, "y")
    # The file exists from the command's open(), before its write() is done.
    written = wait_for(lambda: marker.exists() and marker.read_text(), what="reconfig command")
    assert written == str(rec["pid"])


def test_self_event_restarts_when_the_executable_is_replaced(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    program = tmp_path / "bin" / "probe"
    program.parent.mkdir()
    shutil.copy(PROBE, program)
    program.chmod(0o755)
    task = {
        "commands": {"start": ["probe"]},
        "defines": {"PATH": f"{program.parent}:{os.environ['PATH']}"},
        "events": [{"type": "self", "command": "stop"}],
    }
    taskforce.start_tasks({"app": task})
    probes.wait(1)
    before = probes.pids("app")
    upgrade = tmp_path / "bin" / ".probe.new"
    shutil.copy(PROBE, upgrade)
    upgrade.chmod(0o755)
    os.replace(upgrade, program)
    wait_for(lambda: probes.pids("app") and probes.pids("app") != before, what="restart on self")


def test_python_event_follows_imported_modules(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "helper.py").write_text("VALUE = 1\n")
    (lib / "other.py").write_text("X = 1\n")
    script = tmp_path / "app.py"
    script.write_text(
        f"import helper\nimport runpy\nrunpy.run_path({PROBE!r}, run_name='__main__')\n"
    )
    task = {
        "commands": {"start": [sys.executable, str(script)]},
        "defines": {"PYTHONPATH": str(lib)},
        "events": [{"type": "python", "command": "stop"}],
    }
    taskforce.start_tasks({"app": task})
    probes.wait(1)
    wait_for(lambda: "watching 2 Python file(s)" in taskforce.log(), what="module discovery")
    before = probes.pids("app")
    replace_file(lib / "helper.py", "import other\nVALUE = 2\n")
    wait_for(
        lambda: probes.pids("app") and probes.pids("app") != before,
        what="restart on module change",
    )
    # The new import is discovered: changing it restarts the task too.
    wait_for(lambda: "watching 3 Python file(s)" in taskforce.log(), what="re-discovery")
    second = probes.pids("app")
    replace_file(lib / "other.py", "X = 2\n")
    wait_for(
        lambda: probes.pids("app") and probes.pids("app") != second, what="restart on new import"
    )


def test_python_event_on_a_non_python_task_is_a_configuration_error(
    taskforce: Taskforce, tmp_path: Path
) -> None:
    conf = tmp_path / "tf.conf"
    write_config(
        conf,
        {
            "s": {
                "commands": {"start": ["sleep", "100"]},
                "events": [{"type": "python", "command": "stop"}],
            }
        },
    )
    result = taskforce.run("-C", "-f", str(conf))
    assert result.returncode == 1
    assert "needs a Python script" in result.stderr


def test_restart_event_replaces_the_plain_stop_on_restart(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    watched = tmp_path / "conf"
    watched.write_text("x")
    events = [
        {"type": "file_change", "path": str(watched), "command": "stop"},
        {"type": "restart", "signal": "USR1"},
    ]
    # probe exits on SIGTERM but only records SIGUSR1: the restart event must be used,
    # then SIGKILL escalation ends it.
    taskforce.start_tasks({"app": probe_task(events=events)})
    probes.wait(1)
    replace_file(watched, "y")
    probes.wait(1, kind="usr1")
    probes.wait(2)
