"""Output destinations as the README writes them, and tasks that cannot be resolved.

A relative output path is a file relative to the configuration's directory, with or
without a '/'. A task whose entry cannot be resolved shows in status with its error (it
never vanishes), `-b` prints why, and a running task whose new entry is refused keeps
running as it was.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from support.config import write_config
from support.probes import Probes, probe_task
from support.runner import Taskforce
from support.wait import wait_for

README = Path(__file__).resolve().parents[2] / "README.md"
TALK = "import sys, time\nwhile True:\n    print('hello', flush=True)\n    time.sleep(0.1)\n"
FAST: dict[str, Any] = {"stop_timeout": 1, "restart": {"min_uptime": 0.2, "initial_delay": 0.1}}


def readme_output_block() -> str:
    """The `output:` example of the README's "Task output" section, as written there."""
    section = README.read_text().split("### Task output", 1)[1]
    found = re.search(r"```yaml\n(output:\n.*?)```", section, re.DOTALL)
    assert found is not None
    return found[1]


def status(taskforce: Taskforce, server: Path, *args: str) -> Any:
    result = taskforce.run("status", "--server", str(server), *args, timeout=60)
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout) if "--json" in args else result.stdout


def start_background(taskforce: Taskforce, tmp_path: Path, conf: Path) -> str:
    """`-b` from another directory; what it printed. The socket is tmp_path/tf.sock."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = taskforce.run("-b", "-p", str(tmp_path / "tf.pid"), "-f", str(conf), cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


@pytest.mark.parametrize("literal", [False, True], ids=["readme-example", "bare-file-name"])
def test_the_readme_output_example_writes_beside_the_configuration(
    taskforce: Taskforce, tmp_path: Path, literal: bool
) -> None:
    block = readme_output_block()
    expected = tmp_path / "sleeper-0.log"
    if literal:
        block = block.replace('"{Task_name}-{Task_instance}.log"', "sleeper.log")
        expected = tmp_path / "sleeper.log"
    start = json.dumps([sys.executable, "-c", TALK])
    indented = "".join(f"    {line}\n" for line in block.splitlines())
    conf = tmp_path / "tf.conf"
    conf.write_text(f"tasks:\n  sleeper:\n    commands: {{start: {start}}}\n{indented}")
    checked = taskforce.run("-C", "-p", "-", "-f", str(conf))
    assert checked.returncode == 0, checked.stderr
    assert "sleeper" not in start_background(taskforce, tmp_path, conf)
    wait_for(lambda: expected.exists() and b"hello\n" in expected.read_bytes(), what="output")
    tasks = status(taskforce, tmp_path / "tf.sock", "--json")
    assert tasks["sleeper"]["state"] == "running"
    assert taskforce.run("-S", "-p", str(tmp_path / "tf.pid")).returncode == 0


def test_a_task_that_cannot_be_resolved_shows_in_status_with_its_error(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    broken = probe_task(output={"stdout": "{NOT_DEFINED}.log"})
    conf = write_config(
        tmp_path / "tf.conf", {"good": probe_task(), "broken": broken}, settings=FAST
    )
    printed = start_background(taskforce, tmp_path, conf)
    error = "tasks.broken.output.stdout: expands to '{NOT_DEFINED}.log': {NOT_DEFINED} is not"
    assert error in printed
    probes.wait(1, task="good")
    tasks = status(taskforce, tmp_path / "tf.sock", "--json")
    assert tasks["broken"]["state"] == "invalid"
    assert error in tasks["broken"]["error"]
    assert tasks["good"]["error"] is None
    table = status(taskforce, tmp_path / "tf.sock")
    (line,) = [line for line in table.splitlines() if line.startswith("broken ")]
    assert "invalid" in line and "{NOT_DEFINED} is not defined" in line
    assert taskforce.run("-S", "-p", str(tmp_path / "tf.pid")).returncode == 0


def test_a_running_task_whose_new_entry_is_refused_keeps_running(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    sock = tmp_path / "tf.sock"
    settings = {**FAST, "http": {"listen": str(sock), "allow_control": True}}
    conf = write_config(
        tmp_path / "tf.conf", {"a": probe_task(), "b": probe_task()}, settings=settings
    )
    taskforce.start("-p", "-", "-f", str(conf))
    (first,) = probes.wait(1, task="a")
    wait_for(lambda: sock.exists(), what="the control socket")
    refused = probe_task("--changed", output={"stdout": "{NOT_DEFINED}.log"})
    write_config(conf, {"a": refused, "b": probe_task()}, settings=settings)
    taskforce.wait_log("a: its new entry cannot be used: it stays as it was")
    tasks = status(taskforce, sock, "--json")
    assert tasks["a"]["state"] == "running"
    assert [p["pid"] for p in tasks["a"]["processes"]] == [first["pid"]]
    assert "{NOT_DEFINED} is not defined" in tasks["a"]["error"]
    assert "new entry refused, kept as it was" in tasks["a"]["why"]
    assert [r["pid"] for r in probes.live("a")] == [first["pid"]]
