"""Taskforce run as a user runs it: a command with its log captured, cleaned up always."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from support.config import fast_config
from support.environ import inherited
from support.procfs import kill_marked, remove_cgroups
from support.teardown import uninterrupted
from support.wait import DEADLINE, wait_for


class Taskforce:
    """A taskforce command run as a user would, with its log captured."""

    def __init__(self, tmp: Path, marker: str) -> None:
        self.tmp = tmp
        self.marker = marker
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = tmp / "taskforce.log"
        self.env = inherited(TF_TEST_MARKER=marker, PROBE_DIR=str(tmp / "probes"))
        self.env["PATH"] = f"{Path(sys.executable).parent}:{self.env.get('PATH', '/usr/bin:/bin')}"
        # The default API socket in a directory of this test's own, not /run/taskforce.sock:
        # a taskforce that another test (or another suite on this machine) left there would
        # answer this test's commands.
        runtime = tmp / "runtime"
        runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.env["XDG_RUNTIME_DIR"] = str(runtime)

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

    def start_tasks(self, tasks: dict[str, Any], **top: Any) -> subprocess.Popen[bytes]:
        """Start taskforce on a configuration of `tasks` in the test's directory (the quick
        restart policy unless `top` gives settings)."""
        return self.start("-f", fast_config(self.tmp, tasks, **top))

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
        log: str = wait_for(lambda: text in self.log() and self.log(), timeout, f"log {text!r}")
        return log

    def stop(self, sig: int = signal.SIGTERM, timeout: float = DEADLINE) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def cleanup(self) -> None:
        """Kill everything this test started, including detached (-b) instances and the
        daemons of its tasks; a timeout striking meanwhile is reported afterwards."""
        with uninterrupted():
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            # Repeat: a background taskforce may start a process while the others are killed.
            with contextlib.suppress(AssertionError):  # what is left is reported below
                wait_for(lambda: not kill_marked(self.marker), timeout=10, what="kills")
            # The cgroups a killed taskforce leaves for its successor: none comes.
            remove_cgroups(self.log())
