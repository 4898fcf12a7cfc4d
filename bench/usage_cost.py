#!/usr/bin/env python3
"""What reading the usage of running processes costs taskforce: the CPU time of 10,000
readings of `process_usage` (from /proc) and `Cgroups.usage` (from cgroupfs), the two
readers behind every process of `GET /status/tasks` and of a /metrics scrape.

    .venv/bin/python bench/usage_cost.py                      # main, then the working tree
    .venv/bin/python bench/usage_cost.py --ref HEAD~1 --memory 64M --trials 7

N real `sleep` processes run, each in cgroups of its own made as taskforce makes them
(`Cgroups.prepare` of the working tree, below a key of this run's own; `--memory`: with
that memory limit, so that the instances also have a v1 memory cgroup where the host
has one). Each code under test (`--ref REF`: src/taskforce as committed at REF; and the
working tree's) is loaded in a fresh Python that finds the same cgroups (`discover`
and `prepare`, as a taskforce does when it starts a process), reads every process once
to warm up, then reads them round after round until 10,000 readings are done; the CPU
time of that process (user + system, `time.process_time`, every thread's) is the figure
(and the wall time of read_usages, which reads in two threads). The codes take
turns, trial after trial, so a machine whose load drifts hits both alike; medians, with
the range, are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from status_scale import snapshot

READINGS = 10_000
# What is read: the process's /proc entry, its instance's cgroups, or both (as status did
# until read_usages); both at once with read_usages (the C extension's reader, where the
# code has it); and the floor: the same files opened, read to the end and closed from
# Python, nothing else done.
PARTS = ("process", "cgroup", "both", "batch", "batch wall", "floor")


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * units[text[-1].upper()] if text[-1:].upper() in units else int(text)


def limits_for(memory: int | None) -> object:
    from taskforce.core.spec import NO_CGROUP_LIMITS, CgroupLimits

    return NO_CGROUP_LIMITS if memory is None else CgroupLimits(memory=memory)


def worker(records: str, pids: list[int], memory: int | None, readings: int) -> None:
    """In the code under test: the CPU seconds of `readings` readings of each part."""
    from taskforce.runtime.limits.cgroups import Cgroups
    from taskforce.runtime.processes.usage import process_usage

    cgroups = Cgroups.discover(records)
    limits = limits_for(memory)
    for slot in range(len(pids)):
        cgroups.prepare("t", slot, limits)  # type: ignore[arg-type]
    slots = list(enumerate(pids))

    def process() -> None:
        for _, pid in slots:
            process_usage(pid)

    def cgroup() -> None:
        for slot, _ in slots:
            cgroups.usage("t", slot)

    def both() -> None:
        for slot, pid in slots:
            process_usage(pid)
            cgroups.usage("t", slot)

    files = [path for slot, pid in slots for path in read_files(cgroups, slot, pid)]
    try:
        from taskforce.runtime.processes.usage import read_usages
    except ImportError:  # a code from before it
        read_usages = None

    def batch() -> None:
        if read_usages is not None:
            read_usages([(pid, cgroups.usage_files("t", slot)) for slot, pid in slots])

    def floor() -> None:
        for path in files:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            while os.read(fd, 65536):
                pass
            os.close(fd)

    found: dict[str, float] = {}
    runs = (("process", process), ("cgroup", cgroup), ("both", both), ("batch", batch))
    for name, run in (*runs, ("floor", floor)):
        run()  # warm-up
        rounds = max(1, readings // len(slots))
        start, wall = time.process_time(), time.perf_counter()
        for _ in range(rounds):
            run()
        found[name] = (time.process_time() - start) * readings / (rounds * len(slots))
        if name == "batch":  # in two threads: its wall time is not its CPU time
            found["batch wall"] = (time.perf_counter() - wall) * readings / (rounds * len(slots))
    # A sample of what was read, so that the codes can be seen to agree.
    slot, pid = slots[0]
    used, group = process_usage(pid), cgroups.usage("t", slot)
    found["sample"] = str((used and (used.rss_bytes, used.virtual_bytes), group))  # type: ignore[assignment]
    print(json.dumps(found))


def read_files(cgroups: Any, slot: int, pid: int) -> list[str]:
    """The files a reading of process `pid` and instance `slot` needs at the least: its
    /proc stat and statm, its cgroups' CPU time, memory and members."""
    files = [f"/proc/{pid}/stat", f"/proc/{pid}/statm"]
    cpu = None
    for hierarchy in cgroups.hierarchies:
        path = f"{hierarchy.base}/t@{slot}"
        if not os.path.isdir(path):
            continue
        if hierarchy.version == 2:
            cpu = cpu or f"{path}/cpu.stat"
            files.append(f"{path}/cgroup.procs")
        if "cpuacct" in hierarchy.controllers:
            cpu = f"{path}/cpuacct.usage"
        if "memory" in hierarchy.controllers:
            files.append(
                f"{path}/memory.{'current' if hierarchy.version == 2 else 'usage_in_bytes'}"
            )
    return files + ([cpu] if cpu else [])


