"""Telling whether a pid really is the process we think it is.

A pid read from a pidfile (or remembered from an earlier run) may have been recycled by
an unrelated process, or the file may have been forged. Before taskforce signals or
adopts such a pid, the process must match: its start time equals the one recorded when
taskforce started it, or, with no record, its executable or command line names the
task's program. When that program is an interpreter (python, perl, sh...), the same
executable runs many unrelated programs: the script (or `-m module`, `-c code`) the
task passes it must be there too.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

_MAX_PIDFILE = 128
# Executables that run a program named by their arguments.
_INTERPRETER = re.compile(
    r"(python|pypy|perl|ruby|node|nodejs|php|lua|tclsh|wish|bash|sh|dash|zsh|ksh|mksh|"
    r"busybox|java|rscript|julia|bun|deno)[0-9.]*(m|u|-[0-9.]+)?",
    re.IGNORECASE,
)
# Interpreter options whose next word names what runs.
_NAMING_OPTIONS = frozenset({"-m", "-c", "-e", "-jar", "-cp", "-classpath", "-r"})


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    pid: int
    # Start time in clock ticks since boot (/proc/<pid>/stat field 22): with the pid it
    # names one process for the life of the system.
    start_ticks: int
    exe: str | None
    argv: tuple[str, ...]


def start_ticks(pid: int) -> int | None:
    """When live process `pid` started, in clock ticks since boot; None if there is none
    (or it is a zombie). One read of /proc/<pid>/stat: the records of a thousand starts."""
    if pid <= 1:
        return None
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        stat = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    fields = stat.rsplit(b")", 1)[-1].split()
    if len(fields) < 20 or fields[0] == b"Z":
        return None
    return int(fields[19])


def identify(pid: int) -> ProcessIdentity | None:
    """The identity of live process `pid`, or None if there is none (or it is a zombie)."""
    started = start_ticks(pid)
    if started is None:
        return None
    try:
        exe: str | None = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        exe = None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        raw = b""
    # Each word ends in a NUL (unless the process rewrote its command line). Empty words
    # stay (redis's `--save ""`), and bytes that are not UTF-8 decode as they were encoded
    # for exec, so that the command compares equal to the task's, exactly.
    words = raw.split(b"\0")
    if not words[-1]:
        words.pop()
    argv = tuple(os.fsdecode(word) for word in words)
    return ProcessIdentity(pid, started, exe, argv)


def real_uid(pid: int) -> int | None:
    """The real uid of process `pid`: the user who started it (a process of another user
    cannot take it on, unlike the owner of /proc/<pid>, which is root for a process that
    made itself undumpable)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


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


def runs_program(identity: ProcessIdentity, program: str, argv: Sequence[str] = ()) -> bool:
    """Whether the process runs `program` (as its executable or as an interpreted script).

    `argv` is the task's command (program first): when `program` is an interpreter, the
    process must also run what the command gives it to run.
    """
    wanted = os.path.realpath(program)
    exe = identity.exe
    if exe is not None and os.path.realpath(exe.removesuffix(" (deleted)")) == wanted:
        if not _INTERPRETER.fullmatch(os.path.basename(wanted)):
            return True
        return _runs_same_code(identity.argv, argv)
    if exe is None and identity.argv and not _INTERPRETER.fullmatch(os.path.basename(wanted)):
        # The executable cannot be read (not our process): its command line has to do.
        first = identity.argv[0]
        if os.path.isabs(first) and os.path.realpath(first) == wanted:
            return True
    # `program` is a script: its interpreter runs it, named among the first arguments.
    return any(os.path.isabs(arg) and os.path.realpath(arg) == wanted for arg in identity.argv[1:3])


def _runs_same_code(seen: Sequence[str], argv: Sequence[str]) -> bool:
    """Whether an interpreter's command line `seen` runs what the task's `argv` asks of it."""
    for index, word in enumerate(argv[1:], start=1):
        if word in _NAMING_OPTIONS and index + 1 < len(argv):
            named = argv[index + 1]
            return any(a == word and b == named for a, b in itertools.pairwise(seen[1:]))
        if word.startswith("-"):
            continue  # an option of the interpreter
        if not os.path.isfile(word):
            return True  # not a script: nothing more to compare
        script = os.path.realpath(word)
        return any(
            arg == word or (os.path.isabs(arg) and os.path.realpath(arg) == script)
            for arg in seen[1:]
        )
    return True


def same_process(identity: ProcessIdentity, recorded_ticks: int) -> bool:
    return identity.start_ticks == recorded_ticks
