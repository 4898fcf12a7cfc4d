"""taskforce, this repository's (the venv running the suite has it installed)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import unixhttp
from harness.install import UnavailableError
from harness.workload import Workload
from peers.base import Peer, rename_into

# Seconds a taskforce is given to stop its tasks and remove their cgroups when killed.
STOP_TIMEOUT_S = 60.0


def config_text(workload: Workload, settings: dict[str, Any] | None) -> str:
    """The taskforce configuration (YAML flow style, i.e. JSON) for a workload."""
    tasks: dict[str, Any] = {}
    for task in workload.tasks:
        spec: dict[str, Any] = {"control": "wait", "commands": {"start": task.argv}}
        if task.watch is not None:
            spec["events"] = [{"type": "file_change", "path": str(task.watch), "command": "stop"}]
        tasks[task.name] = spec
    config: dict[str, Any] = {"tasks": tasks}
    if settings is not None:
        config = {"settings": settings, **config}
    return json.dumps(config, indent=1)


class Taskforce(Peer):
    name = "taskforce"
    file_change = True
    notes = (
        "run from a copy of src/ taken when the run starts; pidfile and control socket in "
        "the run directory; stop: SIGTERM; reload: rename the new configuration over the old"
    )
    settings: dict[str, Any] | None = {"restart": {"min_uptime": 1}}

    def snapshot(self) -> Path:
        return self.env.peers_dir / "taskforce-src"

    def command(self) -> list[str]:
        """How to run it: the suite's interpreter on the snapshot of src/."""
        return [str(self.env.python), "-m", "taskforce"]

    def environment(self) -> dict[str, str] | None:
        return {**os.environ, "PYTHONPATH": str(self.snapshot())}

    def install(self) -> str:
        """Copy src/taskforce: taskforce re-executes itself when its own code changes, so a
        run must not use the working tree that others may be editing meanwhile."""
        source = self.env.bench.parent / "src" / "taskforce"
        if not source.is_dir():
            raise UnavailableError(f"{source} missing")
        target = self.snapshot() / "taskforce"
        shutil.rmtree(self.snapshot(), ignore_errors=True)
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        subprocess.run([str(self.env.python), "-m", "compileall", "-q", str(target)], check=False)
        return self._version()

    def _version(self) -> str:
        done = subprocess.run(
            [*self.command(), "-V"],
            capture_output=True,
            text=True,
            check=False,
            env=self.environment(),
        )
        words = (done.stdout or done.stderr).strip().split()
        if done.returncode != 0 or not words:
            raise UnavailableError(f"`taskforce -V` failed: {done.stderr.strip()[-200:]}")
        return words[-1]

    def config_path(self, workload: Workload) -> Path:
        return workload.root / "taskforce.conf"

    def flags(self, workload: Workload) -> list[str | Path]:
        # A pidfile of its own also puts the control socket in the run directory.
        return ["-p", workload.root / "taskforce.pid"]

    def launch(self, workload: Workload) -> None:
        self.workload = workload
        conf = self.config_path(workload)
        conf.write_text(config_text(workload, self.settings))
        roles = workload.root / "roles"
        roles.write_text("")
        argv = [*self.command(), "-e", *self.flags(workload), "-f", conf, "-r", roles]
        self.proc = self._spawn(argv, env=self.environment(), cwd=workload.root)

    def request_stop(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGTERM first, then as for any peer: a taskforce killed outright leaves its
        instances' cgroups behind (a directory per task, ten thousand a scale trial),
        which every cgroup operation on the host walks from then on."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=STOP_TIMEOUT_S)
        super().kill()

    def status_query(self) -> Callable[[], int] | None:
        assert self.workload is not None
        # The control socket beside the pidfile (see flags()).
        sock = self.workload.root / "taskforce.sock"
        return lambda: len(unixhttp.request(sock, "GET", "/status/tasks"))

    def prepare_reload(self, new: Workload, name: str) -> Callable[[], None]:
        return rename_into(self.config_path(new), config_text(new, self.settings))
