"""Task lifecycle with real processes: controls, count, requires, onexit, stopping, restarts.

Each test runs `taskforce` as a command on a configuration of probe tasks
(tests/programs/probe.py), then watches what the probes record and what taskforce logs.
Nothing waits on a clock: every wait polls a condition with a deadline.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import pytest

from support.config import fast_config
from support.probes import PROBE, Probes, probe_task
from support.procfs import pid_alive, start_ticks, task_processes
from support.runner import Taskforce
from support.wait import wait_for


def started_lines(log: str, task: str) -> list[str]:
    return [line for line in log.splitlines() if f"{task}[" in line and ": started pid" in line]


# ----- controls ---------------------------------------------------------------------


def test_once_task_runs_once_and_is_not_restarted(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    conf = fast_config(
        tmp_path,
        {
            "setup": probe_task("--exit-after", "0", control="once"),
            "after": probe_task(requires="setup"),
        },
    )
    taskforce.start("-f", conf)
    probes.wait(1, task="after")
    # A restart of `setup` would be planned in the pass that saw it exit, the one that
    # started `after`, so it would already be in the log.
    log = taskforce.wait_log("after[0]: started pid")
    assert len(started_lines(log, "setup")) == 1
    assert len(probes.records(task="setup")) == 1
    assert re.search(r"setup\[0\]: pid \d+ exited 0", log)
    assert taskforce.stop() == 0


def test_once_task_that_fails_is_not_restarted(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    conf = fast_config(
        tmp_path,
        {
            "setup": probe_task("--exit-after", "0", "--exit-code", "3", control="once"),
            "after": probe_task(requires="setup"),
        },
    )
    taskforce.start("-f", conf)
    probes.wait(1, task="after")
    log = taskforce.wait_log("after[0]: started pid")
    assert re.search(r"setup\[0\]: pid \d+ exited 3", log)
    assert len(started_lines(log, "setup")) == 1


def test_wait_task_is_restarted_when_it_exits(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    conf = fast_config(tmp_path, {"server": probe_task()})
    taskforce.start("-f", conf)
    first = probes.wait(1, task="server")[0]
    os.kill(first["pid"], signal.SIGKILL)
    records = probes.wait(2, task="server")
    second = records[1]
    assert second["pid"] != first["pid"]
    assert second["env"]["Task_instance"] == "0"
    wait_for(lambda: not pid_alive(first["pid"]), what="the killed process to be reaped")
    log = taskforce.wait_log(f"pid {first['pid']} killed by SIGKILL")
    assert re.search(rf"pid {first['pid']} killed by SIGKILL .*(restarting|retrying in)", log)
    assert taskforce.running()
    assert taskforce.stop() == 0


def test_count_keeps_that_many_processes(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    conf = fast_config(tmp_path, {"pool": probe_task(count=3)})
    taskforce.start("-f", conf)
    records = probes.wait(3, task="pool")
    assert sorted(r["env"]["Task_instance"] for r in records) == ["0", "1", "2"]
    assert len({r["pid"] for r in records}) == 3
    victim = next(r for r in records if r["env"]["Task_instance"] == "1")
    os.kill(victim["pid"], signal.SIGKILL)
    replacement = probes.wait(4, task="pool")[-1]
    assert replacement["env"]["Task_instance"] == "1"
    assert replacement["pid"] != victim["pid"]
    wait_for(lambda: len(probes.live("pool")) == 3, what="3 live pool processes")
    live = probes.live("pool")
    assert sorted(r["env"]["Task_instance"] for r in live) == ["0", "1", "2"]
    assert taskforce.stop() == 0
    assert not any(pid_alive(r["pid"]) for r in live)


def test_count_zero_starts_nothing(tmp_path: Path, taskforce: Taskforce, probes: Probes) -> None:
    conf = fast_config(tmp_path, {"none": probe_task(count=0), "marker": probe_task()})
    taskforce.start("-f", conf)
    probes.wait(1, task="marker")
    taskforce.wait_log("marker[0]: started pid")
    assert probes.records(task="none") == []
    assert "none[" not in taskforce.log()


# ----- requires ---------------------------------------------------------------------


def test_requires_a_once_task_waits_for_it_to_finish(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    conf = fast_config(
        tmp_path,
        {
            "prepare": probe_task("--exit-after", "0.5", control="once"),
            "server": probe_task(requires=["prepare"]),
        },
    )
    taskforce.start("-f", conf)
    server = probes.wait(1, task="server")[0]
    (prepare_exit,) = probes.records("exit", task="prepare")
    assert server["monotonic"] > prepare_exit["monotonic"]
    log = taskforce.log()
    assert log.index("prepare[0]: pid") < log.index("server[0]: started pid")


def test_requires_waits_for_start_delay(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    conf = fast_config(
        tmp_path,
        {
            "db": probe_task(start_delay=1.5),
            "app": probe_task(requires="db"),
            "independent": probe_task(),
        },
    )
    taskforce.start("-f", conf)
    (app,) = probes.wait(1, task="app")
    (db,) = probes.wait(1, task="db")
    log = taskforce.wait_log("app[0]: started pid")
    # The delay counts from when taskforce saw db spawned, so db's process was created
    # before it and app's at least 1.5 s after it: a lower bound that load cannot break,
    # read from the kernel's creation times (in clock ticks, hence the one tick).
    ticks = start_ticks(app["pid"]) - start_ticks(db["pid"])
    assert ticks >= 1.5 * os.sysconf("SC_CLK_TCK") - 1
    assert "independent[0]: started pid" in log
    assert taskforce.stop() == 0


def test_requires_chain_starts_in_order(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    conf = fast_config(
        tmp_path,
        {
            "c": probe_task(requires="b"),
            "b": probe_task(requires=["a"]),
            "a": probe_task("--exit-after", "0", control="once"),
        },
    )
    taskforce.start("-f", conf)
    probes.wait(1, task="c")
    log = taskforce.wait_log("c[0]: started pid")
    assert log.index("a[0]: started pid") < log.index("b[0]: started pid")
    assert log.index("b[0]: started pid") < log.index("c[0]: started pid")


# ----- onexit -----------------------------------------------------------------------


def test_onexit_reruns_a_once_task_before_the_restart(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    conf = fast_config(
        tmp_path,
        {
            "timeset": probe_task("--exit-after", "0.2", control="once"),
            "ntpd": probe_task(requires="timeset", onexit=[{"type": "start", "task": "timeset"}]),
        },
    )
    taskforce.start("-f", conf)
    first = probes.wait(1, task="ntpd")[0]
    assert len(probes.records("exit", task="timeset")) == 1
    os.kill(first["pid"], signal.SIGKILL)
    second = probes.wait(2, task="ntpd")[1]
    exits = probes.records("exit", task="timeset")
    assert len(exits) == 2
    # ntpd came back only after timeset had run again.
    assert second["monotonic"] > exits[1]["monotonic"] > first["monotonic"]
    assert taskforce.stop() == 0
    # Stopping taskforce does not run timeset once more.
    assert len(probes.records(task="timeset")) == 2


# ----- stopping ---------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_every_task_and_exits_0(
    tmp_path: Path, taskforce: Taskforce, probes: Probes, signum: int
) -> None:
    conf = fast_config(tmp_path, {"web": probe_task(count=2), "db": probe_task()})
    # Started as a terminal's foreground command is, SIGINT at its default: a suite run as
    # a script's background job has it ignored, and taskforce then keeps ignoring it.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        taskforce.start("-f", conf)
    finally:
        signal.signal(signal.SIGINT, previous)
    started = probes.wait(3)
    assert taskforce.stop(signum) == 0
    terms = probes.records("term")
    assert sorted(r["pid"] for r in terms) == sorted(r["pid"] for r in started)
    assert not any(pid_alive(r["pid"]) for r in started)
    log = taskforce.log()
    assert f"{signal.Signals(signum).name} received" in log
    assert "taskforce exiting" in log


def test_stop_escalates_to_sigkill(tmp_path: Path, taskforce: Taskforce, probes: Probes) -> None:
    conf = fast_config(tmp_path, {"stubborn": probe_task("--ignore-term"), "polite": probe_task()})
    taskforce.start("-f", conf)
    stubborn = probes.wait(1, task="stubborn")[0]
    probes.wait(1, task="polite")
    assert taskforce.stop() == 0
    assert not pid_alive(stubborn["pid"])
    log = taskforce.log()
    assert re.search(rf"stubborn\[0\]: pid {stubborn['pid']} still running 1s after stop", log)
    assert f"pid {stubborn['pid']} killed by SIGKILL" in log
    assert probes.records("term", task="stubborn") == []
    assert len(probes.records("term", task="polite")) == 1
    assert not re.search(r"polite\[0\].*SIGKILL", log)


def test_custom_stop_command_is_used_instead_of_sigterm(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    stopper = "import os, signal, sys; os.kill(int(sys.argv[1]), signal.SIGINT)"
    conf = fast_config(
        tmp_path,
        {
            "svc": probe_task(
                commands={
                    "start": [sys.executable, PROBE],
                    "stop": [sys.executable, "-c", stopper, "{Task_pid}"],
                }
            )
        },
    )
    taskforce.start("-f", conf)
    svc = probes.wait(1, task="svc")[0]
    assert taskforce.stop() == 0
    (interrupted,) = probes.records("int", task="svc")
    assert interrupted["pid"] == svc["pid"]
    assert probes.records("term", task="svc") == []
    log = taskforce.log()
    assert f"svc[0]: stopping pid {svc['pid']} with its stop command" in log
    assert "SIGKILL" not in log


def test_stop_command_that_does_not_stop_escalates(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    conf = fast_config(
        tmp_path,
        {
            "svc": probe_task(
                commands={
                    "start": [sys.executable, PROBE, "--ignore-term"],
                    "stop": [sys.executable, "-c", "pass"],
                }
            )
        },
    )
    taskforce.start("-f", conf)
    svc = probes.wait(1, task="svc")[0]
    assert taskforce.stop() == 0
    assert not pid_alive(svc["pid"])
    assert f"pid {svc['pid']} killed by SIGKILL" in taskforce.log()


# ----- failures ---------------------------------------------------------------------


def test_crash_loop_backs_off(tmp_path: Path, taskforce: Taskforce, probes: Probes) -> None:
    settings = {
        "stop_timeout": 1,
        "restart": {"min_uptime": 5, "initial_delay": 0.1, "factor": 4, "max_delay": 60},
    }
    conf = fast_config(
        tmp_path,
        {
            "crasher": probe_task("--exit-after", "0", "--exit-code", "1"),
            "steady": probe_task(),
        },
        settings=settings,
    )
    taskforce.start("-f", conf)
    steady = probes.wait(1, task="steady")[0]
    probes.wait(4, task="crasher")
    # The fifth start is 6.4s after the fourth failure: no fork storm.
    assert len(probes.records(task="crasher")) in (4, 5)
    log = taskforce.wait_log("failure 3 in a row")
    failure = r"crasher\[0\]: pid \d+ exited 1 .*retrying in ([\d.]+)s"
    delays = [float(m[1]) for m in re.finditer(failure, log)]
    assert delays[:3] == [0.1, 0.4, 1.6]
    assert "further failures are logged one in 10" in log
    assert taskforce.running()
    # The other task was left alone.
    assert [r["pid"] for r in probes.live("steady")] == [steady["pid"]]
    assert taskforce.stop() == 0


@pytest.mark.parametrize(
    ("program", "message"),
    [
        ("no-such-program-for-taskforce", "not found in PATH"),
        ("/nonexistent/dir/program", "does not exist"),
        ("NOT-EXECUTABLE", "Permission denied"),
    ],
    ids=["not-in-path", "no-such-file", "not-executable"],
)
def test_missing_executable_is_retried_and_taskforce_keeps_running(
    tmp_path: Path, taskforce: Taskforce, probes: Probes, program: str, message: str
) -> None:
    if program == "NOT-EXECUTABLE":
        plain = tmp_path / "plain-file"
        plain.write_text("#!/bin/sh\nexit 0\n")
        plain.chmod(0o644)
        program = str(plain)
    conf = fast_config(
        tmp_path, {"ghost": {"commands": {"start": [program]}}, "good": probe_task()}
    )
    taskforce.start("-f", conf)
    good = probes.wait(1, task="good")[0]
    log = taskforce.wait_log("ghost[0]: could not start")
    assert message in log
    log = taskforce.wait_log("failure 2 in a row")
    assert re.search(r"ghost\[0\]: could not start: .*failure 2 in a row, retrying in", log)
    assert taskforce.running()
    assert pid_alive(good["pid"])
    assert "Traceback" not in log
    assert taskforce.stop() == 0


def test_unknown_user_is_reported_retried_with_backoff_and_other_tasks_run(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    conf = fast_config(
        tmp_path,
        {"alien": probe_task(user="no-such-user-for-taskforce"), "good": probe_task()},
    )
    taskforce.start("-f", conf)
    good = probes.wait(1, task="good")[0]
    log = taskforce.wait_log("unknown user")
    assert "no-such-user-for-taskforce" in log
    assert "tasks.alien.user" in log
    # Accounts can appear later: the start is retried, with backoff.
    taskforce.wait_log("alien[0]: could not start")
    log = taskforce.wait_log("failure 2 in a row")
    assert taskforce.running()
    assert pid_alive(good["pid"])
    assert probes.records(task="alien") == []
    assert "Traceback" not in log
    assert taskforce.stop() == 0


def test_nothing_is_left_running_after_stop(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    conf = fast_config(
        tmp_path,
        {
            "a": probe_task(count=2),
            "b": probe_task("--grandchild", requires="a"),
            "c": probe_task("--ignore-term"),
        },
    )
    taskforce.start("-f", conf)
    probes.wait(4)
    wait_for(lambda: len(task_processes(taskforce.marker)) == 3, what="three tasks running")
    assert taskforce.stop() == 0
    assert task_processes(taskforce.marker) == {}
