"""Shared test helpers: run taskforce for real, wait for conditions, clean up always."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

PROBE = str(Path(__file__).parent / "programs" / "probe.py")
DEADLINE = 30.0


def wait_for(
    condition: Callable[[], Any], timeout: float = DEADLINE, what: str = "condition"
) -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    end = time.monotonic() + timeout
    delay = 0.005
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)  # polling interval of a deadline-bounded wait, not a wait itself
        delay = min(delay * 2, 0.1)


def processes_with_marker(marker: str) -> list[int]:
    """Pids of live processes whose environment carries TF_TEST_MARKER=marker."""
    needle = f"TF_TEST_MARKER={marker}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state is [0], ppid [1])."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def parent_pid(pid: int) -> int | None:
    """The parent of a live (or zombie) process; None once it is gone."""
    fields = _stat_fields(pid)
    return int(fields[1]) if fields is not None else None


def zombies_of(ppid: int) -> list[int]:
    """Zombie children of `ppid`: exited, but not reaped."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None and fields[0] == "Z" and int(fields[1]) == ppid:
                found.append(int(entry))
    return found


def proc_environ(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            data = f.read()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in data.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def proc_cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            data = f.read()
    except OSError:
        return []
    return [arg.decode(errors="replace") for arg in data.split(b"\0")[:-1]]


def task_processes(marker: str) -> dict[str, list[int]]:
    """Live task processes of one test (by TF_TEST_MARKER), grouped by their Task_name."""
    tasks: dict[str, list[int]] = {}
    for pid in processes_with_marker(marker):
        name = proc_environ(pid).get("Task_name")
        if name is not None and pid_alive(pid):
            tasks.setdefault(name, []).append(pid)
    return tasks


class Probes:
    """Reads the records that tests/programs/probe.py writes."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def records(self, kind: str = "start", task: str | None = None) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self.dir.glob(f"*-{kind}.json")):
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if task is None or data["env"].get("Task_name") == task:
                out.append(data)
        return sorted(out, key=lambda d: d["monotonic"])

    def wait(
        self, count: int, kind: str = "start", task: str | None = None
    ) -> list[dict[str, Any]]:
        return wait_for(
            lambda: (r := self.records(kind, task)) and len(r) >= count and r,
            what=f"{count} {kind} record(s) of {task or 'any task'}",
        )

    def live(self, task: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.records("start", task) if pid_alive(r["pid"])]


class Taskforce:
    """A taskforce command run as a user would, with its log captured."""

    def __init__(self, tmp: Path, marker: str) -> None:
        self.tmp = tmp
        self.marker = marker
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = tmp / "taskforce.log"
        self.env = dict(os.environ, TF_TEST_MARKER=marker, PROBE_DIR=str(tmp / "probes"))
        self.env["PATH"] = f"{Path(sys.executable).parent}:{self.env.get('PATH', '/usr/bin:/bin')}"

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "taskforce", *args]

    def run(
        self, *args: str, timeout: float = 60, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a taskforce command to completion (-C, -S, -b...), capturing its output."""
        return subprocess.run(
            self.command(*args),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
        )

    def start(
        self, *args: str, flags: Sequence[str] = ("-e", "-v"), cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Start taskforce in the foreground, its output going to the log; `flags` come
        before `args` (logging to stderr, verbose, by default)."""
        return self.spawn(self.command(*flags, *args), cwd=cwd)

    def spawn(
        self, argv: Sequence[str], cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start a command that runs taskforce (a wrapper script...) as start() does."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            list(argv),
            env=self.env if env is None else env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
        )
        log.close()
        return self.proc

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, text: str, timeout: float = DEADLINE) -> str:
        return wait_for(lambda: text in self.log() and self.log(), timeout, f"log line {text!r}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = DEADLINE) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def cleanup(self) -> None:
        """Kill everything this test started, including detached (-b) instances."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        # Repeat: a background taskforce may start a process while the others are killed.
        end = time.monotonic() + 10
        while (pids := processes_with_marker(self.marker)) and time.monotonic() < end:
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)  # polling interval while the kills land


@pytest.fixture
def probes(tmp_path: Path) -> Probes:
    directory = tmp_path / "probes"
    directory.mkdir(exist_ok=True)
    return Probes(directory)


@pytest.fixture
def taskforce(tmp_path: Path, probes: Probes) -> Iterator[Taskforce]:
    tf = Taskforce(tmp_path, uuid.uuid4().hex)
    try:
        yield tf
    finally:
        tf.cleanup()
        # Captured by pytest, and shown with the report of a test that failed.
        print(f"---- taskforce log (last 8000 characters) ----\n{tf.log()[-8000:]}")


def write_config(path: Path, tasks: dict[str, Any], **top: Any) -> Path:
    """Write a configuration as JSON (valid YAML flow style)."""
    doc = dict(top)
    doc["tasks"] = tasks
    path.write_text(json.dumps(doc, indent=2))
    return path


def probe_task(*args: str, python: str = sys.executable, **keys: Any) -> dict[str, Any]:
    """A task running tests/programs/probe.py with `args` (under `python`)."""
    task: dict[str, Any] = {"commands": {"start": [python, PROBE, *args]}}
    task.update(keys)
    return task
