"""What a process costs: its CPU time and memory, read from /proc when asked, and what its
instance's cgroup costs, read from cgroupfs.

Read at the time of a request (a scrape of /metrics, a GET of /status/tasks), never on a
timer: an idle taskforce makes no wake-ups for this. Where /proc is missing (not Linux) or
the process is gone, the readers answer None and callers leave the figures out.

read_usages() reads many at once, for the views of every task: in one call of the C
extension where it is built, which reads the files without the GIL (in two threads where
there are many), else here one by one; the figures are the same.

CPU time is the process's own user and system time (utime + stime), as the standard
`process_cpu_seconds_total` counts it: the time of its children shows once they are
reaped, in theirs.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass

from taskforce.runtime.own.paths import read_small_file

try:
    from taskforce import _syscalls
except ImportError:  # built without a C compiler: read from Python
    _syscalls = None  # type: ignore[assignment]

# More than /proc/PID/stat (52 numbers and a name of at most 64 bytes) or statm hold, or
# a cgroup file of a single value (cpu.stat, memory.current).
_STAT_SIZE = 4096
_CHUNK = 65536  # a read of cgroup.procs, which goes on to its end


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


@dataclass(frozen=True, slots=True)
class GroupFiles:
    """Where the usage of an instance's cgroup is read: each as (directory of instance
    cgroups, file name) below which `name` is the instance's own directory; cpu and memory
    None where it has no such cgroup. Shared by many instances, so the pairs are too."""

    name: str
    cpu: tuple[str, str] | None  # cpuacct.usage (nanoseconds) or cpu.stat (usage_usec)
    memory: tuple[str, str] | None  # memory.current or memory.usage_in_bytes
    members: tuple[str, str]  # cgroup.procs


# A cgroup's CPU seconds, memory bytes and process count (None: unreadable).
GroupReading = tuple[float | None, int | None, int]
# A process's CPU seconds and resident bytes (None: gone), and its instance's cgroup's.
Reading = tuple[float | None, int | None, GroupReading | None]


def read_group(files: GroupFiles) -> GroupReading:
    """The usage of one instance's cgroup, read from Python."""
    cpu: float | None = None
    memory: int | None = None
    if files.cpu is not None:
        base, file = files.cpu
        data = read_small_file(f"{base}/{files.name}/{file}", _STAT_SIZE)
        cpu = None if data is None else _cpu_seconds(data, file)
    if files.memory is not None:
        base, file = files.memory
        data = read_small_file(f"{base}/{files.name}/{file}", _STAT_SIZE)
        memory = None if data is None else _integer(data)
    base, file = files.members
    procs = _read_all(f"{base}/{files.name}/{file}")
    return cpu, memory, 0 if procs is None else len(procs.split())


def read_usages(
    targets: Sequence[tuple[int | None, GroupFiles | None]], proc: str = "/proc"
) -> list[Reading]:
    """The usage of each (pid, its instance's cgroup files) at once, in order: the
    process's part None without a pid, the cgroup's None without files."""
    if _syscalls is None:
        return [read_one(pid, files, proc) for pid, files in targets]
    index: dict[tuple[str, str], int] = {}
    items: list[tuple[int, str | None, int, int, int]] = []
    for pid, files in targets:
        if files is None:
            items.append((pid or 0, None, -1, -1, -1))
            continue
        where: list[int] = []
        for pair in (files.cpu, files.memory, files.members):
            if pair is None:
                where.append(-1)
            else:
                found = index.get(pair)
                if found is None:
                    found = index[pair] = len(index)
                where.append(found)
        items.append((pid or 0, files.name, where[0], where[1], where[2]))
    return _syscalls.read_usage(proc, list(index), items, _threads())


def read_one(pid: int | None, files: GroupFiles | None, proc: str = "/proc") -> Reading:
    """read_usages() of one, from Python."""
    used = process_usage(pid, proc) if pid else None
    group = None if files is None else read_group(files)
    return (used.cpu_seconds, used.rss_bytes, group) if used else (None, None, group)


@functools.cache
def _threads() -> int:
    """Threads for a reading: two where taskforce may run on two CPUs or more."""
    return min(2, len(os.sched_getaffinity(0)))


def _integer(data: bytes) -> int | None:
    try:
        return int(data)
    except ValueError:
        return None


def _cpu_seconds(data: bytes, file: str) -> float | None:
    """The CPU time in cpuacct.usage (nanoseconds) or in cpu.stat (its usage_usec)."""
    if file == "cpuacct.usage":
        value = _integer(data)
        return None if value is None else value * 1e-9
    _, found, rest = (b"\n" + data).partition(b"\nusage_usec ")
    value = _integer(rest.partition(b"\n")[0]) if found else None
    return None if value is None else value * 1e-6


def _read_all(path: str) -> bytes | None:
    """The whole of a cgroup file that may be long (cgroup.procs), read raw; None if it
    cannot be. The kernel may answer a read short before the end: reads go on to it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        chunks = []
        while chunk := os.read(fd, _CHUNK):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


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
