"""How task processes are made: environment, identity, cwd, argv[0], stdio, reaping.

Each test runs `taskforce` on probe tasks (tests/programs/probe.py) that record how they
were started, and compares that with the configuration.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.config import fast_config
from support.probes import PROBE, Probes, probe_task
from support.procfs import parent_pid, pid_alive, proc_cmdline, zombies_of
from support.runner import Taskforce
from support.wait import wait_for

# An interpreter that any user may run (the test venv's may live under /root).
SYSTEM_PYTHON = next(
    (p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.access(p, os.X_OK)), None
)


# ----- the context as the environment -----------------------------------------------


def test_whole_context_becomes_the_environment(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    roles = tmp_path / "roles"
    roles.write_text("web\ndc=east-1\n")
    workdir = tmp_path / "work"
    workdir.mkdir()
    conf = fast_config(
        tmp_path,
        {
            "svc": probe_task(
                count=2,
                cwd=str(workdir),
                pidfile=str(tmp_path / "{Task_name}-{Task_instance}.pid"),
                defines={"LISTEN": "{HOST_PART}:80{Task_instance}"},
                defaults={"ONLY_DEFAULT": "d", "TF_TEST_MARKER": "overridden?"},
            )
        },
        defines={"HOST_PART": "{Task_host}", "GLOBAL": "g"},
        role_defines={"web": {"WEB": "yes"}, "db": {"DB": "yes"}},
    )
    taskforce.start("-f", conf, "-r", str(roles))
    records = probes.wait(2, task="svc")
    for rec in records:
        env, instance = rec["env"], rec["env"]["Task_instance"]
        assert env["Task_name"] == "svc"
        assert env["Task_pid"] == str(rec["pid"])
        assert env["Task_ppid"] == str(taskforce.pid)
        assert env["Task_pidfile"] == str(tmp_path / f"svc-{instance}.pid")
        assert env["Task_cwd"] == str(workdir)
        assert env["Task_uid"] == str(os.getuid())
        assert env["Task_gid"] == str(os.getgid())
        assert "Task_user" not in env and "Task_group" not in env
        assert env["Task_host"] == socket.gethostname().split(".")[0]
        assert env["Task_fqdn"] == socket.getfqdn(socket.gethostname())
        assert env["Task_role_dc"] == "east-1"
        assert env["LISTEN"] == f"{env['Task_host']}:80{instance}"
        assert env["GLOBAL"] == "g" and env["ONLY_DEFAULT"] == "d"
        assert env["WEB"] == "yes" and "DB" not in env
        # taskforce's own environment is passed on; a default does not override it.
        assert env["TF_TEST_MARKER"] == taskforce.marker
        assert env["PATH"] == taskforce.env["PATH"]
    assert sorted(r["env"]["Task_instance"] for r in records) == ["0", "1"]


def test_task_pid_in_arguments_is_the_real_pid(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    conf = fast_config(tmp_path, {"svc": probe_task("--tag", "pid={Task_pid}")})
    taskforce.start("-f", conf)
    rec = probes.wait(1, task="svc")[0]
    assert rec["argv"][1:] == ["--tag", f"pid={rec['pid']}"]


def test_stdin_is_dev_null_and_own_session(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    conf = fast_config(tmp_path, {"svc": probe_task()})
    taskforce.start("-f", conf)
    rec = probes.wait(1, task="svc")[0]
    assert rec["stdio"] == ["/dev/null", "/dev/null", "/dev/null"]
    assert rec["sid"] == rec["pid"] and rec["pgid"] == rec["pid"]
    assert rec["ppid"] == taskforce.pid


def test_program_name_is_looked_up_in_the_context_path(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "my-probe"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{PROBE}" "$@"\n')
    script.chmod(0o755)
    assert shutil.which("my-probe", path=taskforce.env["PATH"]) is None
    conf = fast_config(
        tmp_path,
        {
            "svc": {
                # A define referring to its own name extends the value it overrides.
                "defines": {"PATH": f"{bindir}:{{PATH}}"},
                "commands": {"start": ["my-probe", "--flag"]},
            }
        },
    )
    taskforce.start("-f", conf)
    rec = probes.wait(1, task="svc")[0]
    assert rec["argv"][1:] == ["--flag"]
    assert rec["env"]["PATH"].startswith(f"{bindir}:")


# ----- cwd and procname -------------------------------------------------------------


def test_cwd(tmp_path: Path, taskforce: Taskforce, probes: Probes) -> None:
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    conf = fast_config(tmp_path, {"svc": probe_task(cwd=str(workdir)), "plain": probe_task()})
    taskforce.start("-f", conf, cwd=tmp_path)
    assert probes.wait(1, task="svc")[0]["cwd"] == str(workdir)
    assert probes.wait(1, task="plain")[0]["cwd"] == str(tmp_path)


def test_missing_cwd_is_reported_and_retried(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    conf = fast_config(
        tmp_path, {"svc": probe_task(cwd=str(tmp_path / "missing")), "good": probe_task()}
    )
    taskforce.start("-f", conf)
    probes.wait(1, task="good")
    log = taskforce.wait_log("failure 2 in a row")
    assert "svc[0]: could not start" in log and "is not a directory" in log
    assert taskforce.running()
    assert taskforce.stop() == 0


def test_procname_sets_argv0(tmp_path: Path, taskforce: Taskforce, probes: Probes) -> None:
    conf = fast_config(
        tmp_path, {"pool": probe_task(count=2, procname="{Task_name}-{Task_instance}")}
    )
    taskforce.start("-f", conf)
    for rec in probes.wait(2, task="pool"):
        expected = f"pool-{rec['env']['Task_instance']}"
        assert proc_cmdline(rec["pid"])[:2] == [expected, PROBE]
        assert rec["orig_argv"][0] == expected
        # The program run is still the configured one.
        assert os.path.realpath(f"/proc/{rec['pid']}/exe") == os.path.realpath(sys.executable)


# ----- user and group -----------------------------------------------------------------


def _account_with_supplementary_groups() -> pwd.struct_passwd | None:
    for entry in pwd.getpwall():
        if entry.pw_uid != 0 and len(os.getgrouplist(entry.pw_name, entry.pw_gid)) > 1:
            return entry
    return None


@pytest.fixture
def shared_probes() -> Iterator[Probes]:
    """A probe directory any user can write to (tmp_path is private to root)."""
    if os.geteuid() != 0:
        pytest.skip("switching users needs root")
    if SYSTEM_PYTHON is None:
        pytest.skip("no system python3 that other users can run")
    directory = Path(tempfile.mkdtemp(prefix="taskforce-probes-"))
    directory.chmod(0o1777)
    try:
        yield Probes(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def user_task(probes: Probes, **keys: Any) -> dict[str, Any]:
    assert SYSTEM_PYTHON is not None
    keys.setdefault("defines", {})["PROBE_DIR"] = str(probes.dir)
    keys.setdefault("cwd", "/")
    return probe_task(python=SYSTEM_PYTHON, **keys)


def named(name: str, kind: str) -> Any:
    try:
        return pwd.getpwnam(name) if kind == "user" else grp.getgrnam(name)
    except KeyError:
        pytest.skip(f"no {kind} {name!r} on this host")


def test_user_sets_uid_gid_and_groups(
    tmp_path: Path, taskforce: Taskforce, shared_probes: Probes
) -> None:
    nobody = named("nobody", "user")
    conf = fast_config(tmp_path, {"svc": user_task(shared_probes, user="nobody")})
    taskforce.start("-f", conf)
    rec = shared_probes.wait(1, task="svc")[0]
    assert (rec["uid"], rec["gid"]) == (nobody.pw_uid, nobody.pw_gid)
    assert sorted(rec["groups"]) == sorted(os.getgrouplist("nobody", nobody.pw_gid))
    assert 0 not in rec["groups"]  # root's groups are dropped
    env = rec["env"]
    assert env["Task_user"] == "nobody"
    assert env["Task_uid"] == str(nobody.pw_uid)
    assert env["Task_gid"] == str(nobody.pw_gid)
    assert taskforce.stop() == 0
    assert not pid_alive(rec["pid"])


def test_supplementary_groups_come_from_the_user(
    tmp_path: Path, taskforce: Taskforce, shared_probes: Probes
) -> None:
    account = _account_with_supplementary_groups()
    if account is None:
        pytest.skip("no account with supplementary groups on this host")
    conf = fast_config(tmp_path, {"svc": user_task(shared_probes, user=account.pw_uid)})
    taskforce.start("-f", conf)
    rec = shared_probes.wait(1, task="svc")[0]
    assert rec["uid"] == account.pw_uid and rec["gid"] == account.pw_gid
    expected = os.getgrouplist(account.pw_name, account.pw_gid)
    assert sorted(rec["groups"]) == sorted(expected)
    assert rec["env"]["Task_uid"] == str(account.pw_uid)


def test_user_and_group(tmp_path: Path, taskforce: Taskforce, shared_probes: Probes) -> None:
    nobody = named("nobody", "user")
    nogroup = named("nogroup", "group")
    root_group = grp.getgrgid(0).gr_name
    conf = fast_config(
        tmp_path,
        {
            "both": user_task(shared_probes, user="nobody", group=root_group),
            "group_only": user_task(shared_probes, group="nogroup"),
        },
    )
    taskforce.start("-f", conf)
    both = shared_probes.wait(1, task="both")[0]
    assert (both["uid"], both["gid"]) == (nobody.pw_uid, 0)
    assert sorted(both["groups"]) == sorted(os.getgrouplist("nobody", 0))
    assert both["env"]["Task_group"] == root_group
    assert both["env"]["Task_gid"] == "0"
    assert both["env"]["Task_uid"] == str(nobody.pw_uid)
    only = shared_probes.wait(1, task="group_only")[0]
    assert (only["uid"], only["gid"]) == (0, nogroup.gr_gid)
    assert only["groups"] == [nogroup.gr_gid]
    assert only["env"]["Task_group"] == "nogroup"
    assert only["env"]["Task_gid"] == str(nogroup.gr_gid)
    assert only["env"]["Task_uid"] == "0"
    assert "Task_user" not in only["env"]


def test_stop_command_runs_as_the_task_user(
    tmp_path: Path, taskforce: Taskforce, shared_probes: Probes
) -> None:
    assert SYSTEM_PYTHON is not None
    nobody = named("nobody", "user")
    stopper = (
        "import os, signal, sys; open(sys.argv[2], 'w').write(str(os.getuid())); "
        "os.kill(int(sys.argv[1]), signal.SIGINT)"
    )
    stopper_uid = shared_probes.dir / "stopper-uid"
    task = user_task(shared_probes, user="nobody")
    task["commands"]["stop"] = [SYSTEM_PYTHON, "-c", stopper, "{Task_pid}", str(stopper_uid)]
    conf = fast_config(tmp_path, {"svc": task})
    taskforce.start("-f", conf)
    rec = shared_probes.wait(1, task="svc")[0]
    assert rec["uid"] == nobody.pw_uid
    assert taskforce.stop() == 0
    assert stopper_uid.read_text() == str(nobody.pw_uid)
    assert [r["pid"] for r in shared_probes.records("int", task="svc")] == [rec["pid"]]
    assert "SIGKILL" not in taskforce.log()


# ----- reaping ----------------------------------------------------------------------


def test_orphaned_grandchildren_are_reaped(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    conf = fast_config(tmp_path, {"forker": probe_task("--orphan", "--orphan-life", "1", count=2)})
    taskforce.start("-f", conf)
    records = probes.wait(2, task="forker")
    for rec in records:
        # Its parent exited: it now belongs to taskforce, the child subreaper.
        assert parent_pid(rec["orphan"]) in (taskforce.pid, None)
    for rec in records:
        taskforce.wait_log(f"reaped orphan pid {rec['orphan']}")
        assert parent_pid(rec["orphan"]) is None  # reaped, not left a zombie
    assert "acting as child subreaper" in taskforce.log()
    assert zombies_of(taskforce.pid) == []
    assert all(pid_alive(rec["pid"]) for rec in records)  # the tasks are untouched
    assert taskforce.stop() == 0


def test_process_group_is_killed_when_the_task_exits(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    conf = fast_config(
        tmp_path, {"leader": probe_task("--grandchild", "--exit-after", "0.5", control="once")}
    )
    taskforce.start("-f", conf)
    rec = probes.wait(1, task="leader")[0]
    child = rec["grandchild"]
    assert pid_alive(child) or parent_pid(child) is None
    probes.wait(1, "exit", task="leader")
    log = taskforce.wait_log(f"killed what pid {rec['pid']} left in its process group")
    wait_for(lambda: parent_pid(child) is None, what="the left-over child to be reaped")
    assert zombies_of(taskforce.pid) == []
    assert taskforce.running()
    assert "Traceback" not in log
    assert taskforce.stop() == 0
