"""Read process facts from /proc: the process tree, CPU time, context switches, memory."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (field 3, the state, is index 0)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return raw[raw.rfind(b")") + 2 :].decode().split()


def parent_map() -> dict[int, int]:
    """Every live process and its parent."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                parents[int(entry)] = int(fields[1])
    return parents


def descendants(root: int, parents: dict[int, int] | None = None) -> list[int]:
    """`root` and all its descendants, parents before children."""
    parents = parent_map() if parents is None else parents
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    order, todo = [], [root] if root in parents else []
    while todo:
        pid = todo.pop()
        order.append(pid)
        todo.extend(children.get(pid, ()))
    return order


def exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


@dataclass
class Usage:
    """Resource use of a set of processes (sums)."""

    cpu_ms: float = 0.0
    ctx_switches: int = 0
    rss_kb: int = 0
    pss_kb: int = 0
    processes: int = 0


def _threads(pid: int) -> tuple[float | None, int]:
    """CPU time in ms (ns-precise schedstat, summed over threads) and context switches."""
    cpu_ns: int | None = 0
    switches = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None, 0
    for tid in tids:
        base = f"/proc/{pid}/task/{tid}"
        try:
            status = Path(f"{base}/status").read_text()
            schedstat = Path(f"{base}/schedstat").read_text().split()
        except OSError:
            schedstat = []
            status = ""
        if cpu_ns is not None and schedstat:
            cpu_ns += int(schedstat[0])
        else:
            cpu_ns = None
        for line in status.splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                switches += int(line.split()[1])
    return (cpu_ns / 1e6 if cpu_ns is not None else None), switches


def _memory_kb(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0, 0
    for line in text.splitlines():
        if line.startswith("Rss:"):
            rss = int(line.split()[1])
        elif line.startswith("Pss:"):
            pss = int(line.split()[1])
    return rss, pss


def usage(pids: Iterable[int]) -> dict[int, Usage]:
    """Per-process usage: CPU time (all threads), context switches, RSS and PSS."""
    result: dict[int, Usage] = {}
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is None:
            continue
        cpu_ms, switches = _threads(pid)
        if cpu_ms is None:  # no schedstat: clock ticks from stat (10 ms resolution)
            cpu_ms = (int(fields[11]) + int(fields[12])) * 1000.0 / CLOCK_TICKS
        rss, pss = _memory_kb(pid)
        result[pid] = Usage(cpu_ms, switches, rss, pss, 1)
    return result
