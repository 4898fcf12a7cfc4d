"""gRPC's fork handlers in the test process: off whatever loads gRPC first, and the
setting that keeps them off stays in this process.

gRPC reads GRPC_ENABLE_FORK_SUPPORT once, when it loads, and its core takes an unset
variable for "on". On, its handlers run at every fork() of this process (a subprocess
with a preexec_fn forks without vfork) and restart gRPC's poller in the child, which
then aborts when Popen closes the poller's descriptor before exec (grpc/grpc#43055): a
`taskforce -C` child died of SIGABRT in a loaded whole-suite run, after the collection
of a fleet test module had loaded gRPC through `pytest.importorskip("aetcd")`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.probes import Probes, probe_task
from support.runner import Taskforce
from taskforce.fleet.grpc_fork import FORK_ENV, FORK_ENV_MARK

FLEET_TESTS = Path(__file__).resolve().parent
REPO = FLEET_TESTS.parent.parent

# A pytest plugin: notes the fork setting at the moment gRPC is first imported.
_WATCH = """
import importlib.abc, json, os, sys

class _Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "grpc" and "grpc" not in sys.modules:
            with open(os.environ["GRPC_WATCH_OUT"], "a") as out:
                out.write(json.dumps(os.environ.get("GRPC_ENABLE_FORK_SUPPORT")) + "\\n")
        return None

sys.meta_path.insert(0, _Watch())
"""


def _fresh_pytest(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """pytest over `args` in a new process, started as CI starts it: no gRPC or taskforce
    setting inherited (but `env`), grpc_watch.py importable from `tmp_path`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GRPC_", "TASKFORCE_"))}
    clean.update(env, PYTHONPATH=str(tmp_path))
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    return subprocess.run(
        argv, cwd=REPO, env=clean, capture_output=True, text=True, timeout=80
    )  # fmt: skip


def test_grpc_loads_with_its_fork_support_off_in_the_collecting_test_process(
    tmp_path: Path,
) -> None:
    pytest.importorskip("taskforce.fleet.session", reason="no fleet extra: gRPC never loads")
    (tmp_path / "grpc_watch.py").write_text(_WATCH)
    out = tmp_path / "imports.jsonl"
    ran = _fresh_pytest(
        tmp_path, "--collect-only", "-p", "grpc_watch", str(FLEET_TESTS), GRPC_WATCH_OUT=str(out)
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    # Once: gRPC is imported by the collection, and with its fork support off.
    assert [json.loads(line) for line in out.read_text().splitlines()] == ["0"]


def test_a_fork_setting_of_the_user_stops_the_suite_before_it_starts(tmp_path: Path) -> None:
    ran = _fresh_pytest(tmp_path, "--collect-only", str(FLEET_TESTS), **{FORK_ENV: "1"})
    assert ran.returncode == pytest.ExitCode.USAGE_ERROR
    assert f"{FORK_ENV} is set in the environment: unset it" in ran.stderr


def test_the_taskforce_under_test_does_not_pass_on_the_test_process_grpc_setting(
    taskforce: Taskforce, probes: Probes
) -> None:
    # This process holds the setting (tests/conftest.py made it); a user's shell does not,
    # so neither does the taskforce under test, nor its tasks.
    assert os.environ.get(FORK_ENV) == "0" and os.environ.get(FORK_ENV_MARK) == "1"
    taskforce.start_tasks({"a": probe_task()})
    (record,) = probes.wait(1)
    assert FORK_ENV not in record["env"] and FORK_ENV_MARK not in record["env"]
