"""What every peer adapter provides, and the process bookkeeping they share."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, TextIO

from harness import procfs, reaper
from harness.workload import Task, Workload


@dataclass(frozen=True)
class Env:
    """Where peers are installed and how the suite reports progress."""

    bench: Path
    peers_dir: Path
    python: Path
    log: Callable[[str], None]


class Peer(ABC):
    """A supervisor under test. One instance runs one workload at a time."""

    name: ClassVar[str]
    file_change: ClassVar[bool] = False
    notes: ClassVar[str] = ""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.version = "?"
        self.proc: subprocess.Popen[bytes] | None = None
        self.workload: Workload | None = None
        self._helpers: list[subprocess.Popen[bytes]] = []
        self._log: TextIO | None = None

    # -- installation ------------------------------------------------------------------

    @abstractmethod
    def install(self) -> str:
        """Install if missing (cached); return the version. Raise UnavailableError if impossible."""

    # -- one run -----------------------------------------------------------------------

    @abstractmethod
    def launch(self, workload: Workload) -> None:
        """Write the configuration for `workload` and start the supervisor; do not wait."""

    @abstractmethod
    def request_stop(self) -> None:
        """Ask the supervisor, the way its documentation says, to stop everything."""

    @abstractmethod
    def prepare_reload(self, new: Workload, name: str) -> Callable[[], None]:
        """Get ready to apply `new` (task `name` changed); the returned call applies it."""

    def status_query(self) -> Callable[[], int] | None:
        """A call asking the supervisor for the state of every task at once (its API, not a
        command-line client), returning the size of the answer; None if it has none."""
        return None

    def runs(self, pid: int, task: Task) -> bool:
        """Whether process `pid` runs `task` as now configured (its argv)."""
        argv = procfs.cmdline(pid)
        return not argv or argv == task.argv

    def supervisor_pid(self) -> int | None:
        """The supervisor's main process (the root of its process tree)."""
        return self.proc.pid if self.proc is not None else None

    def own_pids(self) -> list[int]:
        """The supervisor's own processes: its tree without the children and their trees."""
        root = self.supervisor_pid()
        if root is None:
            return []
        parents = procfs.parent_map()
        tree = procfs.descendants(root, parents)
        excluded: set[int] = set()
        for pid in tree:
            if pid in excluded or parents.get(pid) in excluded or self.is_child(pid):
                excluded.add(pid)
        return [pid for pid in tree if pid not in excluded]

    def is_child(self, pid: int) -> bool:
        assert self.workload is not None
        child = self.workload.child
        if procfs.exe(pid) in (str(child.exe), str(child.exe2)):
            return True
        argv = procfs.cmdline(pid)
        return len(argv) > 1 and argv[1] in (str(child.exe), str(child.exe2))

    def kill(self) -> None:
        """End the supervisor and everything it started, whatever state it is in."""
        root = self.supervisor_pid()
        if root is not None:
            reaper.kill_tree(root)
        for proc in [*self._helpers, *([self.proc] if self.proc else [])]:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        self._helpers.clear()
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        self.workload = None

    # -- helpers for adapters ------------------------------------------------------------

    def _spawn(
        self,
        argv: Sequence[str | Path],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start the supervisor in its own session, output to the run's log file."""
        assert self.workload is not None
        if self._log is None:
            self._log = (self.workload.root / "supervisor.log").open("a")
        return subprocess.Popen(
            [str(arg) for arg in argv],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )

    def _helper(self, argv: Sequence[str | Path], *, env: dict[str, str] | None = None) -> None:
        """Run a control command (e.g. `supervisorctl update`) without waiting for it."""
        self._helpers.append(self._spawn(argv, env=env))

    def _run(self, argv: Sequence[str | Path], *, env: dict[str, str] | None = None) -> None:
        """Run a control command to completion."""
        self._spawn(argv, env=env).wait(timeout=120)

    def _signal(self, sig: signal.Signals) -> None:
        pid = self.supervisor_pid()
        if pid is not None:
            os.kill(pid, sig)

    def helpers_done(self, timeout_s: float = 30.0) -> None:
        """Wait for control commands started by `_helper`."""
        for proc in self._helpers:
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._helpers.clear()


def rename_into(path: Path, text: str) -> Callable[[], None]:
    """Write `text` beside `path` now; the returned call renames it over `path`."""
    tmp = path.with_name(f".{path.name}.new")
    tmp.write_text(text)
    return lambda: os.rename(tmp, path)
