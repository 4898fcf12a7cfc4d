"""Tasks running tests/programs/probe.py, and the records the probes write."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from support.procfs import same_process
from support.wait import wait_for

PROBE = str(Path(__file__).parent.parent / "programs" / "probe.py")


def probe_task(*args: str, python: str = sys.executable, **keys: Any) -> dict[str, Any]:
    """A task running tests/programs/probe.py with `args` (under `python`)."""
    task: dict[str, Any] = {"commands": {"start": [python, PROBE, *args]}}
    task.update(keys)
    return task


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
        found: list[dict[str, Any]] = wait_for(
            lambda: (r := self.records(kind, task)) and len(r) >= count and r,
            what=f"{count} {kind} record(s) of {task or 'any task'}",
        )
        return found

    def pids(self, task: str | None = None) -> set[int]:
        """Pids of the probes still running."""
        return {r["pid"] for r in self.live(task)}

    def live(self, task: str | None = None) -> list[dict[str, Any]]:
        """Start records of the probes still running (their pid not taken by another)."""
        return [
            r for r in self.records("start", task) if same_process(r["pid"], r.get("start_ticks"))
        ]
