"""Task output capture with a real taskforce and real tasks: every destination, rotation,
`taskforce logs` (and -f), live switching, a task flooding its output, a full disk.

Every wait is for a condition, with a deadline; processes are cleaned up by the fixture.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import select
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.config import write_config
from support.procfs import pid_alive
from support.runner import Taskforce
from support.wait import DEADLINE, wait_for

PY = sys.executable


def python_task(code: str, **keys: Any) -> dict[str, Any]:
    task: dict[str, Any] = {"commands": {"start": [PY, "-c", code]}}
    task.update(keys)
    return task


def configure(tmp: Path, tasks: dict[str, Any], **settings: Any) -> str:
    settings = {"http": {"listen": str(tmp / "tf.sock"), "allow_control": True}, **settings}
    settings.setdefault("stop_timeout", 2)
    return str(write_config(tmp / "tf.conf", tasks, settings=settings))


def api(tmp: Path, path: str) -> tuple[int, Any]:
    """One request to the running taskforce's socket."""
    conn = http.client.HTTPConnection("localhost", timeout=DEADLINE)
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(DEADLINE)
    sock.connect(str(tmp / "tf.sock"))
    conn.sock = sock
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def ready(tf: Taskforce, tmp: Path) -> None:
    wait_for(lambda: (tmp / "tf.sock").exists(), what="the control socket")


def pids(tmp: Path, task: str) -> list[int]:
    status, tasks = api(tmp, "/status/tasks")
    assert status == 200
    return [p["pid"] for p in tasks[task]["processes"] if p["pid"] is not None]


