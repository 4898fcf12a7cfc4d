"""The bundled example (examples/run on examples/example.conf), end to end, per role set.

Each test runs a copy of examples/ in its own directory, so that pidfiles and the roles
file it writes never collide with another test or with someone running the example.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from support.procfs import pid_alive, proc_cmdline, task_processes
from support.runner import Taskforce
from support.wait import wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

FRONTEND = {"ntpd": 1, "haproxy": 1, "httpd": 1, "ws_server": 4}
BACKEND = {"ntpd": 1, "httpd": 1, "db_server": 1}


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    copy = tmp_path / "examples"
    shutil.copytree(EXAMPLES, copy, symlinks=True, ignore=shutil.ignore_patterns("var"))
    return copy


def run_env(taskforce: Taskforce) -> dict[str, str]:
    env = dict(taskforce.env, TASKFORCE=f"{sys.executable} -m taskforce")
    env.pop("MINSLEEP", None)
    env.pop("SLEEPRANGE", None)
    return env


def counts(marker: str) -> dict[str, int]:
    return {name: len(pids) for name, pids in task_processes(marker).items()}


@pytest.mark.parametrize(
    ("roles", "expected", "total", "httpd_conf"),
    [
        (["frontend"], FRONTEND, 7, "httpd-outside.conf"),
        (["backend"], BACKEND, 3, "httpd-inside.conf"),
        (["frontend", "backend"], {**FRONTEND, **BACKEND}, 8, "httpd-outside.conf"),
    ],
    ids=["frontend", "backend", "both"],
)
def test_example_runs_each_role_set(
    examples: Path,
    taskforce: Taskforce,
    roles: list[str],
    expected: dict[str, int],
    total: int,
    httpd_conf: str,
) -> None:
    assert sum(expected.values()) == total
    taskforce.spawn(["sh", str(examples / "run"), *roles], env=run_env(taskforce))
    wait_for(
        lambda: counts(taskforce.marker) == expected,
        what=f"the example's processes for {roles}: {expected}",
    )
    # `run` execs taskforce: the command started is the supervisor.
    assert proc_cmdline(taskforce.pid)[1:3] == ["-m", "taskforce"]
    assert (examples / "var" / "roles.conf").read_text().split() == roles
    log = taskforce.log()
    # timeset ran to completion before ntpd started (it is not running now).
    assert log.index("timeset[0]: pid") < log.index("ntpd[0]: started pid")
    assert "timeset" not in task_processes(taskforce.marker)

    processes = task_processes(taskforce.marker)
    (httpd,) = processes["httpd"]
    assert str(examples / "usr" / "local" / "etc" / httpd_conf) in proc_cmdline(httpd)
    piddir = examples / "var" / "run"
    for slot in range(expected.get("ws_server", 0)):
        pidfile = piddir / f"ws_server-{slot}.pid"
        wait_for(pidfile.exists, what=f"{pidfile.name}")
        assert int(pidfile.read_text()) in processes["ws_server"]

    every = [pid for pids in processes.values() for pid in pids]
    assert taskforce.stop() == 0
    assert not any(pid_alive(pid) for pid in every)
    assert task_processes(taskforce.marker) == {}
    # The simulated daemons remove their pidfiles when stopped.
    assert list(piddir.glob("*.pid")) == []
    assert "Traceback" not in taskforce.log()


def test_example_default_role_is_frontend(examples: Path, taskforce: Taskforce) -> None:
    taskforce.spawn(["sh", str(examples / "run")], env=run_env(taskforce))
    wait_for(lambda: counts(taskforce.marker) == FRONTEND, what="the frontend processes")
    assert (examples / "var" / "roles.conf").read_text() == "frontend\n"
    assert taskforce.stop() == 0


def test_example_config_is_valid(examples: Path, taskforce: Taskforce) -> None:
    taskforce.spawn(["sh", str(examples / "run"), "-C"], env=run_env(taskforce))
    assert taskforce.proc is not None
    assert taskforce.proc.wait(60) == 0
    assert "configuration is valid" in taskforce.log()


def test_example_runs_from_another_directory_through_a_symlink(
    examples: Path, taskforce: Taskforce, tmp_path: Path
) -> None:
    link = tmp_path / "run-example"
    link.symlink_to(examples / "run")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    taskforce.spawn([str(link), "backend"], cwd=elsewhere, env=run_env(taskforce))
    wait_for(lambda: counts(taskforce.marker) == BACKEND, what="the backend processes")
    assert not (elsewhere / "var").exists()
    assert taskforce.stop() == 0
    assert os.listdir(elsewhere) == []
