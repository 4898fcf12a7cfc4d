"""The `taskforce` command end to end: every flag, exit codes, and bad inputs.

Commands run as a user would run them (`python -m taskforce ...` as a subprocess); the
tasks are probes (tests/programs/probe.py) that record how they were started.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

import taskforce as taskforce_package
from support.config import fast_config
from support.probes import Probes, probe_task
from support.procfs import (
    pid_alive,
    proc_cmdline,
    proc_environ,
    processes_with_marker,
    task_processes,
)
from support.runner import Taskforce
from support.wait import wait_for

DEFAULT_ROLES_FILES = ("/var/local/etc/tf_roles.conf", "/usr/local/etc/tf_roles.conf")
# file:line:col: key.path: message
PROBLEM_LINE = re.compile(
    r"^(?P<file>/[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<path>\S+): (?P<msg>.+)$"
)


def output(result: Any) -> str:
    return f"{result.stdout}{result.stderr}"


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# ----- -h, -V, usage ------------------------------------------------------------------


def test_help_lists_every_flag(taskforce: Taskforce) -> None:
    result = taskforce.run("-h")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: taskforce")
    for flag in ("-h", "-V", "-v", "-q", "-e", "-b", "-p PIDFILE", "-f CONFIG_FILE"):
        assert flag in result.stdout
    for flag in ("-r ROLES_FILE", "-L", "-C", "-R", "-S", "--help", "--check-config"):
        assert flag in result.stdout


def test_version(taskforce: Taskforce) -> None:
    result = taskforce.run("-V")
    assert result.returncode == 0
    assert result.stdout.strip() == f"taskforce {taskforce_package.__version__}"


def test_bad_usage_exits_2(taskforce: Taskforce) -> None:
    result = taskforce.run("--no-such-flag")
    assert result.returncode == 2
    assert "usage:" in result.stderr
    assert "Traceback" not in output(result)


def test_schema_subcommand_prints_json(taskforce: Taskforce) -> None:
    result = taskforce.run("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert "tasks" in schema["properties"]


# ----- logging: -v, -q, -e, -L --------------------------------------------------------


def _noisy_config(tmp_path: Path) -> str:
    """A task that starts (INFO) and one that cannot (WARNING)."""
    return fast_config(
        tmp_path, {"good": probe_task(), "ghost": {"commands": {"start": ["no-such-program-x"]}}}
    )


@pytest.mark.parametrize(
    ("flags", "present", "absent"),
    [
        (["-e"], [" INFO ", " WARNING "], [" DEBUG "]),
        (["-e", "-v"], [" DEBUG ", " INFO ", " WARNING "], []),
        (["--log-stderr", "--verbose"], [" DEBUG ", " INFO "], []),
        (["-e", "-q"], [" WARNING "], [" DEBUG ", " INFO "]),
        (["-e", "--quiet"], [" WARNING "], [" DEBUG ", " INFO "]),
    ],
    ids=["default", "-v", "--verbose", "-q", "--quiet"],
)
def test_log_levels(
    tmp_path: Path,
    taskforce: Taskforce,
    probes: Probes,
    flags: list[str],
    present: list[str],
    absent: list[str],
) -> None:
    taskforce.start("-f", _noisy_config(tmp_path), flags=flags)
    probes.wait(1, task="good")
    taskforce.wait_log("ghost[0]: could not start")
    assert taskforce.stop() == 0
    log = taskforce.log()
    for level in present:
        assert level in log
    for level in absent:
        assert level not in log
    assert "no syslog socket" not in log  # -e: straight to stderr


def test_logging_name(tmp_path: Path, taskforce: Taskforce, probes: Probes) -> None:
    taskforce.start("-f", _noisy_config(tmp_path), flags=["-e", "-L", "tf-custom"])
    probes.wait(1, task="good")
    log = taskforce.wait_log("ghost[0]: could not start")
    assert f"tf-custom[{taskforce.pid}]: INFO" in log
    assert f"tf-custom[{taskforce.pid}]: WARNING ghost[0]: could not start" in log


def test_default_log_name_is_the_program_name(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    taskforce.start("-f", _noisy_config(tmp_path), flags=["-e"])
    probes.wait(1, task="good")
    assert f"taskforce[{taskforce.pid}]: INFO" in taskforce.wait_log("good[0]: started pid")


def test_without_e_logs_go_to_syslog_or_say_why_not(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    taskforce.start("-f", _noisy_config(tmp_path), flags=["-L", "tf-nosyslog"])
    probes.wait(1, task="good")
    # No syslog daemon (a container): one note, then the log on stderr.
    fallback = "no syslog socket found" in taskforce.log()
    if fallback:
        taskforce.wait_log("ghost[0]: could not start")
    assert taskforce.stop() == 0
    log = taskforce.log()
    # Never a traceback from a syslog socket nobody listens on.
    assert "Logging error" not in log and "Traceback" not in log
    if fallback:
        assert log.startswith("tf-nosyslog: no syslog socket found, logging to stderr\n")
        assert f"tf-nosyslog[{taskforce.pid}]: INFO good[0]: started pid" in log
    else:
        assert "started pid" not in log


# ----- -p PIDFILE ---------------------------------------------------------------------


def test_pidfile_holds_the_pid_while_running(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    pidfile = tmp_path / "tf.pid"
    taskforce.start("-p", str(pidfile), "-f", fast_config(tmp_path, {"svc": probe_task()}))
    probes.wait(1, task="svc")
    wait_for(lambda: read_pid(pidfile) == taskforce.pid, what="the pidfile to hold our pid")
    assert taskforce.stop() == 0
    assert not pidfile.exists()


def test_second_instance_refuses_a_held_pidfile(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    pidfile = tmp_path / "tf.pid"
    conf = fast_config(tmp_path, {"svc": probe_task()})
    taskforce.start("-p", str(pidfile), "-f", conf)
    probes.wait(1, task="svc")
    wait_for(lambda: read_pid(pidfile) == taskforce.pid, what="the pidfile")
    result = taskforce.run("-e", "-p", str(pidfile), "-f", conf)
    assert result.returncode == 2
    assert f"held by a running taskforce (pid {taskforce.pid})" in result.stderr
    assert len(probes.records(task="svc")) == 1  # the second one started nothing
    assert read_pid(pidfile) == taskforce.pid
    assert taskforce.stop() == 0


def test_pidfile_is_claimed_atomically(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    """Instances started together on one pidfile: exactly one runs, the others exit 2."""
    pidfile = tmp_path / "tf.pid"
    conf = fast_config(tmp_path, {"svc": probe_task()})
    racers = [
        subprocess.Popen(
            taskforce.command("-e", "-p", str(pidfile), "-f", conf),
            env=taskforce.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(4)
    ]
    try:
        probes.wait(1, task="svc")
        losers = wait_for(
            lambda: (
                (done := [r for r in racers if r.poll() is not None]) and len(done) == 3 and done
            ),
            what="three of the four instances to give up",
        )
        assert all(r.returncode == 2 for r in losers)
        for loser in losers:
            assert loser.stderr is not None
            assert "held by a running taskforce" in loser.stderr.read().decode()
        (winner,) = [r for r in racers if r.poll() is None]
        wait_for(lambda: read_pid(pidfile) == winner.pid, what="the winner's pid in the pidfile")
        assert len(probes.records(task="svc")) == 1
        winner.send_signal(signal.SIGTERM)
        assert winner.wait(30) == 0
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
            racer.wait(10)
            if racer.stderr is not None:
                racer.stderr.close()


def test_stale_pidfile_is_taken_over(tmp_path: Path, taskforce: Taskforce, probes: Probes) -> None:
    pidfile = tmp_path / "tf.pid"
    pidfile.write_text("999999\n")  # left by an instance that crashed
    taskforce.start("-p", str(pidfile), "-f", fast_config(tmp_path, {"svc": probe_task()}))
    probes.wait(1, task="svc")
    wait_for(lambda: read_pid(pidfile) == taskforce.pid, what="the pidfile to be taken over")
    assert taskforce.stop() == 0


def test_pidfile_dash_means_none(tmp_path: Path, taskforce: Taskforce, probes: Probes) -> None:
    conf = fast_config(tmp_path, {"svc": probe_task()})
    before = set(tmp_path.iterdir())
    default_existed = os.path.exists("/var/run/taskforce.pid")
    result = taskforce.run("-e", "-b", "-p", "-", "-f", conf)
    assert result.returncode == 0, output(result)
    probes.wait(1, task="svc")
    daemons = [
        pid
        for pid in processes_with_marker(taskforce.marker)
        if "Task_name" not in proc_environ(pid)
    ]
    assert len(daemons) == 1
    assert set(tmp_path.iterdir()) == before
    if not default_existed:
        assert not os.path.exists("/var/run/taskforce.pid")
    os.kill(daemons[0], signal.SIGTERM)
    wait_for(lambda: not processes_with_marker(taskforce.marker), what="everything to stop")


def test_pidfile_symlink_is_refused(tmp_path: Path, taskforce: Taskforce) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("precious\n")
    link = tmp_path / "tf.pid"
    link.symlink_to(target)
    result = taskforce.run(
        "-e", "-p", str(link), "-f", fast_config(tmp_path, {"svc": probe_task()})
    )
    assert result.returncode == 2
    assert "symbolic link" in result.stderr
    assert target.read_text() == "precious\n"


def test_pidfile_that_cannot_be_created_exits_3(tmp_path: Path, taskforce: Taskforce) -> None:
    pidfile = tmp_path / "no-such-dir" / "tf.pid"
    result = taskforce.run(
        "-e", "-p", str(pidfile), "-f", fast_config(tmp_path, {"s": probe_task()})
    )
    assert result.returncode == 3
    assert "cannot create pidfile" in result.stderr
    assert "Traceback" not in output(result)


# ----- -f CONFIG_FILE: unusable configurations ----------------------------------------


BROKEN_CONFIGS: list[tuple[str, str, str]] = [
    # (id, file contents, a fragment of the problem reported)
    ("malformed-yaml", "tasks: {a: {commands: {start: [x]}}\n  b: [", "did not find expected"),
    ("empty", "", "the configuration is empty"),
    ("two-documents", "tasks: {}\n---\ntasks: {}\n", "more than one YAML document"),
    (
        "duplicate-key",
        "tasks:\n  a: {commands: {start: [x]}}\n  a: {commands: {start: [y]}}\n",
        "tasks.a: duplicate key 'a'",
    ),
    ("not-a-map", "[1, 2]", "must be a map"),
    ("unknown-top-key", '{"taks": {}}', "taks: unknown key 'taks' (did you mean 'tasks'?)"),
    (
        "unknown-task-key",
        '{"tasks": {"a": {"comands": {"start": ["x"]}}}}',
        "did you mean 'commands'?",
    ),
    ("tasks-not-a-map", '{"tasks": "no"}', "tasks: expected a map"),
    ("no-start", '{"tasks": {"a": {"commands": {"stop": ["x"]}}}}', "missing the required 'start'"),
    (
        "bad-control",
        '{"tasks": {"a": {"control": "sometimes", "commands": {"start": ["x"]}}}}',
        "tasks.a.control: 'sometimes' is not one of",
    ),
    (
        "bad-count",
        '{"tasks": {"a": {"count": "many", "commands": {"start": ["x"]}}}}',
        "tasks.a.count: expected a whole number",
    ),
    (
        "bad-start-delay",
        '{"tasks": {"a": {"start_delay": "soon", "commands": {"start": ["x"]}}}}',
        "tasks.a.start_delay: expected a number",
    ),
    (
        "requires-unknown",
        '{"tasks": {"a": {"requires": ["nope"], "commands": {"start": ["x"]}}}}',
        "there is no task 'nope'",
    ),
    (
        "requires-itself",
        '{"tasks": {"a": {"requires": "a", "commands": {"start": ["x"]}}}}',
        "a task cannot require itself",
    ),
    (
        "requires-cycle",
        '{"tasks": {"a": {"requires": "b", "commands": {"start": ["x"]}},'
        ' "b": {"requires": "a", "commands": {"start": ["x"]}}}}',
        "requires cycle: a -> b -> a",
    ),
    (
        "onexit-not-once",
        '{"tasks": {"a": {"commands": {"start": ["x"]}},'
        ' "b": {"onexit": [{"type": "start", "task": "a"}], "commands": {"start": ["x"]}}}}',
        "onexit can only start a 'once' task",
    ),
    (
        "onexit-unknown",
        '{"tasks": {"b": {"onexit": [{"type": "start", "task": "zz"}],'
        ' "commands": {"start": ["x"]}}}}',
        "tasks.b.onexit[0].task: there is no task 'zz'",
    ),
    (
        "event-unknown-command",
        '{"tasks": {"a": {"commands": {"start": ["x"]},'
        ' "events": [{"type": "self", "command": "reload"}]}}}',
        "the task has no command 'reload'",
    ),
    (
        "event-bad-signal",
        '{"tasks": {"a": {"commands": {"start": ["x"]},'
        ' "events": [{"type": "self", "signal": "SIGNOPE"}]}}}',
        "'SIGNOPE' is not a signal name or number",
    ),
    (
        "event-no-action",
        '{"tasks": {"a": {"commands": {"start": ["x"]}, "events": [{"type": "self"}]}}}',
        "needs one of 'command' or 'signal'",
    ),
    (
        "event-bad-type",
        '{"tasks": {"a": {"commands": {"start": ["x"]},'
        ' "events": [{"type": "bogus", "command": "stop"}]}}}',
        "'bogus' is not one of",
    ),
    (
        "bad-setting",
        '{"settings": {"stop_timeout": -1}, "tasks": {}}',
        "settings.stop_timeout: must be greater than 0",
    ),
]


@pytest.mark.parametrize(
    ("text", "fragment"), [c[1:] for c in BROKEN_CONFIGS], ids=[c[0] for c in BROKEN_CONFIGS]
)
@pytest.mark.parametrize("check", [False, True], ids=["run", "check-config"])
def test_an_unusable_config_is_reported_where_and_what(
    tmp_path: Path, taskforce: Taskforce, check: bool, text: str, fragment: str
) -> None:
    """Run, it exits 3 naming the problem; checked (-C), it exits 1 with the problems
    each on a line of its own, at file:line:column."""
    conf = tmp_path / "broken.conf"
    conf.write_text(text)
    result = taskforce.run("-C" if check else "-e", "-f", str(conf))
    assert "Traceback" not in output(result)
    if not check:
        assert result.returncode == 3
        assert fragment in output(result)
        assert f"{conf}:" in output(result)
        return
    assert result.returncode == 1
    problems = [line for line in result.stderr.splitlines() if line.startswith(f"{conf}:")]
    assert problems and any(fragment in line for line in problems)
    for line in problems:
        assert re.match(rf"^{re.escape(str(conf))}:\d+:\d+: ", line), line


def test_not_utf8_config(tmp_path: Path, taskforce: Taskforce) -> None:
    conf = tmp_path / "latin1.conf"
    conf.write_bytes(b"tasks: {a: {commands: {start: [caf\xe9]}}}\n")
    result = taskforce.run("-C", "-f", str(conf))
    assert result.returncode == 1
    assert f"{conf}:1:" in result.stderr and "not UTF-8" in result.stderr
    result = taskforce.run("-e", "-f", str(conf))
    assert result.returncode == 3
    assert "not UTF-8" in output(result)


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_unreadable_config_file(tmp_path: Path, taskforce: Taskforce, kind: str) -> None:
    conf = tmp_path / "taskforce.conf"
    if kind == "directory":
        conf.mkdir()
    result = taskforce.run("-e", "-f", str(conf))
    assert result.returncode == 3
    out = output(result)
    assert f"{conf}: cannot read the file" in out
    assert "Traceback" not in out
    checked = taskforce.run("-C", "-f", str(conf))
    assert checked.returncode == 1
    assert f"{conf}: cannot read the file" in checked.stderr


def test_problems_in_some_tasks_leave_the_others_running(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    conf = fast_config(
        tmp_path,
        {
            "good": probe_task(),
            "looped": probe_task(defines={"A": "{B}", "B": "{A}"}),
        },
    )
    taskforce.start("-f", conf)
    probes.wait(1, task="good")
    log = taskforce.wait_log("substitution loop")
    assert "tasks.looped" in log
    assert taskforce.running()
    assert probes.records(task="looped") == []


# ----- -C ---------------------------------------------------------------------------------


def test_check_config_valid(tmp_path: Path, taskforce: Taskforce, probes: Probes) -> None:
    conf = fast_config(tmp_path, {"svc": probe_task(), "once": probe_task(control="once")})
    result = taskforce.run("-C", "-f", conf)
    assert result.returncode == 0
    assert result.stdout.strip() == f"{conf}: configuration is valid"
    assert probes.records() == []  # nothing was started
    result = taskforce.run("--check-config", "-f", conf)
    assert result.returncode == 0


def test_check_config_reports_every_problem_at_once(tmp_path: Path, taskforce: Taskforce) -> None:
    conf = tmp_path / "broken.conf"
    conf.write_text(
        "{\n"
        '  "settings": {"stop_timeout": -1},\n'
        '  "tasks": {\n'
        '    "a": {"comands": {"start": ["x"]}},\n'
        '    "b": {"control": "sometimes", "commands": {"start": ["x"]}, "requires": ["nope"]},\n'
        '    "c": {"commands": {"start": ["x"]}, "count": "many"},\n'
        '    "d": {"commands": {"start": ["x"]}, "onexit": [{"type": "start", "task": "c"}]}\n'
        "  }\n"
        "}\n"
    )
    result = taskforce.run("-C", "-f", str(conf))
    assert result.returncode == 1
    problems = [m for line in result.stderr.splitlines() if (m := PROBLEM_LINE.match(line))]
    found = {(int(m["line"]), m["path"]) for m in problems}
    assert {
        (2, "settings.stop_timeout"),
        (4, "tasks.a.comands"),
        (5, "tasks.b.control"),
        (5, "tasks.b.requires[0]"),
        (6, "tasks.c.count"),
        (7, "tasks.d.onexit[0].task"),
    } <= found
    assert all(m["file"] == str(conf) for m in problems)
    assert f"taskforce: {len(problems)} problem(s) in the configuration" in result.stderr


def test_check_config_reports_problems_found_when_resolving(
    tmp_path: Path, taskforce: Taskforce
) -> None:
    conf = fast_config(
        tmp_path,
        {
            "alien": probe_task(user="no-such-user-for-taskforce"),
            "looped": probe_task(defines={"A": "{B}", "B": "{A}"}),
        },
    )
    result = taskforce.run("-C", "-f", conf)
    assert result.returncode == 1
    assert "tasks.alien.user: unknown user 'no-such-user-for-taskforce'" in result.stderr
    assert "substitution loop" in result.stderr
    assert "2 problem(s)" in result.stderr


def test_check_config_checks_the_roles_file(tmp_path: Path, taskforce: Taskforce) -> None:
    conf = fast_config(tmp_path, {"svc": probe_task(roles=["web"])})
    roles = tmp_path / "roles"
    roles.write_text("web\ntwo words\n")
    result = taskforce.run("-C", "-f", conf, "-r", str(roles))
    assert result.returncode == 1
    assert re.search(rf"{re.escape(str(roles))}:2:\d+: .*whitespace", result.stderr)
    roles.write_text("web\n")
    assert taskforce.run("-C", "-f", conf, "-r", str(roles)).returncode == 0


# ----- -r ROLES_FILE ------------------------------------------------------------------


def _roles_config(tmp_path: Path) -> str:
    return fast_config(
        tmp_path,
        {
            "common": probe_task(),
            "web": probe_task(roles=["frontend"]),
            "db": probe_task(roles=["backend"]),
            "either": probe_task(roles=["frontend", "backend"]),
        },
    )


def _running_tasks(taskforce: Taskforce, expected: set[str]) -> set[str]:
    def names() -> set[str] | None:
        found = set(task_processes(taskforce.marker))
        return found if found == expected else None

    wait_for(names, what=f"exactly the tasks {sorted(expected)}")
    assert f"{len(expected)} task(s) in scope" in taskforce.log()
    return set(task_processes(taskforce.marker))


def test_roles_file_selects_tasks(tmp_path: Path, taskforce: Taskforce, probes: Probes) -> None:
    roles = tmp_path / "roles"
    roles.write_text("# this host\nfrontend\n")
    taskforce.start("-f", _roles_config(tmp_path), "-r", str(roles))
    expected = {"common", "web", "either"}
    probes.wait(3)
    assert _running_tasks(taskforce, expected) == expected
    assert "for roles frontend" in taskforce.log()


def test_missing_roles_file_means_no_role_is_active(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    roles = tmp_path / "no-such-roles"
    taskforce.start("-f", _roles_config(tmp_path), "-r", str(roles))
    probes.wait(1)
    assert _running_tasks(taskforce, {"common"}) == {"common"}
    assert f"roles file {roles} does not exist: no role is active" in taskforce.log()


def test_no_roles_file_turns_role_processing_off(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    if any(os.access(path, os.R_OK) for path in DEFAULT_ROLES_FILES):
        pytest.skip("a default roles file exists on this host")
    taskforce.start("-f", _roles_config(tmp_path))
    expected = {"common", "web", "db", "either"}
    probes.wait(4)
    assert _running_tasks(taskforce, expected) == expected
    assert "for roles" not in taskforce.log()


@pytest.mark.parametrize("kind", ["directory", "malformed"])
def test_unusable_roles_file_exits_3(tmp_path: Path, taskforce: Taskforce, kind: str) -> None:
    roles = tmp_path / "roles"
    if kind == "directory":
        roles.mkdir()
        fragment = f"{roles}: "
    else:
        roles.write_text("frontend\nfront end\n")
        fragment = f"{roles}:2:"
    result = taskforce.run("-e", "-f", _roles_config(tmp_path), "-r", str(roles))
    assert result.returncode == 3
    assert fragment in output(result)
    assert "Traceback" not in output(result)


# ----- -b, -S, -R -------------------------------------------------------------------------


def _fd_target(pid: int, fd: int) -> str:
    return os.readlink(f"/proc/{pid}/fd/{fd}")


def test_background_stop_and_second_instance(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    pidfile = tmp_path / "pidfile"
    conf = fast_config(tmp_path, {"svc": probe_task(count=2), "other": probe_task()})
    result = taskforce.run("-e", "-b", "-p", str(pidfile), "-f", conf, timeout=30)
    assert result.returncode == 0, output(result)
    pid = read_pid(pidfile)
    assert pid is not None and pid_alive(pid)
    assert proc_cmdline(pid)[1:3] == ["-m", "taskforce"]
    # Detached: its own session, no terminal, stdio on /dev/null, cwd /, not our child.
    assert os.getsid(pid) != os.getsid(0)
    assert all(_fd_target(pid, fd) == "/dev/null" for fd in (0, 1, 2))
    assert os.readlink(f"/proc/{pid}/cwd") == "/"
    records = probes.wait(3)
    assert {r["env"]["Task_ppid"] for r in records} == {str(pid)}

    second = taskforce.run("-e", "-b", "-p", str(pidfile), "-f", conf, timeout=30)
    assert second.returncode == 2
    assert f"held by a running taskforce (pid {pid})" in second.stderr
    assert read_pid(pidfile) == pid

    stopped = taskforce.run("-e", "-S", "-p", str(pidfile), timeout=60)
    assert stopped.returncode == 0, output(stopped)
    assert f"taskforce pid {pid} stopped" in stopped.stdout
    # -S returns once the instance has stopped everything and let go of the pidfile.
    assert not any(pid_alive(r["pid"]) for r in records)
    assert len(probes.records("term")) == 3
    assert not pidfile.exists()
    wait_for(lambda: not pid_alive(pid), what="the background taskforce to exit")
    wait_for(lambda: not processes_with_marker(taskforce.marker), what="nothing left")


def test_background_config_error_exits_3(tmp_path: Path, taskforce: Taskforce) -> None:
    conf = tmp_path / "broken.conf"
    conf.write_text('{"tasks": {"a": {"control": "sometimes", "commands": {"start": ["x"]}}}}')
    pidfile = tmp_path / "pidfile"
    result = taskforce.run("-e", "-b", "-p", str(pidfile), "-f", str(conf), timeout=30)
    assert result.returncode == 3
    assert f"{conf}:1:" in result.stderr and "'sometimes' is not one of" in result.stderr
    assert "Traceback" not in output(result)
    wait_for(lambda: not processes_with_marker(taskforce.marker), what="the daemon to exit")
    assert not pidfile.exists()


def test_background_with_relative_paths_and_reset(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    fast_config(tmp_path, {"svc": probe_task(roles=["web"]), "db": probe_task(roles=["db"])})
    (tmp_path / "roles").write_text("web\n")
    args = ["-e", "-p", "tf.pid", "-f", "taskforce.conf", "-r", "roles"]
    result = taskforce.run("-b", *args, cwd=tmp_path, timeout=30)
    assert result.returncode == 0, output(result)
    pidfile = tmp_path / "tf.pid"
    pid = read_pid(pidfile)
    assert pid is not None
    first = probes.wait(1, task="svc")[0]
    assert probes.records(task="db") == []

    reset = taskforce.run("-R", *args, cwd=tmp_path, timeout=30)
    assert reset.returncode == 0, output(reset)
    assert f"taskforce pid {pid}: reset requested" in reset.stdout
    # The same process re-executed itself, from the same (relative) paths, and started
    # the tasks again.
    second = probes.wait(2, task="svc")[1]
    assert second["pid"] != first["pid"]
    assert not pid_alive(first["pid"])
    assert second["env"]["Task_ppid"] == str(pid)
    assert pid_alive(pid) and read_pid(pidfile) == pid
    assert os.readlink(f"/proc/{pid}/cwd") == "/"
    assert probes.records(task="db") == []

    stopped = taskforce.run("-S", *args, cwd=tmp_path, timeout=60)
    assert stopped.returncode == 0, output(stopped)
    assert not pid_alive(second["pid"])
    wait_for(lambda: not pid_alive(pid), what="the background taskforce to exit")


def test_reset_of_a_foreground_instance(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    pidfile = tmp_path / "tf.pid"
    taskforce.start("-p", str(pidfile), "-f", fast_config(tmp_path, {"svc": probe_task(count=2)}))
    first = probes.wait(2)
    wait_for(lambda: read_pid(pidfile) == taskforce.pid, what="the pidfile")
    result = taskforce.run("-e", "--reset", "-p", str(pidfile))
    assert result.returncode == 0, output(result)
    records = probes.wait(4)
    assert {r["pid"] for r in records[2:]}.isdisjoint(r["pid"] for r in first)
    assert not any(pid_alive(r["pid"]) for r in first)
    log = taskforce.wait_log("re-executing itself")
    assert "SIGHUP received" in log
    assert taskforce.running()
    wait_for(lambda: read_pid(pidfile) == taskforce.pid, what="the pidfile after the reset")
    assert taskforce.run("-e", "--stop", "-p", str(pidfile)).returncode == 0
    assert taskforce.proc is not None and taskforce.proc.wait(30) == 0


@pytest.mark.parametrize("flag", ["-S", "-R"])
def test_stop_or_reset_with_nothing_running_exits_1(
    tmp_path: Path, taskforce: Taskforce, flag: str
) -> None:
    pidfile = tmp_path / "tf.pid"
    result = taskforce.run("-e", flag, "-p", str(pidfile))
    assert result.returncode == 1
    assert "does not exist" in result.stderr
    pidfile.write_text(f"{os.getpid()}\n")  # stale: no taskforce holds it
    result = taskforce.run("-e", flag, "-p", str(pidfile))
    assert result.returncode == 1
    assert "stale" in result.stderr
    assert pid_alive(os.getpid())  # and it did not signal the pid written in it


def test_stop_needs_a_pidfile(taskforce: Taskforce) -> None:
    result = taskforce.run("-e", "-S", "-p", "-")
    assert result.returncode == 2
    assert "need a pidfile" in result.stderr
