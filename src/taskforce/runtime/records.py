"""Records of the processes taskforce runs, kept on disk for the next taskforce.

If taskforce is killed (SIGKILL, a crash, a power cut of the supervisor alone), its
task processes live on. The next taskforce reads these records to recognise them,
by pid *and* start time, so that it neither starts duplicates nor signals a stranger
that happens to have been given a recycled pid.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass

from taskforce.runtime.identity import identify

log = logging.getLogger("taskforce")


@dataclass(frozen=True, slots=True)
class ProcessRecord:
    task: str
    slot: int
    pid: int
    start_ticks: int


class Records:
    def __init__(self, path: str | None) -> None:
        self.path = path
        self._current: dict[int, ProcessRecord] = {}
        self._written: frozenset[ProcessRecord] | None = None

    def load(self) -> list[ProcessRecord]:
        """Records left by an earlier taskforce (an unreadable file counts as none)."""
        if self.path is None:
            return []
        try:
            with open(self.path, "rb") as f:
                data = json.loads(f.read(16 * 1024 * 1024))
            return [
                ProcessRecord(str(r["task"]), int(r["slot"]), int(r["pid"]), int(r["start"]))
                for r in data.get("processes", [])
            ]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("ignoring unreadable process records %s: %s", self.path, exc)
            return []

    def update(self, running: dict[int, tuple[str, int]]) -> None:
        """Write the records of the processes now running, if they changed."""
        if self.path is None:
            return
        for pid in [p for p in self._current if p not in running]:
            del self._current[pid]
        for pid, (task, slot) in running.items():
            known = self._current.get(pid)
            if known is None or (known.task, known.slot) != (task, slot):
                identity = identify(pid)
                if identity is not None:
                    self._current[pid] = ProcessRecord(task, slot, pid, identity.start_ticks)
        snapshot = frozenset(self._current.values())
        if snapshot == self._written:
            return
        self._write(snapshot)

    def keep(self, extra: list[ProcessRecord]) -> None:
        """Add records of processes we leave running on purpose (adopt tasks)."""
        for record in extra:
            self._current[record.pid] = record
        self._write(frozenset(self._current.values()))

    def _write(self, snapshot: frozenset[ProcessRecord]) -> None:
        assert self.path is not None
        data = {
            "processes": [
                {"task": r.task, "slot": r.slot, "pid": r.pid, "start": r.start_ticks}
                for r in sorted(snapshot, key=lambda r: (r.task, r.slot))
            ]
        }
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(data, f)
            os.replace(tmp, self.path)
            self._written = snapshot
        except OSError as exc:
            log.warning("cannot write process records %s: %s", self.path, exc)
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def remove(self) -> None:
        if self.path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
