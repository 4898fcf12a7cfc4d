#!/usr/bin/env python3
"""The floor under taskforce's start-up: N children of the benchmark's child started by a
C program (bench/spawn_floor.c) as fast as the kernel allows, in each way of spawning.

    .venv/bin/python bench/spawn_floor.py                      # 10,000 and 1,000, 3 rounds
    .venv/bin/python bench/spawn_floor.py --tasks 10000 --rounds 5
    .venv/bin/python bench/spawn_floor.py --taskforce           # taskforce beside it
    .venv/bin/python bench/spawn_floor.py --taskforce --ref main --floor a,c

Each figure is the benchmark's start-up: from launching the program to the last child's
own start stamp. In each round the runs take turns in a shuffled order. `--taskforce` also
starts taskforce with the same tasks in each round (as `run.py --scale` does: one JSON
file, its control socket on), `--ref` taskforce as of a git commit too (an A/B), so that
the floor and each taskforce share the machine's load alike.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from harness import machine, reaper
from harness.build import build_child
from harness.context import Context
from harness.floor import MODES, Floor, Series, check_pids, median
from harness.lifecycle import measure_startup
from harness.results import Metric, Results
from harness.tswatch import TsWatcher
from harness.workload import Workload
from peers.base import Env
from peers.taskforce import Taskforce
from peers.taskforce_ref import TaskforceRef

BENCH = Path(__file__).resolve().parent
# --floor picks modes by these letters: (a) vfork+exec, (b) a cgroup each, (c) on 2 threads.
LETTERS = {"a": 0, "a2": 1, "b": 2, "c": 3, "s": 4}


def _taskforce_trial(ctx: Context, peer: Taskforce, count: int, series: Series) -> None:
    workload = Workload.create(ctx.root / f"{peer.name}-{count}", ctx.child, count)
    try:
        if measure_startup(ctx, peer, workload, "startup", 900.0):
            series.startup.append(ctx.results.series["startup"][peer.name].values[-1])
        else:
            series.failures.append(f"{peer.name} did not start every task")
    finally:
        peer.kill()
        reaper.kill_descendants()
        ctx.watcher.remove(workload.ts_dir)
        shutil.rmtree(workload.root, ignore_errors=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="10000,1000", help="comma-separated child counts")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--floor",
        default=",".join(LETTERS),
        help="floor modes: a (vfork+exec), a2 (on 2 threads), b (a cgroup each), c (b on 2"
        " threads), s (one shared cgroup, 2 threads); '' for none",
    )
    parser.add_argument("--taskforce", action="store_true", help="taskforce in each round too")
    parser.add_argument("--ref", help="and taskforce as of this git commit (with --taskforce)")
    parser.add_argument("--seed", type=int, default=None)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    counts = [int(n) for n in args.tasks.split(",") if n.strip()]
    modes = [MODES[LETTERS[letter]] for letter in args.floor.split(",") if letter]
    for count in counts:
        check_pids(count)
    reaper.become_subreaper()
    cache = BENCH / ".peers"
    child = build_child(cache)
    rng = random.Random(args.seed)
    load_before = machine.load_average()
    env = Env(BENCH, cache, Path(sys.executable), print)
    peers: list[Taskforce] = []
    if args.taskforce:
        peers.append(Taskforce(env))
        if args.ref:
            os.environ["BENCH_TASKFORCE_REF"] = args.ref
            peers.append(TaskforceRef(env))
        for peer in peers:
            print(f"{peer.name} {peer.install()}")
    labels = {peer.name: peer for peer in peers}
    runs: list[tuple[str, str, int]] = [*modes, *((name, "", 0) for name in labels)]
    root = Path(tempfile.mkdtemp(prefix="tfb-floor-tf-", dir="/tmp"))
    results = Results([Metric("startup", "start-up", "ms")])
    ctx = Context(root, child, TsWatcher(), results, rng, lambda m: None, root / "raw")
    floor = Floor(cache, child.exe)
    series: dict[tuple[int, str], Series] = {}
    try:
        for round_ in range(args.rounds):
            for count in counts:
                for label, mode, threads in rng.sample(runs, len(runs)):
                    one = series.setdefault((count, label), Series())
                    if label in labels:
                        _taskforce_trial(ctx, labels[label], count, one)
                    else:
                        floor.trial(mode, threads, count, one)
                    last = f"{one.startup[-1]:,.0f} ms" if one.startup else "failed"
                    stamp = time.strftime("%H:%M:%S")
                    print(f"[{stamp}] round {round_ + 1}, {count:,}, {label}: {last}", flush=True)
    except KeyboardInterrupt:
        print("interrupted: cleaning up", file=sys.stderr)
        return 130
    finally:
        floor.close()
        for peer in peers:
            peer.kill()
        ctx.watcher.close()
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"\n{os.cpu_count()} cores; load average before {' / '.join(map(str, load_before))},"
        f" after {' / '.join(map(str, machine.load_average()))}; medians of {args.rounds}"
        " round(s); CPU: the floor program's own until its last spawn returned\n"
    )
    print("| children | how | launch to all running (ms) | range | spawn calls (ms) | CPU (ms) |")
    print("| ---: | --- | ---: | --- | ---: | ---: |")
    for (count, label), one in sorted(series.items(), key=lambda item: -item[0][0]):
        print(f"| {count:,} | {label} | " + " | ".join(_cells(one)) + " |")
    return 0


def _cells(one: Series) -> list[str]:
    up, spawning, cpu = median(one.startup), median(one.spawning), median(one.cpu)
    cells = [
        "failed" if up is None else f"{up:,.0f}",
        f"{min(one.startup):,.0f} to {max(one.startup):,.0f}" if one.startup else "",
        "" if spawning is None else f"{spawning:,.0f}",
        "" if cpu is None else f"{cpu:,.0f}",
    ]
    if one.failures:
        cells[-1] += f" (failed: {'; '.join(sorted(set(one.failures)))})"
    return cells


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