def logs(tf: Taskforce, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return tf.run("logs", "--server", str(tmp / "tf.sock"), *args)


def read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


# --- destinations ---------------------------------------------------------------------------

WRITE_LINES = (
    "import sys, time\n"
    "for n in range(500): sys.stdout.write(f'line {n:04d} '.ljust(49, '.') + '\\n')\n"
    "sys.stdout.flush(); time.sleep(1000)\n"
)


def test_file_destination_rotates_and_keeps_backups(taskforce: Taskforce, tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    output = {"stdout": "logs/{Task_name}-{Task_instance}.log", "max_bytes": 2000, "backups": 2}
    conf = configure(tmp_path, {"writer": python_task(WRITE_LINES, count=2, output=output)})
    taskforce.start("-f", conf)
    expected = b"".join(f"line {n:04d} ".ljust(49, ".").encode() + b"\n" for n in range(500))
    for slot in (0, 1):
        path = tmp_path / "logs" / f"writer-{slot}.log"

        def written(p: Path = path) -> bool:
            return read_file(p).endswith(expected[-50:])

        wait_for(written, what=f"{path} written")
        files = [Path(f"{path}.2"), Path(f"{path}.1"), path]
        assert not Path(f"{path}.3").exists()
        for file in files:
            data = file.read_bytes()
            assert 0 < len(data) <= 2000 and data.endswith(b"\n")
        kept = b"".join(f.read_bytes() for f in files)
        assert expected.endswith(kept) and len(kept) > 4000
        assert oct(path.stat().st_mode & 0o777) == "0o640"


def test_stderr_destination_prefixes_task_and_instance(
    taskforce: Taskforce, tmp_path: Path
) -> None:
    code = (
        "import os, sys, time\n"
        "print('hello from', os.environ['Task_instance'], flush=True)\n"
        "print('oops', file=sys.stderr, flush=True)\n"
        "time.sleep(1000)\n"
    )
    conf = configure(tmp_path, {"talk": python_task(code, count=2, output={"stdout": "stderr"})})
    taskforce.start("-f", conf)
    # taskforce's own stderr is the test's log file.
    for line in ("talk[0]: hello from 0\n", "talk[1]: hello from 1\n", "talk[1]: oops\n"):
        taskforce.wait_log(line)


def test_syslog_destination_sends_datagrams(taskforce: Taskforce, tmp_path: Path) -> None:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(tmp_path / "log"))  # stands in for /dev/log
    server.settimeout(DEADLINE)
    try:
        code = "import time; print('to syslog', flush=True); time.sleep(1000)"
        conf = configure(
            tmp_path,
            {"sys": python_task(code, output={"stdout": "syslog"})},
            output={"syslog_socket": str(tmp_path / "log")},
        )
        taskforce.start("-f", conf)
        message = server.recv(65536)
    finally:
        server.close()
    ready(taskforce, tmp_path)
    (pid,) = wait_for(lambda: pids(tmp_path, "sys"))
    assert message.startswith(b"<30>")
    assert message.endswith(f" sys[{pid}]: to syslog".encode())


def test_null_is_dev_null_and_logs_says_it_has_nothing(
    taskforce: Taskforce, tmp_path: Path
) -> None:
    conf = configure(tmp_path, {"quiet": {"commands": {"start": ["sleep", "1000"]}}})
    taskforce.start("-f", conf)
    ready(taskforce, tmp_path)
    (pid,) = wait_for(lambda: pids(tmp_path, "quiet"))
    for fd in (1, 2):
        assert os.readlink(f"/proc/{pid}/fd/{fd}") == "/dev/null"
    result = logs(taskforce, tmp_path, "quiet")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "not captured" in result.stderr


# --- taskforce logs, live switching, last words ------------------------------------------

TICKER = (
    "import itertools, time\n"
    "for n in itertools.count(): print('tick', n, flush=True); time.sleep(0.05)\n"
)


def test_logs_shows_and_follows_output(taskforce: Taskforce, tmp_path: Path) -> None:
    output = {"stdout": str(tmp_path / "ticker.log")}
    conf = configure(tmp_path, {"ticker": python_task(TICKER, output=output)})
    taskforce.start("-f", conf)
    ready(taskforce, tmp_path)
    wait_for(lambda: b"tick 5\n" in read_file(tmp_path / "ticker.log"))
    shown = logs(taskforce, tmp_path, "ticker", "-n", "3")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert len(lines) == 3 and all(line.startswith("ticker[0]: tick ") for line in lines)
    as_json = logs(taskforce, tmp_path, "ticker", "-n", "1", "--json")
    (record,) = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert record["instance"] == 0 and record["stream"] == "stdout"
    assert record["text"].startswith("tick ")

    with subprocess.Popen(
        taskforce.command("logs", "--server", str(tmp_path / "tf.sock"), "-f", "-n", "1", "ticker"),
        env=taskforce.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    ) as follower:
        try:
            assert follower.stdout is not None
            numbers = []
            for _ in range(6):  # the recent line, then new ones as they are written
                readable, _, _ = select.select([follower.stdout], [], [], DEADLINE)
                assert readable, "no output from taskforce logs -f"
                line = follower.stdout.readline().decode()
                assert line.startswith("ticker[0]: tick ")
                numbers.append(int(line.split()[-1]))
            assert numbers == list(range(numbers[0], numbers[0] + 6))
        finally:
            follower.terminate()  # leaving the block closes its pipes and reaps it


def test_a_new_destination_applies_without_a_restart(taskforce: Taskforce, tmp_path: Path) -> None:
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    conf = configure(tmp_path, {"ticker": python_task(TICKER, output={"stdout": str(first)})})
    taskforce.start("-f", conf)
    ready(taskforce, tmp_path)
    wait_for(lambda: b"tick 2\n" in read_file(first))
    before = pids(tmp_path, "ticker")
    configure(tmp_path, {"ticker": python_task(TICKER, output={"stdout": str(second)})})
    wait_for(lambda: b"tick" in read_file(second), what="output in the new file")
    assert pids(tmp_path, "ticker") == before
    numbers = [int(line.split()[-1]) for line in read_file(second).splitlines()]
    last_in_first = int(read_file(first).splitlines()[-1].split()[-1])
    assert numbers[0] == last_in_first + 1  # nothing lost or repeated across the switch


def test_the_last_words_of_a_process_are_kept(taskforce: Taskforce, tmp_path: Path) -> None:
    code = "import sys; print('starting'); sys.stderr.write('fatal: no config'); sys.exit(3)"
    task = python_task(code, control="once", output={"stdout": "stderr"})
    conf = configure(tmp_path, {"once": task})
    taskforce.start("-f", conf)
    ready(taskforce, tmp_path)
    taskforce.wait_log("pid")
    wait_for(lambda: "exited 3" in taskforce.log())
    shown = logs(taskforce, tmp_path, "once")
    assert shown.stdout.splitlines() == ["once[0]: starting", "once[0]: fatal: no config"]
    log = taskforce.log()
    assert log.index("once[0]: fatal: no config") < log.index("exited 3")


# --- a flood, a full disk ------------------------------------------------------------------

FLOOD = "import os\nchunk = (b'x' * 99 + b'\\n') * 600\nwhile True: os.write(1, chunk)\n"


def file_version(path: Path) -> tuple[int, int]:
    """Changes with each write, and with a rotation that replaces the file (which is
    missing for an instant while it is renamed away: (0, 0) then)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return 0, 0
    return info.st_ino, info.st_size


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def test_a_flooding_task_neither_stalls_nor_bloats_taskforce(
    taskforce: Taskforce, tmp_path: Path
) -> None:
    path = tmp_path / "flood.log"
    output = {"stdout": str(path), "max_bytes": "4M", "backups": 1}
    conf = configure(tmp_path, {"flood": python_task(FLOOD, output=output)})
    taskforce.start("-f", conf)
    ready(taskforce, tmp_path)
    wait_for(lambda: read_file(path), what="the flood to begin")
    first = rss_kib(taskforce.pid)
    highest = first
    # Every request is answered while the flood goes on, and the flood goes on between
    # answers (the file keeps growing): rounds are counted, not timed.
    for _ in range(5):
        before = file_version(path)
        status, tasks = api(tmp_path, "/status/tasks")
        assert status == 200 and tasks["flood"]["state"] == "running"
        status, recent = api(tmp_path, "/logs/flood?n=5")
        assert status == 200 and recent["lines"][-1]["text"] == "x" * 99

        def grown(b: tuple[int, int] = before) -> bool:
            return file_version(path) != b

        wait_for(grown, what="the flood to go on")
        highest = max(highest, rss_kib(taskforce.pid))
    wait_for(Path(f"{path}.1").exists, what="the log to be rotated")
    highest = max(highest, rss_kib(taskforce.pid))
    # Generous: capture must not buffer what the task writes (GBs by now).
    assert highest - first < 32 * 1024, f"RSS grew from {first} to {highest} KiB"
    assert not Path(f"{path}.2").exists()
    # Neither file is over the limit. The current one is missing for an instant while a
    # rotation renames it away (the flood rotates it every few milliseconds): size 0 then.
    assert file_version(path)[1] <= 4 * 1024 * 1024
    assert Path(f"{path}.1").stat().st_size <= 4 * 1024 * 1024


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "full"
    mount.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
            capture_output=True,
            text=True,
            timeout=DEADLINE,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a small tmpfs: {exc}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        # Lazily: the task may still hold its file open until the fixture kills it.
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=DEADLINE)


def test_a_full_disk_is_reported_and_the_task_runs_on(
    taskforce: Taskforce, tmp_path: Path, full_disk: Path
) -> None:
    path = full_disk / "out.log"
    code = (
        "import itertools, time\n"
        "for n in itertools.count():\n"
        "    print(f'{n:08d}', 'y' * 90, flush=True)\n"
        "    if n % 100 == 0: time.sleep(0.01)\n"
    )
    conf = configure(tmp_path, {"filler": python_task(code, output={"stdout": str(path)})})
    taskforce.start("-f", conf)
    ready(taskforce, tmp_path)
    taskforce.wait_log(f"output to {path}: No space left on device")
    (pid,) = pids(tmp_path, "filler")
    os.truncate(path, 0)  # space again: writing resumes by itself
    taskforce.wait_log(f"output to {path} works again")
    assert pids(tmp_path, "filler") == [pid] and pid_alive(pid)
    wait_for(lambda: read_file(path), what="output written after the disk had room")