def start_processes(count: int, memory: int | None, records: str) -> list[int]:
    """`count` sleeping processes, each in cgroups of its own made as taskforce does."""
    from taskforce.runtime.limits.cgroups import Cgroups

    cgroups = Cgroups.discover(records)
    if not cgroups.available:
        raise SystemExit("no cgroup hierarchy is usable here")
    limits = limits_for(memory)
    pids = []
    for slot in range(count):
        procs = cgroups.prepare("t", slot, limits)  # type: ignore[arg-type]
        proc = subprocess.Popen(["sleep", "100000"], stdin=subprocess.DEVNULL)
        pids.append(proc.pid)
        for path in procs:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, str(proc.pid).encode())
            finally:
                os.close(fd)
    return pids


def stop_processes(pids: list[int], records: str) -> None:
    from taskforce.runtime.limits.cgroups import Cgroups

    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    Cgroups.discover(records).remove_all()


def measure(src: Path, args: argparse.Namespace, records: str, pids_file: Path) -> dict[str, float]:
    argv = [sys.executable, __file__, "--worker", records, "--pids", str(pids_file)]
    argv += ["--readings", str(args.readings)]
    if args.memory is not None:
        argv += ["--memory", str(args.memory)]
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(out.splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=1000, help="sleeping processes")
    parser.add_argument("--readings", type=int, default=READINGS, help="readings per figure")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--ref", default="main", help="the code before (a git ref)")
    parser.add_argument("--memory", type=parse_size, help="each instance's memory limit")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--pids", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, json.loads(Path(args.pids).read_text()), args.memory, args.readings)
        return
    with tempfile.TemporaryDirectory(prefix="tf-usage-cost-") as tmp:
        root = Path(tmp)
        records = str(root / "records")
        codes = {}
        for label, ref in ((f"before ({args.ref})", args.ref), ("after (working tree)", None)):
            place = root / ("ref" if ref else "tree")
            place.mkdir()
            codes[label] = snapshot(ref, place)
        sys.path.insert(0, str(codes["after (working tree)"]))
        pids = start_processes(args.processes, args.memory, records)
        try:
            pids_file = root / "pids.json"
            pids_file.write_text(json.dumps(pids))
            results: dict[str, list[dict[str, float]]] = {label: [] for label in codes}
            for _ in range(args.trials):
                for label, src in codes.items():
                    results[label].append(measure(src, args, records, pids_file))
        finally:
            stop_processes(pids, records)
    limit = "no limits" if args.memory is None else f"memory limit {args.memory}"
    print(
        f"{args.processes} sleeping processes ({limit}), {args.trials} trials: "
        f"CPU ms per {args.readings:,} readings, median (min-max)"
    )
    print("| code | " + " | ".join(PARTS) + " |")
    print("| --- |" + " ---: |" * len(PARTS))
    for label, runs in results.items():
        cells = []
        for part in PARTS:
            values = [run[part] * 1000 for run in runs]
            cells.append(f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})")
        print(f"| {label} | " + " | ".join(cells) + " |")
    for label, runs in results.items():
        print(f"{label}: read {runs[-1]['sample']}")


if __name__ == "__main__":
    main()
