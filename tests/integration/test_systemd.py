"""taskforce under systemd's notification protocol, with a datagram socket of our own as
NOTIFY_SOCKET: the command reports READY=1, STATUS= changes, RELOADING=1 across a reset and
STOPPING=1; its tasks do not inherit the socket. And the shipped unit file is sound."""

from __future__ import annotations

import configparser
import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.config import write_config
from support.procfs import proc_environ, task_processes
from support.runner import Taskforce
from support.wait import DEADLINE, wait_for

REPO = Path(__file__).parents[2]
UNIT = REPO / "systemd" / "taskforce.service"
CRASH = [sys.executable, "-c", "import sys; sys.exit(3)"]


class Systemd:
    """The service manager's end: a bound datagram socket, read message by message."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[dict[str, str]] = []

    def next(self, timeout: float = DEADLINE) -> dict[str, str]:
        self.sock.settimeout(timeout)
        data = self.sock.recv(65536).decode()
        message = dict(line.split("=", 1) for line in data.split("\n"))
        self.messages.append(message)
        return message

    def until(self, key: str, value: str | None = None) -> dict[str, str]:
        """The next message that sets `key` (to `value`); fails after DEADLINE."""
        end = time.monotonic() + DEADLINE
        while True:
            left = end - time.monotonic()
            assert left > 0, f"no {key} within {DEADLINE}s; got {self.messages}"
            message = self.next(left)
            if key in message and (value is None or value in message[key]):
                return message


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[Systemd]:
    manager = Systemd(tmp_path / "notify.sock")
    try:
        yield manager
    finally:
        manager.sock.close()


def test_the_command_reports_to_systemd(
    tmp_path: Path, taskforce: Taskforce, systemd: Systemd
) -> None:
    config = write_config(
        tmp_path / "tf.conf",
        {
            "sleeper": {"commands": {"start": ["sleep", "1000"]}, "count": 2},
            "crasher": {"commands": {"start": CRASH}},
        },
        settings={"http": [], "restart": {"initial_delay": 0.2, "max_delay": 0.4}},
    )
    taskforce.env["NOTIFY_SOCKET"] = str(systemd.path)
    taskforce.start("-p", "-", "-f", str(config))

    ready = systemd.until("READY", "1")
    assert ready["STATUS"].startswith("2 tasks, ")
    systemd.until("STATUS", "1 failing: crasher")
    pids = task_processes(taskforce.marker)["sleeper"]
    assert all("NOTIFY_SOCKET" not in proc_environ(pid) for pid in pids)

    assert taskforce.proc is not None
    taskforce.proc.send_signal(signal.SIGHUP)
    reloading = systemd.until("RELOADING", "1")
    assert int(reloading["MONOTONIC_USEC"]) > 0
    systemd.until("READY", "1")  # the re-executed image, same pid
    assert taskforce.running()

    assert taskforce.stop() == 0
    systemd.until("STOPPING", "1")


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_the_watchdog_is_fed_while_the_loop_runs(
    tmp_path: Path, taskforce: Taskforce, systemd: Systemd
) -> None:
    config = write_config(
        tmp_path / "tf.conf",
        {"sleeper": {"commands": {"start": ["sleep", "1000"]}}},
        settings={"http": []},
    )
    taskforce.env.update(NOTIFY_SOCKET=str(systemd.path), WATCHDOG_USEC="200000")
    taskforce.env.pop("WATCHDOG_PID", None)  # unset: the watchdog is the main process's
    taskforce.start("-p", "-", "-f", str(config))
    systemd.until("READY", "1")
    systemd.until("WATCHDOG", "1")
    systemd.until("WATCHDOG", "1")  # again: a timer, not a one-off
    (pid,) = task_processes(taskforce.marker)["sleeper"]
    assert not {"WATCHDOG_USEC", "WATCHDOG_PID"} & set(proc_environ(pid))

    # A loop that does not run (here: a stopped process) feeds nothing, so systemd's
    # timeout would fire; fed again once it runs.
    taskforce.proc.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
    try:
        wait_for(lambda: _state(taskforce.pid) == "T", what="taskforce to be stopped")
        systemd.sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while systemd.sock.recv(65536):
                pass  # sent before it stopped
        with pytest.raises(TimeoutError):
            systemd.next(timeout=0.5)
    finally:
        taskforce.proc.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
    systemd.until("WATCHDOG", "1")
    assert taskforce.stop() == 0


def test_no_watchdog_for_another_process(
    tmp_path: Path, taskforce: Taskforce, systemd: Systemd
) -> None:
    config = write_config(
        tmp_path / "tf.conf",
        {"crasher": {"commands": {"start": CRASH}}},
        settings={"http": [], "restart": {"initial_delay": 0.2, "max_delay": 0.4}},
    )
    # WATCHDOG_PID names another process (we inherited its variables): not ours to feed,
    # although at every 10 ms a fed watchdog would show in every message below.
    taskforce.env.update(NOTIFY_SOCKET=str(systemd.path), WATCHDOG_USEC="20000", WATCHDOG_PID="1")
    taskforce.start("-p", "-", "-f", str(config))
    systemd.until("READY", "1")
    systemd.until("STATUS", "1 failing: crasher")
    assert taskforce.stop() == 0
    systemd.until("STOPPING", "1")
    assert not [m for m in systemd.messages if "WATCHDOG" in m]


# ----- the unit file ----------------------------------------------------------------------


def read_unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(UNIT)
    return unit


def test_the_unit_file() -> None:
    service = read_unit()["Service"]
    assert service["Type"] == "notify"
    assert service["ExecStart"].split() == [
        "/usr/local/bin/taskforce", "-p", "/run/taskforce.pid",
        "-f", "/usr/local/etc/taskforce.conf",
    ]  # fmt: skip
    assert service["ExecReload"].split() == [
        "/usr/local/bin/taskforce",
        "-p",
        "/run/taskforce.pid",
        "reload",
    ]
    assert "-b" not in service["ExecStart"].split()  # systemd must see the process it started
    assert service["KillMode"] == "mixed"
    assert service["Restart"] == "on-failure"
    # An unusable configuration (exit 3) is not retried forever.
    assert service["RestartPreventExitStatus"].split() == ["3"]
    assert int(service["WatchdogSec"]) > 0


def test_systemd_accepts_the_unit_file(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # verify checks that the programs exist: point them at this checkout's taskforce.
    program = Path(sys.executable).parent / "taskforce"
    if not program.exists():
        pytest.skip(f"no {program}")
    unit = tmp_path / "taskforce.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/taskforce", str(program)))
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    problems = [line for line in result.stderr.splitlines() if str(unit) in line]
    assert result.returncode == 0 and not problems, result.stderr
