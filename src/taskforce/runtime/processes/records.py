"""Records of the processes taskforce runs, kept on disk for the next taskforce.

If taskforce is killed (SIGKILL, a crash, a power cut of the supervisor alone), its
task processes live on. The next taskforce reads these records to recognise them,
by pid *and* start time, so that it neither starts duplicates nor signals a stranger
that happens to have been given a recycled pid.

Records decide what gets signalled, so only a file of our own that nobody else can
write is believed, and it is replaced whole, never written through a planted link.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
from dataclasses import dataclass

from taskforce.runtime.processes.identity import start_ticks

log = logging.getLogger("taskforce")


@dataclass(frozen=True, slots=True)
class ProcessRecord:
    task: str
    slot: int
    pid: int
    start_ticks: int


@dataclass(frozen=True, slots=True)
class Earlier:
    """What an earlier taskforce that did not stop cleanly left behind."""

    processes: list[ProcessRecord]
    # When it started (clock ticks since boot, as ProcessRecord.start_ticks): the processes
    # it started but did not record can only have started since. None: unknown.
    started: int | None
    # Its pid, which the processes it started hold as Task_ppid (those of another
    # taskforce that died too are not its), and the pids of the taskforces that took over
    # its records and died before they rewrote them. None: unknown (an older version's).
    pids: tuple[int, ...] | None = None


class Records:
    def __init__(self, path: str | None) -> None:
        self.path = path
        self._current: dict[int, ProcessRecord] = {}
        # Whether the file holds the records of _current (as last written). A flag, not
        # the written records: a frozenset of them took 512 KB with 10,000 processes.
        self._written = False
        self._started = start_ticks(os.getpid())
        self._loaded: Earlier | None = None  # what load() found

    def load(self) -> Earlier | None:
        """Records left by an earlier taskforce (an unreadable file counts as none).

        None when there is no file: the last taskforce with these records stopped cleanly
        (it removes them), or none ever ran. `begin()` makes the file before any start, so
        one that died at any point, even before its first record, leaves it behind.
        """
        if self.path is None:
            return Earlier([], None)
        self._remove_leftover_temporaries()
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
            with os.fdopen(fd, "rb") as f:
                _check_trusted(os.fstat(fd))
                data = json.loads(f.read(16 * 1024 * 1024))
            started, pids = data.get("started"), data.get("pids")
            self._loaded = Earlier(
                [
                    ProcessRecord(str(r["task"]), int(r["slot"]), int(r["pid"]), int(r["start"]))
                    for r in data.get("processes", [])
                ],
                None if started is None else int(started),
                None if pids is None else tuple(int(pid) for pid in pids),
            )
            return self._loaded
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            log.warning("ignoring unusable process records %s: %s", self.path, exc)
            return Earlier([], None)

    def begin(self) -> None:
        """Make the records file, if there is none, before anything starts: see load().
        One left by an earlier taskforce stays as it is until update() replaces it, but for
        our pid, added to its own: killed before that update, we leave processes that name
        us, and the next taskforce must know them too."""
        if self.path is None:
            return
        if not os.path.lexists(self.path):
            self._write(frozenset(), self._started, (os.getpid(),))
            return
        left = self._loaded
        if left is not None and left.pids is not None and os.getpid() not in left.pids:
            self._write(frozenset(left.processes), left.started, (*left.pids, os.getpid()))
            self._written = False  # not ours: the first update() writes ours

    def update(self, running: dict[int, tuple[str, int]]) -> None:
        """Write the records of the processes now running, if they changed."""
        if self.path is None:
            return
        gone = [p for p in self._current if p not in running]
        for pid in gone:
            del self._current[pid]
        changed = bool(gone)
        for pid, (task, slot) in running.items():
            known = self._current.get(pid)
            if known is None or (known.task, known.slot) != (task, slot):
                started = start_ticks(pid)
                if started is not None:
                    self._current[pid] = ProcessRecord(task, slot, pid, started)
                    changed = True
        if changed or not self._written:
            self._write(frozenset(self._current.values()), self._started, (os.getpid(),))

    def keep(self, extra: list[ProcessRecord]) -> None:
        """Add records of processes we leave running on purpose (adopt tasks)."""
        for record in extra:
            self._current[record.pid] = record
        self._write(frozenset(self._current.values()), self._started, (os.getpid(),))

    def _write(
        self, snapshot: frozenset[ProcessRecord], started: int | None, pids: tuple[int, ...]
    ) -> None:
        """Write the records of `snapshot`, and what the unrecorded processes of the
        taskforces `pids` (their Task_ppid) that took them on may be: those that started
        since `started`. (Our pid is read when we write, after any detaching fork.)"""
        assert self.path is not None
        self._written = False  # until this one is
        data = {
            "started": started,
            "pids": list(pids),
            "processes": [
                {"task": r.task, "slot": r.slot, "pid": r.pid, "start": r.start_ticks}
                for r in sorted(snapshot, key=lambda r: (r.task, r.slot))
            ],
        }
        directory, name = os.path.split(self.path)
        tmp: str | None = None
        try:
            # A fresh name, created exclusively (mode 0600): nothing planted is reused.
            # (Not tempfile.mkstemp: tempfile imports shutil, random and the compressors.)
            tmp = os.path.join(directory, f".{name}.{os.urandom(6).hex()}.tmp")
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(tmp, flags, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(json.dumps(data).encode())  # dumps: C; dump would encode in Python
            os.replace(tmp, self.path)
            tmp = None
            self._written = True
        except OSError as exc:
            log.warning("cannot write process records %s: %s", self.path, exc)
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def _remove_leftover_temporaries(self) -> None:
        """Remove the temporary files of writes an earlier taskforce did not finish."""
        assert self.path is not None
        directory, name = os.path.split(self.path)
        prefix = f".{name}."
        try:
            entries = os.listdir(directory or ".")
        except OSError:
            return
        for entry in entries:
            if entry.startswith(prefix) and entry.endswith(".tmp"):
                path = os.path.join(directory, entry)
                with contextlib.suppress(OSError):
                    info = os.lstat(path)
                    if stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid():
                        os.unlink(path)

    def remove(self) -> None:
        if self.path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)


def _check_trusted(info: os.stat_result) -> None:
    """Refuse records another user could have written (ValueError, logged by the caller)."""
    if not stat.S_ISREG(info.st_mode):
        raise ValueError("not a regular file")
    if info.st_uid != os.geteuid():
        raise ValueError(f"owned by uid {info.st_uid}, not by us")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ValueError("others can write to it")
