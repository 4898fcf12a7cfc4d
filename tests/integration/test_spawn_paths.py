"""Both ways of creating a process (vfork in C, fork in Python) give the same child.

Each test runs a small shell command through `process.spawn` and compares what the child
saw: its pid in argv and environment, its session, its signal state, its descriptors, its
directory and credentials, and the words of a failure.
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import stat
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest

from taskforce.core.spec import TASK_PID_MARKER, UNLIMITED
from taskforce.runtime.processes import spawn as process

# _vfork: the C extension as processes/spawn.py imported it, None where it could not be built.
PATHS = ["fork"] + (["vfork"] if process._vfork is not None else [])  # type: ignore[attr-defined]


@dataclass
class Launch:
    """The parts of a LaunchSpec that process.spawn reads."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=lambda: {"PATH": "/usr/bin:/bin"})
    program: str = "sh"
    cwd: str | None = None
    user: str | int | None = None
    group: str | int | None = None
    no_new_privs: bool = False
    # ProcessLimits, as JSON: rlimits [[name, soft, hard]...], umask, nice, oom_score_adj.
    limits: dict[str, object] = field(default_factory=dict)


@pytest.fixture(params=PATHS)
def spawn_path(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# Spawns in a fresh interpreter: this test process may hold threads and fork handlers (the
# fleet tests' gRPC) that a fork from Python would run in the child. An inheritable
# descriptor is left open there, to show that the child does not get it.
_RUNNER = """
import json, os, signal, sys
from types import SimpleNamespace
from taskforce.core.spec import ProcessLimits
from taskforce.runtime.processes import spawn as process
args = json.loads(sys.argv[1])
limits = args["launch"]["limits"]
limits["rlimits"] = tuple(tuple(item) for item in limits.get("rlimits", ()))
args["launch"]["limits"] = ProcessLimits(**limits)
process.use_vfork = args["path"] == "vfork"
if args["ignore_sighup"]:  # started by nohup, and as a shell's background job
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGQUIT, signal.SIG_IGN)
if args["open_files"]:
    import resource
    from taskforce.runtime.own import open_files as limits
    resource.setrlimit(resource.RLIMIT_NOFILE, tuple(args["open_files"]))
    limits.raise_open_files()
os.set_inheritable(os.open(os.devnull, os.O_RDONLY), True)
# Descriptors to pass as 3, 4...: pipes opened now (so among the low numbers), passed in
# the reverse order of their numbers.
passed = sorted((os.pipe()[0] for _ in range(args["passed"])), reverse=True)
read_out, write_out = os.pipe()
job = process.prepare(
    SimpleNamespace(**args["launch"]),
    stdin=os.open(os.devnull, os.O_RDONLY), stdout=write_out, stderr=write_out,
    cgroups=args["cgroups"], fds=passed,
)
spawned = job()
os.close(write_out)
output = b""
while chunk := os.read(read_out, 65536):
    output += chunk
_, status = os.waitpid(spawned.pid, 0)
error = spawned.error
if spawned.error_fd >= 0:
    error = process.read_spawn_error(spawned.error_fd)
print(json.dumps({"pid": spawned.pid, "output": output.decode(), "error": error,
                  "exited": os.WIFEXITED(status),
                  "passed": [os.fstat(fd).st_ino for fd in passed]}))
"""


def run(
    launch: Launch,
    path: str,
    *,
    ignore_sighup: bool = False,
    open_files: tuple[int, int] | None = None,
    cgroups: list[str] | None = None,
    passed: int = 0,
) -> tuple[int, str, str | None]:
    """Spawn through `path` (fork or vfork), wait, and return (pid, output, spawn error).
    `open_files`: the RLIMIT_NOFILE the spawner is given (it raises it, as taskforce does);
    `cgroups`: the cgroup.procs files the child joins; `passed`: descriptors passed."""
    args = {
        "cgroups": cgroups or [],
        "path": path,
        "ignore_sighup": ignore_sighup,
        "open_files": open_files,
        "passed": passed,
        "launch": asdict(launch),
    }
    done = subprocess.run(
        [sys.executable, "-c", _RUNNER, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["exited"]
    _passed_inodes[:] = result["passed"]
    return result["pid"], result["output"], result["error"]


# The inodes of the descriptors the last run() passed, in the order passed.
_passed_inodes: list[int] = []


def shell(script: str, **keys: object) -> Launch:
    return Launch(argv=["sh", "-c", script], **keys)  # type: ignore[arg-type]


def test_own_pid_replaces_every_marker(spawn_path: str) -> None:
    launch = shell(
        'echo "$$ $Task_pid $DERIVED $0"',
        env={
            "PATH": "/usr/bin:/bin",
            "Task_pid": TASK_PID_MARKER,
            "DERIVED": f"/run/x-{TASK_PID_MARKER}-{TASK_PID_MARKER}.pid",
        },
    )
    launch.argv.append(f"name{TASK_PID_MARKER}")
    pid, output, error = run(launch, spawn_path)
    assert error is None
    assert output.split() == [str(pid), str(pid), f"/run/x-{pid}-{pid}.pid", f"name{pid}"]


def test_words_beyond_ascii_reach_the_child_as_the_file_system_encodes_them(
    spawn_path: str,
) -> None:
    # Undecodable bytes too (surrogate escapes, as os.environ has them), beside the marker.
    launch = shell(
        'printf \'%s\\n%s\' "$V" "$0" | od -An -tx1',
        env={"PATH": "/usr/bin:/bin", "V": f"\u00e9\udcff{TASK_PID_MARKER}."},
    )
    launch.argv.append(f"\u00fc{TASK_PID_MARKER}")
    pid, output, error = run(launch, spawn_path)
    assert error is None
    mine = str(pid).encode()
    wanted = os.fsencode("\u00e9\udcff") + mine + b".\n" + os.fsencode("\u00fc") + mine
    assert bytes.fromhex("".join(output.split())) == wanted


def test_new_session_with_default_signals_and_no_mask(spawn_path: str) -> None:
    # taskforce ignores SIGPIPE (Python does), perhaps SIGHUP (started by nohup) and
    # SIGQUIT (a shell's background job), and blocks signals around the spawn: the task
    # must start with none of that.
    # The spawned process execs cat itself: a shell in between would show its own state
    # (dash blocks every signal around its fork and wait), not the one the task started with.
    cat = Launch(argv=["cat", "/proc/self/stat", "/proc/self/status"], program="cat")
    pid, output, error = run(cat, spawn_path, ignore_sighup=True)
    assert error is None
    fields = output.split(")", 1)[1].split()
    assert int(fields[2]) == pid  # process group
    assert int(fields[3]) == pid  # session
    status = dict(line.split(":\t", 1) for line in output.splitlines() if ":\t" in line)
    assert signals(int(status["SigBlk"], 16)) == []
    assert signals(int(status["SigIgn"], 16) & ~_GLIBC_RESERVED) == []


def signals(mask: int) -> list[str]:
    """The signals of a /proc mask, by name (bit n-1 is signal n)."""
    return [signal.Signals(n).name if n in SIGNAL_NUMBERS else str(n) for n in range(1, 65)
            if mask >> (n - 1) & 1]  # fmt: skip


SIGNAL_NUMBERS = {int(s) for s in signal.Signals}


# Signals 32 and 33 belong to glibc (thread cancellation, set*id): its sigaction refuses to
# touch them, so neither path can reset them, and no program can have set them either;
# whatever this test process inherited for them the child inherits too.
_GLIBC_RESERVED = (1 << 31) | (1 << 32)


# The spawned process lists its own descriptors (readlink opens none; a shell, or ls with
# the directory it reads, would show descriptors of its own).
OWN_FDS = Launch(
    argv=[
        sys.executable,
        "-c",
        "import os\n"
        "for fd in range(256):\n"
        "    try: print(fd, os.readlink(f'/proc/self/fd/{fd}'))\n"
        "    except OSError: pass\n",
    ],
    program=sys.executable,
)


def own_fds(output: str) -> dict[int, str]:
    return {int(fd): target for fd, target in (line.split(" ", 1) for line in output.splitlines())}


def test_only_stdio_is_inherited(spawn_path: str) -> None:
    _, output, error = run(OWN_FDS, spawn_path)  # the runner left one open
    assert error is None
    assert sorted(own_fds(output)) == [0, 1, 2]


def test_passed_descriptors_become_3_and_up_in_order(spawn_path: str) -> None:
    # Held listening sockets reach the task this way (systemd's LISTEN_FDS convention).
    _, output, error = run(OWN_FDS, spawn_path, passed=3)
    assert error is None
    fds = own_fds(output)
    assert sorted(fds) == [0, 1, 2, 3, 4, 5]
    assert [fds[3], fds[4], fds[5]] == [f"pipe:[{inode}]" for inode in _passed_inodes]


def test_cwd_and_credentials(spawn_path: str, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("switching user needs root")
    nobody = pwd.getpwnam("nobody")
    launch = shell("pwd; id -u; id -g; id -G", cwd=str(tmp_path), user="nobody")
    _, output, error = run(launch, spawn_path)
    assert error is None
    assert output.split() == [
        str(tmp_path),
        str(nobody.pw_uid),
        str(nobody.pw_gid),
        *(str(g) for g in sorted(set(os.getgrouplist("nobody", nobody.pw_gid)))),
    ]


@pytest.mark.parametrize("wanted", [False, True])
def test_no_new_privs_when_asked(spawn_path: str, wanted: bool) -> None:
    # Without it, setuid helpers (ping, sudo) keep working: it is off unless asked for.
    cat = Launch(argv=["cat", "/proc/self/status"], program="cat", no_new_privs=wanted)
    _, output, error = run(cat, spawn_path)
    assert error is None
    status = dict(line.split(":\t", 1) for line in output.splitlines() if ":\t" in line)
    assert status["NoNewPrivs"].strip() == ("1" if wanted else "0")


def test_exec_failure_is_reported_in_words(spawn_path: str, tmp_path: Path) -> None:
    program = tmp_path / "not-executable"
    program.write_text("#!/bin/sh\n")
    program.chmod(stat.S_IRUSR)
    if os.geteuid() == 0:
        program.chmod(0)  # root may execute any file that has an execute bit; none here
    _, _, error = run(Launch(argv=[str(program)], program=str(program)), spawn_path)
    assert error == f"executing {str(program)!r}: Permission denied"


def test_the_child_gets_the_open_file_limit_taskforce_was_given(spawn_path: str) -> None:
    """taskforce raises its soft limit to the hard one; its tasks get the one it was given
    (programs using select() break past 1024)."""
    _, output, error = run(shell("ulimit -Sn; ulimit -Hn"), spawn_path, open_files=(64, 256))
    assert error is None
    assert output.split() == ["64", "256"]


def test_limits_umask_nice_and_oom_score_adj_are_set_before_exec(spawn_path: str) -> None:
    # cat is the spawned process itself: /proc/self is the task's own entry.
    files = ["/proc/self/limits", "/proc/self/status", "/proc/self/stat"]
    launch = Launch(
        argv=["cat", *files, "/proc/self/oom_score_adj"],
        program="cat",
        limits={
            "rlimits": [["nofile", 100, 200], ["core", 0, UNLIMITED], ["stack", 1 << 23, 1 << 24]],
            "umask": 0o027,
            "nice": 7,
            "oom_score_adj": 345,
        },
    )
    _, output, error = run(launch, spawn_path, open_files=(64, 256))
    assert error is None
    limits = {line[:26].strip(): line[26:].split()[:2] for line in output.splitlines()}
    assert limits["Max open files"] == ["100", "200"]  # over the one taskforce was given
    assert limits["Max core file size"] == ["0", "unlimited"]
    assert limits["Max stack size"] == [str(1 << 23), str(1 << 24)]
    status = dict(line.split(":\t", 1) for line in output.splitlines() if ":\t" in line)
    assert status["Umask"].strip() == "0027"
    stat_line = next(line for line in output.splitlines() if line.startswith(status["Pid"]))
    assert stat_line.rsplit(")", 1)[1].split()[16] == "7"  # field 19: nice
    assert output.splitlines()[-1] == "345"


def test_a_limit_that_cannot_be_set_fails_the_start_in_words(spawn_path: str) -> None:
    # Past fs.nr_open no process may have that many descriptors, root or not.
    with open("/proc/sys/fs/nr_open") as f:
        too_many = int(f.read()) + 1
    launch = shell("true", limits={"rlimits": [["nofile", too_many, too_many]]})
    _, _, error = run(launch, spawn_path)
    assert error == (f"setting the nofile limit to {too_many}:{too_many}: Operation not permitted")


def test_the_child_joins_its_cgroup_before_exec(spawn_path: str, tmp_path: Path) -> None:
    unified = writable_cgroup2()
    group = unified / f"taskforce-test-{os.getpid()}-{spawn_path}"
    group.mkdir()
    try:
        cat = Launch(argv=["cat", "/proc/self/cgroup"], program="cat")
        _, output, error = run(cat, spawn_path, cgroups=[str(group / "cgroup.procs")])
        assert error is None
        assert f"0::/{group.name}" in output.splitlines()
        missing = str(tmp_path / "no-such-group" / "cgroup.procs")
        _, _, error = run(cat, spawn_path, cgroups=[missing])
        assert (
            error == f"joining the cgroup {tmp_path / 'no-such-group'}: No such file or directory"
        )
    finally:
        group.rmdir()  # its one process has exited: it is empty


def test_a_child_born_in_its_cgroup_gets_its_pid_and_reports_a_failure(
    spawn_path: str, tmp_path: Path
) -> None:
    """On the C path the child is born in its v2 cgroup, on a stack of its own while it
    shares taskforce's memory: what it writes there (its pid, a failure) must arrive."""
    unified = writable_cgroup2()
    group = unified / f"taskforce-test-{os.getpid()}-{spawn_path}-born"
    group.mkdir()
    procs = [str(group / "cgroup.procs")]
    try:
        launch = shell(
            'echo "$$ $Task_pid"; cat /proc/self/cgroup', env={"Task_pid": TASK_PID_MARKER}
        )
        pid, output, error = run(launch, spawn_path, cgroups=procs)
        assert error is None
        assert output.splitlines()[0] == f"{pid} {pid}"
        assert f"0::/{group.name}" in output.splitlines()
        with open("/proc/sys/fs/nr_open") as f:
            too_many = int(f.read()) + 1
        launch = shell("true", limits={"rlimits": [["nofile", too_many, too_many]]})
        _, _, error = run(launch, spawn_path, cgroups=procs)
        assert (
            error == f"setting the nofile limit to {too_many}:{too_many}: Operation not permitted"
        )
    finally:
        group.rmdir()  # its processes have exited: it is empty


def writable_cgroup2() -> Path:
    """The cgroup2 mount, if this test may create cgroups in its root (else skip)."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            dash = fields.index("-")
            if fields[dash + 1] == "cgroup2" and fields[3] == "/":
                mount = Path(fields[4])
                if os.access(mount / "cgroup.procs", os.W_OK):
                    return mount
    pytest.skip("no writable cgroup2 hierarchy")
