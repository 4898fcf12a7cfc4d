"""What a process costs: its CPU time and memory, read from /proc when asked.

Read at the time of a request (a scrape of /metrics, a GET of /status/tasks), never on a
timer: an idle taskforce makes no wake-ups for this. Where /proc is missing (not Linux) or
the process is gone, the readers answer None and callers leave the figures out.

CPU time is the process's own user and system time (utime + stime), as the standard
`process_cpu_seconds_total` counts it: the time of its children shows once they are
reaped, in theirs.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from taskforce.runtime.own.paths import read_small_file

# More than /proc/PID/stat (52 numbers and a name of at most 64 bytes) or statm hold.
_STAT_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Usage:
    cpu_seconds: float  # user + system
    rss_bytes: int  # resident memory
    virtual_bytes: int  # the size of the address space
    start_time: float  # Unix time the process started


@dataclass(frozen=True, slots=True)
class Descriptors:
    open: int
    max: int | None  # the soft limit; None: unlimited


@functools.cache
def _clock() -> tuple[int, int, float] | None:
    """Clock ticks a second, the page size, and the boot time (Unix seconds)."""
    try:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"btime "):
                    boot = float(line.split()[1])
                    break
            else:
                return None
        return os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE"), boot
    except (OSError, ValueError):
        return None


def process_usage(pid: int | str, proc: str = "/proc") -> Usage | None:
    """The usage of process `pid` ("self" for taskforce itself), or None if unreadable.

    A status request reads this for every running process: two small files, read raw.
    The memory comes from statm, not from the rss field of stat, which newer kernels
    (6.2 on) fill from per-CPU counters that may lag by hundreds of pages."""
    clock = _clock()
    if clock is None:
        return None
    ticks, page, boot = clock
    stat = read_small_file(f"{proc}/{pid}/stat", _STAT_SIZE)
    statm = read_small_file(f"{proc}/{pid}/statm", _STAT_SIZE)
    if stat is None or statm is None:
        return None
    try:
        # The command name (field 2) is in parentheses and may hold spaces or ')' itself:
        # the fields that follow start after its last ')', with the state (field 3).
        fields = stat[stat.rindex(b")") + 2 :].split()
        utime, stime, started = int(fields[11]), int(fields[12]), int(fields[19])
        size, resident = statm.split(None, 2)[:2]
        return Usage(
            cpu_seconds=(utime + stime) / ticks,
            rss_bytes=int(resident) * page,
            virtual_bytes=int(size) * page,
            start_time=boot + started / ticks,
        )
    except (ValueError, IndexError):
        return None


def own_descriptors() -> Descriptors | None:
    """taskforce's open file descriptors and its limit on them, or None without /proc."""
    try:
        count = len(os.listdir("/proc/self/fd"))
        with open("/proc/self/limits", "rb") as f:
            limits = f.read().decode()
    except OSError:
        return None
    for line in limits.splitlines():
        if line.startswith("Max open files"):
            soft = line[len("Max open files") :].split()[0]
            # The listing holds its own descriptor: it is closed again now.
            return Descriptors(count - 1, None if soft == "unlimited" else int(soft))
    return Descriptors(count - 1, None)
