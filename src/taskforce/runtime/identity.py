"""Telling whether a pid really is the process we think it is.

A pid read from a pidfile (or remembered from an earlier run) may have been recycled by
an unrelated process, or the file may have been forged. Before taskforce signals or
adopts such a pid, the process must match: its start time equals the one recorded when
taskforce started it, or, with no record, its executable or command line names the
task's program.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

_MAX_PIDFILE = 128


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    pid: int
    # Start time in clock ticks since boot (/proc/<pid>/stat field 22): with the pid it
    # names one process for the life of the system.
    start_ticks: int
    exe: str | None
    argv: tuple[str, ...]


def identify(pid: int) -> ProcessIdentity | None:
    """The identity of live process `pid`, or None if there is none (or it is a zombie)."""
    if pid <= 1:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    if len(fields) < 20 or fields[0] == "Z":
        return None
    start_ticks = int(fields[19])
    try:
        exe: str | None = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        exe = None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = tuple(a.decode(errors="replace") for a in f.read().split(b"\0") if a)
    except OSError:
        argv = ()
    return ProcessIdentity(pid, start_ticks, exe, argv)


def read_pidfile(path: str) -> int | None:
    """The pid a pidfile names, or None when it is absent, empty or not a pid."""
    try:
        with open(path, "rb") as f:
            text = f.read(_MAX_PIDFILE).decode("ascii", "replace")
    except OSError:
        return None
    words = text.split()
    if not words or not words[0].isdigit():
        return None
    pid = int(words[0])
    return pid if pid > 1 else None


def runs_program(identity: ProcessIdentity, program: str) -> bool:
    """Whether the process runs `program` (as its executable or as an interpreted script)."""
    wanted = os.path.realpath(program)
    if (
        identity.exe is not None
        and os.path.realpath(identity.exe.removesuffix(" (deleted)")) == wanted
    ):
        return True
    return any(os.path.isabs(arg) and os.path.realpath(arg) == wanted for arg in identity.argv[:3])


def same_process(identity: ProcessIdentity, recorded_ticks: int) -> bool:
    return identity.start_ticks == recorded_ticks
