"""The client and the control plane, end to end: which instance a command reaches, what
it waits for, what it says and logs (issue 13, points 1-4 and 20).

Every taskforce here gets its own XDG_RUNTIME_DIR (a short temporary directory: socket
paths are limited to ~107 bytes), so that neither its default socket nor its record of
where it listens meets another test's, or another user's.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from support.config import write_config
from support.probes import Probes, probe_task
from support.procfs import pid_alive
from support.runner import Taskforce
from support.wait import wait_for
from taskforce.cli.client import Client, ClientError, Endpoint

FAST: dict[str, Any] = {
    "stop_timeout": 2,
    "restart": {"min_uptime": 0.5, "initial_delay": 0.1, "factor": 2, "max_delay": 1},
}


def config(tmp_path: Path, tasks: dict[str, Any], name: str = "taskforce.conf", **top: Any) -> str:
    top.setdefault("settings", FAST)
    return str(write_config(tmp_path / name, tasks, **top))


def output(result: Any) -> str:
    return f"{result.stdout}{result.stderr}"


@pytest.mark.parametrize(
    "argv",
    [
        ["fleet", "status", "--etcd", "etcd://127.0.0.1:1/fleet/config"],
        ["fleet", "push", "--etcd", "etcd://127.0.0.1:1/fleet/config", "x.conf"],
        ["-e", "-f", "etcd://127.0.0.1:1/fleet/config"],
        ["-C", "-f", "etcd://127.0.0.1:1/fleet/config"],
    ],
)
def test_the_fleet_without_its_extra_says_what_to_install(
    tmp_path: Path, taskforce: Taskforce, argv: list[str]
) -> None:
    # A module of that name that cannot be imported: as if the extra were not installed.
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "aetcd.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'aetcd'\", name='aetcd')\n"
    )
    taskforce.env["PYTHONPATH"] = str(hide)
    result = taskforce.run(*argv, timeout=30)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "pip install 'taskforce[fleet]'" in result.stderr
    assert "Traceback" not in result.stderr


# ----- 1. never the wrong instance --------------------------------------------------------


def _serve(taskforce: Taskforce, conf: str, *args: str) -> str:
    """Start taskforce; the client command it logs as the one that reaches it."""
    taskforce.start("-f", conf, *args)
    log = taskforce.wait_log("clients reach this taskforce with: ")
    return log.split("clients reach this taskforce with: ")[1].splitlines()[0]


def test_status_finds_an_instance_by_its_pidfile_wherever_it_listens(
    tmp_path: Path, runtime: Path, taskforce: Taskforce
) -> None:
    own = runtime / "ctl"
    own.mkdir(mode=0o700)
    http = [{"listen": str(own / "api.sock"), "allow_control": True}]
    conf = config(tmp_path, {"svc": probe_task()}, settings={**FAST, "http": http})
    pidfile = runtime / "tf.pid"
    command = _serve(taskforce, conf, "-p", str(pidfile))
    assert command == f"taskforce -p {pidfile} status"
    wait_for(lambda: _state(taskforce, "-p", str(pidfile)) == "running", what="svc running")
    # The command logged works as it is, and so does a plain one: it is the only instance.
    for argv in (command.split()[1:], ["status"]):
        result = taskforce.run(*argv)
        assert result.returncode == 0, output(result)
        assert result.stdout.splitlines()[1].split()[0] == "svc"
    # A failure names the server asked, and how it was found.
    result = taskforce.run("status", "-p", str(pidfile), "nosuch")
    assert result.returncode == 1
    assert "no task named 'nosuch'" in result.stderr
    assert f"server: {own / 'api.sock'} (recorded beside -p {pidfile})" in result.stderr


def test_several_instances_are_never_guessed_between(
    tmp_path: Path, runtime: Path, taskforce: Taskforce
) -> None:
    conf = config(tmp_path, {"svc": probe_task()})
    first = _serve(taskforce, conf, "-p", str(runtime / "a.pid"))
    other = Taskforce(tmp_path / "other", taskforce.marker)
    other.env = taskforce.env
    second = _serve(other, conf, "-p", str(runtime / "b.pid"))
    try:
        result = taskforce.run("status")
        assert result.returncode == 2
        assert "2 taskforce instances are running" in result.stderr
        assert f"-p {runtime / 'a.pid'}" in result.stderr
        assert f"-p {runtime / 'b.pid'}" in result.stderr
        for command in (first, second):
            assert taskforce.run(*command.split()[1:]).returncode == 0
    finally:
        other.cleanup()


def test_upgrade_goes_to_the_named_server_only(
    tmp_path: Path, runtime: Path, taskforce: Taskforce
) -> None:
    conf = config(tmp_path, {"svc": probe_task()})
    assert _serve(taskforce, conf) == "taskforce status"  # at the default socket
    elsewhere = runtime / "elsewhere.sock"
    taskforce.env["TASKFORCE_SERVER"] = str(elsewhere)
    for argv in (["upgrade"], ["upgrade", "--server", str(elsewhere)]):
        result = taskforce.run(*argv)
        assert result.returncode == 4, output(result)
        assert f"cannot reach taskforce at {elsewhere} (" in result.stderr
    taskforce.env.pop("TASKFORCE_SERVER")
    assert "upgrade" not in taskforce.log()
    result = taskforce.run("upgrade")
    assert result.returncode == 0, output(result)
    taskforce.wait_log("upgrade: took over")


def test_check_with_no_pidfile_plans_against_no_instance(
    tmp_path: Path, runtime: Path, taskforce: Taskforce
) -> None:
    conf = config(tmp_path, {"svc": probe_task()})
    _serve(taskforce, conf)  # at the default socket
    other = config(tmp_path, {"svc": probe_task(), "new": probe_task()}, name="other.conf")
    result = taskforce.run("-C", "-f", other, "-p", "-")
    assert result.returncode == 0, output(result)
    assert "applied to" not in result.stdout and "plan" not in result.stdout
    # Found only by default, an instance running another file is not compared with.
    result = taskforce.run("-C", "-f", other)
    assert result.stdout == f"{other}: configuration is valid\n"
    # Named, it is.
    socket = runtime / "taskforce.sock"
    result = taskforce.run("-C", "-f", other, "--server", str(socket))
    assert f"applied to the taskforce running at {socket} (given by --server)" in result.stdout
    assert "  start: new" in result.stdout


def _state(taskforce: Taskforce, *argv: str, task: str = "svc") -> str | None:
    result = taskforce.run("status", "--json", *argv, task)
    if result.returncode not in (0, 3):
        return None
    return str(json.loads(result.stdout)[task]["state"])


# ----- 2. commands that finish what they say ----------------------------------------------


def test_stop_and_restart_return_once_done(
    tmp_path: Path, runtime: Path, taskforce: Taskforce, probes: Probes
) -> None:
    # SIGTERM is ignored: each stop lasts until taskforce's SIGKILL, stop_timeout later.
    tasks = {"slow": probe_task("--ignore-term", count=2), "quick": probe_task()}
    _serve(taskforce, config(tmp_path, tasks))
    probes.wait(1, task="quick")
    first = {r["pid"] for r in probes.wait(2, task="slow")}
    result = taskforce.run("restart", "slow")
    assert result.returncode == 0, output(result)
    assert result.stdout == "slow: restarted\n"
    slow = json.loads(taskforce.run("status", "--json", "slow").stdout)["slow"]
    now = {p["pid"] for p in slow["processes"]}
    assert len(now) == 2 and now.isdisjoint(first) and all(map(pid_alive, now))
    assert not any(map(pid_alive, first))

    result = taskforce.run("stop", "all")
    assert result.returncode == 0, output(result)
    assert sorted(result.stdout.splitlines()) == ["quick: stopped", "slow: stopped"]
    assert not any(pid_alive(r["pid"]) for r in probes.records())
    # Stopped on purpose: the wanted state.
    assert taskforce.run("status").returncode == 0
    result = taskforce.run("start", "all")
    assert result.returncode == 0, output(result)
    wait_for(lambda: taskforce.run("status").returncode == 0 and len(probes.live()) == 3)


def test_a_stop_past_its_timeout_says_what_is_left(
    tmp_path: Path, runtime: Path, taskforce: Taskforce, probes: Probes
) -> None:
    settings = {**FAST, "stop_timeout": 60}
    _serve(taskforce, config(tmp_path, {"svc": probe_task("--ignore-term")}, settings=settings))
    pid = probes.wait(1)[0]["pid"]
    result = taskforce.run("stop", "--timeout", "0.5", "svc")
    assert result.returncode == 1
    assert f"svc: still running: pid {pid} (stopping) after 0.5s" in result.stderr
    # --no-wait returns at once, as before.
    result = taskforce.run("restart", "--no-wait", "svc")
    assert (result.returncode, result.stdout) == (0, "svc: restart requested\n")


# Two failures and it gives up. Every end is a failure, however long the interpreter takes
# to start and exit on a busy machine: a run that outlived min_uptime would reset the count.
GIVES_UP = {"max_failures": 2, "min_uptime": 60}


def test_scale_relative_and_status_exit_codes(
    tmp_path: Path, runtime: Path, taskforce: Taskforce, probes: Probes
) -> None:
    tasks = {
        "svc": probe_task(count=2),
        # Gives up after two failures: it stays `failed`, where a task backing off would
        # be running now and then, between its tries.
        "crash": probe_task("--exit-code", "1", "--exit-after", "0", restart=GIVES_UP),
    }
    _serve(taskforce, config(tmp_path, tasks))
    wait_for(lambda: _state(taskforce) == "running", what="svc running")
    wait_for(lambda: _state(taskforce, task="crash") == "failed", what="crash failed")
    assert taskforce.run("status", "svc").returncode == 0
    result = taskforce.run("status", "crash", "svc")
    assert result.returncode == 3, output(result)
    result = taskforce.run("status", "nosuch")
    assert (result.returncode, result.stdout) == (1, "")
    assert "no task named 'nosuch'" in result.stderr

    result = taskforce.run("scale", "svc", "+1")
    assert (result.returncode, result.stdout) == (0, "svc: count set to 3\n"), output(result)
    result = taskforce.run("scale", "svc", "-2")
    assert (result.returncode, result.stdout) == (0, "svc: count set to 1\n"), output(result)
    result = taskforce.run("scale", "svc", "-2")
    assert result.returncode == 1
    assert "cannot remove 2 of its 1 process(es)" in result.stderr
    wait_for(lambda: len(probes.live("svc")) == 1, what="svc scaled to 1")


def test_status_of_many_tasks_shows_a_summary_and_what_is_not_as_wanted(
    tmp_path: Path, runtime: Path, taskforce: Taskforce, probes: Probes
) -> None:
    # More than NOT_A_TERMINAL_ROWS (the client's output is a pipe here): configured, not
    # run, but for one that runs and one that gives up.
    tasks: dict[str, Any] = {f"idle-{i:02d}": {**probe_task(), "control": "off"} for i in range(60)}
    tasks["svc"] = probe_task()
    tasks["crash"] = probe_task("--exit-code", "1", "--exit-after", "0", restart=GIVES_UP)
    _serve(taskforce, config(tmp_path, tasks))
    wait_for(lambda: _state(taskforce) == "running", what="svc running")
    wait_for(lambda: _state(taskforce, task="crash") == "failed", what="crash failed")

    result = taskforce.run("status")
    assert result.returncode == 3, output(result)
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "62 tasks: 1 running, 1 failed, 60 off; 1 not in their wanted state, listed below "
        "(--all lists every task)"
    )
    assert [line.split()[0] for line in lines[1:]] == ["TASK", "crash"]

    result = taskforce.run("status", "--all")
    assert result.returncode == 3
    assert len(result.stdout.splitlines()) == 1 + 62  # the header and every task

    result = taskforce.run("status", "idle-1*", "svc")
    assert result.returncode == 0, output(result)
    names = [line.split()[0] for line in result.stdout.splitlines()[1:]]
    assert names == [*(f"idle-{i}" for i in range(10, 20)), "svc"]
    result = taskforce.run("status", "--json", "svc", "nosuch")
    assert result.returncode == 1 and list(json.loads(result.stdout)) == ["svc"]


# ----- 20. no gap in the control socket across a restart in place -------------------------


def test_clients_are_answered_throughout_an_upgrade(
    tmp_path: Path, runtime: Path, taskforce: Taskforce, probes: Probes
) -> None:
    pidfile = runtime / "tf.pid"
    taskforce.start("-f", config(tmp_path, {"svc": probe_task()}), "-p", str(pidfile))
    line = "HTTP service listening on"
    taskforce.wait_log(line)
    first = probes.wait(1)[0]["pid"]
    client = Client(Endpoint("unix", str(runtime / "tf.sock")), timeout=30)
    failures: list[str] = []
    answered = [0]
    done = threading.Event()

    def ask() -> None:
        while not done.is_set():
            try:
                client.get("/status/version")
                answered[0] += 1
            except ClientError as exc:
                failures.append(exc.message)
            done.wait(0.005)  # a client asking about 200 times a second

    asker = threading.Thread(target=ask)
    asker.start()
    try:
        result = taskforce.run("upgrade", "-p", str(pidfile))
        assert result.returncode == 0, output(result)
        wait_for(lambda: taskforce.log().count(line) >= 2, what="the upgrade")
        seen = answered[0]
        wait_for(lambda: answered[0] > seen + 5, what="answers after the re-exec")
        # The task kept running through it, untouched.
        assert [r["pid"] for r in probes.records()] == [first] and pid_alive(first)
    finally:
        done.set()
        asker.join(30)
    assert failures == []
    # The socket handed over is not handed on to the tasks the new image starts.
    assert taskforce.run("scale", "-p", str(pidfile), "svc", "+1").returncode == 0
    pid = probes.wait(2)[-1]["pid"]
    links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    assert not [link for link in links if link.startswith("socket:")]


# ----- 3. logs that say what happened -----------------------------------------------------


def test_control_actions_are_logged_as_such_with_their_origin(
    tmp_path: Path, runtime: Path, taskforce: Taskforce, probes: Probes
) -> None:
    _serve(taskforce, config(tmp_path, {"svc": probe_task(count=2)}))
    probes.wait(2)
    socket = runtime / "taskforce.sock"
    for argv in (["stop", "svc"], ["start", "svc"], ["scale", "svc", "3"], ["restart", "svc"]):
        result = taskforce.run(*argv)
        assert result.returncode == 0, output(result)
    log = taskforce.wait_log(f"restart: svc (requested over unix:{socket})")
    for line in ("stop: svc", "start: svc", "scale: svc to 3"):
        assert f"{line} (requested over unix:{socket})" in log
    assert "configuration reloaded" not in log


def test_a_log_file_in_json_reopened_after_rotation(
    tmp_path: Path, runtime: Path, taskforce: Taskforce, probes: Probes
) -> None:
    log_file = tmp_path / "tf.log"
    conf = config(tmp_path, {"svc": probe_task()})
    taskforce.start("-f", conf, "--log-file", str(log_file), "--log-format", "json")
    wait_for(lambda: log_file.exists() and "clients reach" in log_file.read_text(), what="log")
    probes.wait(1)
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert {"time", "level", "name", "pid", "message"} <= set(lines[0])
    assert any(line["message"].startswith("svc[0]: started pid") for line in lines)
    # Rotated (renamed away, as logrotate does), then SIGUSR1: a new file at the path.
    log_file.rename(tmp_path / "tf.log.1")
    os.kill(taskforce.pid, signal.SIGUSR1)
    wait_for(lambda: log_file.exists() and "SIGUSR1 received" in log_file.read_text())
    assert taskforce.run("stop", "svc").returncode == 0
    wait_for(lambda: "stop: svc (requested over" in log_file.read_text(), what="stop logged")
    assert all(json.loads(line) for line in log_file.read_text().splitlines())


@pytest.mark.skipif(
    any(os.path.exists(p) for p in ("/dev/log", "/var/run/syslog")),
    reason="a syslog socket may be there: this is about hosts without one",
)
def test_a_daemon_without_syslog_keeps_its_log(tmp_path: Path, taskforce: Taskforce) -> None:
    pidfile = tmp_path / "tf.pid"
    conf = config(tmp_path, {"svc": probe_task()})
    result = taskforce.run("-b", "-p", str(pidfile), "-f", conf)
    assert result.returncode == 0, output(result)
    assert f"logging to {pidfile}.log" in result.stderr
    wait_for(lambda: "svc[0]: started pid" in Path(f"{pidfile}.log").read_text(), what="log")
    assert taskforce.run("-S", "-p", str(pidfile)).returncode == 0
