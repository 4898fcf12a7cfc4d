"""Where taskforce follows the specification and the original's API (issue 12), end to end.

Commands run as a user would run them; the tasks are probes (tests/programs/probe.py).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from support.config import FAST, fast_config
from support.probes import Probes, probe_task
from support.procfs import task_processes
from support.runner import Taskforce
from support.wait import wait_for

# ----- conditional values where one value is expected ----------------------------------------


def test_conditional_scalar_keys_choose_from_the_context(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    (tmp_path / "staging").mkdir()
    (tmp_path / "prod").mkdir()
    roles = tmp_path / "roles"
    roles.write_text("staging=eu\n")
    conf = fast_config(
        tmp_path,
        {
            "web": probe_task(
                cwd=[{"STAGE": "{base}/{STAGE}"}, {"PROD_ONLY": "{base}/prod"}],
                procname={"Task_role_staging": "web-{Task_role_staging}"},
                count={"NO_SUCH_NAME": 3},  # chooses nothing: as if not written
            ),
            # Both names are in the context here: two working directories.
            "torn": probe_task(cwd={"STAGE": "/a", "base": "/b"}),
        },
        defines={"base": str(tmp_path)},
        role_defines={"staging": {"STAGE": "staging"}},
    )
    taskforce.start("-p", str(tmp_path / "tf.pid"), "-f", conf, "-r", str(roles))
    [record] = probes.wait(1, task="web")
    pid = record["pid"]
    assert os.readlink(f"/proc/{pid}/cwd") == str(tmp_path / "staging")
    assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] == b"web-eu"
    log = taskforce.wait_log("tasks.torn.cwd")
    assert "expands to 2 values ('/a', '/b') where one is expected" in log
    assert taskforce.running()
    assert set(task_processes(taskforce.marker)) == {"web"}


def test_check_config_places_a_conditional_that_always_gives_several(
    tmp_path: Path, taskforce: Taskforce
) -> None:
    conf = tmp_path / "taskforce.conf"
    conf.write_text(
        "tasks:\n"
        "  web:\n"
        "    commands: {start: [web]}\n"
        "    pidfile: [/run/a.pid, {Task_name: /run/b.pid}]\n"
    )
    result = taskforce.run("-C", "-f", str(conf))
    assert result.returncode == 1
    assert f"{conf}:4:14: tasks.web.pidfile: gives 2 values in every context" in result.stderr


# Prints each SIGHUP and SIGUSR1 it gets, on its stdout.
SIGNAL_ECHO = (
    "import signal, sys, time\n"
    "def on(sig, frame): print('got', signal.Signals(sig).name, flush=True)\n"
    "signal.signal(signal.SIGHUP, on)\n"
    "signal.signal(signal.SIGUSR1, on)\n"
    "print('started', flush=True)\n"
    "while True: time.sleep(60)\n"
)


def test_an_event_signal_and_an_output_path_chosen_by_a_role(
    tmp_path: Path, taskforce: Taskforce
) -> None:
    watched = tmp_path / "app.conf"
    watched.write_text("0")
    roles = tmp_path / "roles"
    roles.write_text("canary\n")
    logs = {role: tmp_path / f"{role}.log" for role in ("canary", "steady")}
    conf = fast_config(
        tmp_path,
        {
            "app": {
                "commands": {"start": [sys.executable, "-c", SIGNAL_ECHO]},
                "events": [
                    {
                        "type": "file_change",
                        "path": str(watched),
                        "signal": {"CANARY": "USR1", "STEADY": "HUP"},
                    }
                ],
                "output": {
                    "stdout": [{"CANARY": "{logs}/canary.log"}, {"STEADY": "{logs}/steady.log"}]
                },
            },
        },
        defines={"logs": str(tmp_path)},
        role_defines={"canary": {"CANARY": "1"}, "steady": {"STEADY": "1"}},
        settings=FAST,
    )
    taskforce.start("-p", str(tmp_path / "tf.pid"), "-f", conf, "-r", str(roles))

    def signalled(role: str, name: str) -> None:
        wait_for(lambda: "started" in read(logs[role]), what=f"the app started as {role}")
        changes = iter(range(10_000))

        def echoed() -> bool:
            # Changed again on each look: a change made before the watch began is not lost.
            watched.write_text(str(next(changes)))
            return f"got {name}" in read(logs[role])

        wait_for(echoed, what=f"{name} reported in {logs[role]}")

    signalled("canary", "SIGUSR1")
    assert not logs["steady"].exists()
    roles.write_text("steady\n")  # the context changes: the app restarts, writing elsewhere
    signalled("steady", "SIGHUP")
    assert "SIGHUP" not in read(logs["canary"])
    # (The first process's last words may follow it to its new destination.)
    assert "SIGUSR1" not in read(logs["steady"]).split("started")[-1]
    assert taskforce.running()


def read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


# ----- once tasks that succeed ----------------------------------------------------------------


def test_a_once_task_that_succeeds_at_once_is_not_a_failure(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    # min_uptime is 0.5 s (FAST): the task exits 0 long before.
    conf = fast_config(tmp_path, {"setup": probe_task("--exit-after", "0", control="once")})
    taskforce.start("-p", str(tmp_path / "tf.pid"), "-f", conf)
    probes.wait(1, kind="exit", task="setup")
    log = taskforce.wait_log("setup[0]: pid")

    def status() -> dict[str, Any] | None:
        result = taskforce.run("status", "--json", "--server", str(tmp_path / "tf.sock"))
        tasks = json.loads(result.stdout) if result.returncode == 0 else {}
        done = tasks.get("setup", {}).get("processes", [{}])[0].get("exit")
        return tasks["setup"] if done else None

    setup = wait_for(status, what="the status of setup after its exit")
    assert [p["failures"] for p in setup["processes"]] == [0]
    assert setup["state"] != "backing off"
    assert "failure" not in log and "retrying" not in log


# ----- settings.all_roles ---------------------------------------------------------------------


def test_all_roles_moves_tasks_as_the_roles_file_changes(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    roles = tmp_path / "roles"
    roles.write_text("web\n")
    conf = fast_config(
        tmp_path,
        {
            "front": probe_task(roles=["web"]),
            "both": probe_task(roles=["web", "db"]),
        },
        settings={**FAST, "all_roles": True},
    )
    taskforce.start("-p", str(tmp_path / "tf.pid"), "-f", conf, "-r", str(roles))

    def running(expected: set[str]) -> None:
        wait_for(
            lambda: set(task_processes(taskforce.marker)) == expected,
            what=f"exactly the tasks {sorted(expected)}",
        )

    running({"front"})  # one of both's roles is not enough
    roles.write_text("web\ndb\n")
    running({"front", "both"})
    roles.write_text("db\n")
    running(set())
    assert taskforce.running()


# ----- -C: warnings for likely typos ---------------------------------------------------------


def test_check_config_warns_of_likely_typos_and_still_passes(
    tmp_path: Path, taskforce: Taskforce
) -> None:
    conf = tmp_path / "taskforce.conf"
    conf.write_text(
        "defines: {confdir: /etc/app}\n"
        "tasks:\n"
        "  app:\n"
        '    commands: {start: [app, "{confdri}/app.conf", "{TF_TEST_MARKER}"]}\n'
        '    pidfile: "${confdir}/app.pid"\n'
    )
    result = taskforce.run("-C", "-f", str(conf))
    assert result.returncode == 0
    assert result.stdout.strip() == f"{conf}: configuration is valid"
    assert result.stderr.splitlines() == [
        f"{conf}:4:29: tasks.app.commands.start[1]: warning: {{confdri}} is defined by no "
        "scope of the configuration nor by the environment: it stays as written (did you "
        "mean 'confdir'?)",
        f"{conf}:5:14: tasks.app.pidfile: warning: '${{confdir}}': substitution is written "
        "{confdir}; the '$' stays in the value",
    ]  # {TF_TEST_MARKER}: the environment of -C holds it


def test_check_config_suggests_defines_for_env(tmp_path: Path, taskforce: Taskforce) -> None:
    conf = fast_config(tmp_path, {"app": probe_task(env={"A": "1"})})
    result = taskforce.run("-C", "-f", conf)
    assert result.returncode != 0
    assert "tasks.app.env: unknown key 'env' (did you mean 'defines'?)" in result.stderr
