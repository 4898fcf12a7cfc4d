#!/usr/bin/env python3
"""Restart latency and start-up of 100, measured the outside way (issue 18).

    .venv/bin/python bench/outside.py                       # taskforce, s6, runit, PM2; 3 rounds
    .venv/bin/python bench/outside.py --only taskforce,s6,runit --rounds 5
    BENCH_TASKFORCE_REF=main .venv/bin/python bench/outside.py --only taskforce,taskforce-ref,s6

A second method beside bench/run.py, as an outside harness measured it: one supervisor
at a time runs 100 children (bench/child.c, which stamps CLOCK_MONOTONIC first thing);
the time from launching it to the last child's stamp is its start-up of 100. Once every
child has run 3 s, 30 kills come back to back: a child that has run 3 s or more is
SIGKILLed, and as soon as its replacement's stamp is seen (inotify) the next one is.
taskforce is started exactly as `taskforce -e -f CONF -r ROLES -p -`, by a console script
like pip's, with the default settings. Each round runs every supervisor once, in a
shuffled order; the report pools the kills of all rounds (median, p95, p99, max), gives
each round's median, and the machine's load around each block.

bench/run.py interleaves the peers instead, one kill each in turn with 50 ms pauses; see
bench/README.md for why the two can disagree. Results: results/outside.md and .json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import machine, reaper
from harness.build import build_child
from harness.context import MIN_AGE_S, Context, sleep_until_aged, wait_all_started
from harness.results import Results, percentile
from harness.tswatch import Start, TsWatcher
from harness.workload import Workload
from peers import Env, Peer, UnavailableError
from peers.pm2 import Pm2
from peers.runit import Runit
from peers.s6 import S6
from peers.taskforce import Taskforce, config_text
from peers.taskforce_ref import TaskforceRef

BENCH = Path(__file__).resolve().parent
CHILDREN = 100
KILL_TIMEOUT_S = 15.0


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class _Outside(Taskforce):
    """taskforce as the outside harness ran it: `taskforce -e -f CONF -r ROLES -p -`."""

    settings = None  # the defaults (min_uptime 1 s, as the bench's settings say anyway)

    def script(self) -> Path:
        return self.snapshot() / "bin" / "taskforce"

    def install(self) -> str:
        version = super().install()
        # What pip writes for [project.scripts]: the installed command, not `python -m`.
        self.script().parent.mkdir(exist_ok=True)
        self.script().write_text(
            f"#!{self.env.python}\nimport sys\nfrom taskforce.cli.main import main\n"
            "if __name__ == '__main__':\n    sys.exit(main())\n"
        )
        self.script().chmod(0o755)
        return version

    def launch(self, workload: Workload) -> None:
        self.workload = workload
        conf = self.config_path(workload)
        conf.write_text(config_text(workload, self.settings))
        roles = workload.root / "roles"
        roles.write_text("")
        argv: list[str | Path] = [self.script(), "-e", "-f", conf, "-r", roles, "-p", "-"]
        self.proc = self._spawn(argv, env=self.environment(), cwd=workload.root)


class OutsideTaskforce(_Outside):
    name = "taskforce"


class OutsideTaskforceRef(_Outside, TaskforceRef):
    name = "taskforce-ref"


PEERS: list[type[Peer]] = [OutsideTaskforce, OutsideTaskforceRef, S6, Runit, Pm2]
DEFAULT = "taskforce,s6,runit,pm2"


def parse_args(argv: list[str]) -> argparse.Namespace:
    names = [peer.name for peer in PEERS]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=DEFAULT, help=f"comma-separated, of {', '.join(names)}")
    parser.add_argument("--rounds", type=int, default=3, help="supervisor runs per peer")
    parser.add_argument("--kills", type=int, default=30, help="back-to-back kills per run")
    parser.add_argument(
        "--pause",
        type=float,
        default=0.0,
        metavar="MS",
        help="wait this long after each replacement's stamp before the next kill (bench/run.py: "
        "other peers' trials and 50 ms)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for orders and victims")
    parser.add_argument("--out", type=Path, default=BENCH / "results", help="results directory")
    parser.add_argument(
        "--fifo",
        type=int,
        metavar="PRIORITY",
        help="run the harness and every supervisor (and so its children) under SCHED_FIFO: "
        "a quiet machine's view on a shared one (needs root)",
    )
    args = parser.parse_args(argv)
    args.peers = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(args.peers) - set(names)
    if unknown:
        parser.error(f"unknown peer(s) {', '.join(sorted(unknown))} (known: {', '.join(names)})")
    return args


def install(env: Env, names: list[str]) -> tuple[list[Peer], dict[str, str]]:
    peers: list[Peer] = []
    info: dict[str, str] = {}
    for cls in PEERS:
        if cls.name not in names:
            continue
        peer = cls(env)
        try:
            peer.version = peer.install()
        except UnavailableError as error:
            log(f"skipping {cls.name}: {error}")
            info[cls.name] = f"skipped: {error}"
            continue
        log(f"{cls.name} {peer.version}")
        info[cls.name] = peer.version
        peers.append(peer)
    return peers, info


def cpu_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs so far: the machine's load over a block."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


class Block:
    """One supervisor's run: start-up of 100, then its kills back to back."""

    def __init__(self, ctx: Context, peer: Peer, root: Path) -> None:
        self.ctx = ctx
        self.peer = peer
        self.watcher = ctx.watcher
        self.rng = ctx.rng
        self.workload = Workload.create(root, ctx.child, CHILDREN)
        self.starts: dict[str, Start] = {}

    def startup(self) -> float:
        self.watcher.add(self.workload.ts_dir)
        t0 = time.monotonic_ns()
        self.peer.launch(self.workload)
        self.starts = wait_all_started(self.ctx, self.workload, 120)
        return (max(start.ns for start in self.starts.values()) - t0) / 1e6

    def kill_one(self) -> float:
        limit = time.monotonic_ns() - int(MIN_AGE_S * 1e9)
        eligible = [name for name, start in self.starts.items() if start.ns <= limit]
        if not eligible:
            raise RuntimeError("no child has run 3 s")
        name = self.rng.choice(sorted(eligible))
        self.watcher.drain()
        t0 = time.monotonic_ns()
        os.kill(self.starts[name].pid, signal.SIGKILL)
        start = self.watcher.wait_for_start(self.workload.ts_dir, name, t0, KILL_TIMEOUT_S)
        if start is None:
            raise RuntimeError(f"{name} not restarted in {KILL_TIMEOUT_S:g} s")
        self.starts[name] = start
        return (start.ns - t0) / 1e6

    def close(self) -> None:
        self.peer.kill()
        reaper.kill_descendants()
        self.watcher.remove(self.workload.ts_dir)
        shutil.rmtree(self.workload.root, ignore_errors=True)


def run_block(
    ctx: Context, peer: Peer, root: Path, kills: int, pause_s: float = 0.0
) -> dict[str, Any]:
    block = Block(ctx, peer, root)
    out: dict[str, Any] = {"peer": peer.name, "load": machine.load_average()[0]}
    try:
        out["startup_ms"] = block.startup()
        sleep_until_aged(block.starts, MIN_AGE_S)
        busy0, total0 = cpu_busy()
        restarts = []
        for _ in range(kills):
            restarts.append(block.kill_one())
            if pause_s:
                time.sleep(pause_s)
        busy1, total1 = cpu_busy()
        out["restart_ms"] = restarts
        out["busy"] = round((busy1 - busy0) / max(1, total1 - total0), 2)
    except (OSError, TimeoutError, RuntimeError) as error:
        out["error"] = str(error)
    finally:
        block.close()
    return out


def summarise(blocks: list[dict[str, Any]], names: list[str]) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for name in names:
        mine = [b for b in blocks if b["peer"] == name and "restart_ms" in b]
        restarts = [value for b in mine for value in b["restart_ms"]]
        startups = [b["startup_ms"] for b in blocks if b["peer"] == name and "startup_ms" in b]
        if not restarts:
            continue
        summary[name] = {
            "kills": len(restarts),
            "median": statistics.median(restarts),
            "p95": percentile(restarts, 0.95),
            "p99": percentile(restarts, 0.99),
            "max": max(restarts),
            "round_medians": [statistics.median(b["restart_ms"]) for b in mine],
            "startup_median": statistics.median(startups),
            "startups": startups,
            "loads": [b["load"] for b in mine],
            "busy": [b["busy"] for b in mine],
            "errors": [b["error"] for b in blocks if b["peer"] == name and "error" in b],
        }
    return summary


def markdown(data: dict[str, Any]) -> list[str]:
    summary = data["summary"]
    lines = [
        "# Restart and start-up of 100, the outside method (bench/outside.py)",
        "",
        f"{data['date']}; `{data['command']}`; {data['rounds']} rounds of {data['kills']} "
        f"back-to-back kills per supervisor; load average {data['load_before']} before, "
        f"{data['load_after']} after; {data['machine']['cores']} cores, "
        f"{data['machine']['cpu']}"
        + (f"; everything under SCHED_FIFO {data['fifo']}" if data["fifo"] is not None else "")
        + (f"; {data['pause_ms']:g} ms between kills" if data["pause_ms"] else "")
        + ".",
        "",
        "| peer | version | restart median | p95 | p99 | max | round medians | start-up of 100 "
        "(median; each round) | load at each block | CPUs busy |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | --- | --- | --- |",
    ]
    for name, version in data["peers"].items():
        s = summary.get(name)
        if s is None:
            lines.append(f"| {name} | {version} | n/a | | | | | | | |")
            continue
        rounds = ", ".join(f"{value:.2f}" for value in s["round_medians"])
        starts = ", ".join(f"{value:.0f}" for value in s["startups"])
        loads = ", ".join(f"{value:g}" for value in s["loads"])
        busy = ", ".join(f"{value:.0%}" for value in s["busy"])
        lines.append(
            f"| {name} | {version} | {s['median']:.2f} ms | {s['p95']:.2f} | {s['p99']:.2f} "
            f"| {s['max']:.2f} | {rounds} | {s['startup_median']:.0f} ms ({starts}) | {loads} "
            f"| {busy} |"
        )
    errors = [(name, e) for name, s in summary.items() for e in s["errors"]]
    if errors:
        lines += ["", *(f"- {name}: a block failed: {error}" for name, error in errors)]
    if "taskforce" in summary and "s6" in summary:
        tf, s6 = summary["taskforce"], summary["s6"]
        lines += [
            "",
            f"Issue 18's targets: restart median at most s6's / 1.5 ({s6['median'] / 1.5:.2f} "
            f"ms): {tf['median']:.2f} ms; p99 under 5 ms: {tf['p99']:.2f} ms; start-up of 100 "
            "ahead of s6 and runit: "
            + ", ".join(
                f"{name} {s['startup_median']:.0f} ms"
                for name, s in summary.items()
                if name in ("taskforce", "s6", "runit")
            )
            + ".",
        ]
    return lines


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    reaper.become_subreaper()
    if args.fifo is not None:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(args.fifo))  # inherited
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    env = Env(bench=BENCH, peers_dir=BENCH / ".peers", python=Path(sys.executable), log=log)
    child = build_child(env.peers_dir)
    log(f"child program: {child.kind}")
    peers, versions = install(env, args.peers)
    load_before = machine.load_average()
    root = Path(tempfile.mkdtemp(prefix="tfb-outside-", dir="/tmp"))
    watcher = TsWatcher()
    rng = random.Random(seed)
    ctx = Context(root, child, watcher, Results(), rng, log, args.out / "raw")
    blocks: list[dict[str, Any]] = []
    try:
        for round_ in range(args.rounds):
            for peer in rng.sample(peers, len(peers)):
                where = root / f"{peer.name}-r{round_}"
                block = run_block(ctx, peer, where, args.kills, args.pause / 1000)
                blocks.append(block)
                restarts = block.get("restart_ms")
                said = (
                    f"restart median {statistics.median(restarts):.2f} ms"
                    if restarts
                    else block.get("error", "?")
                )
                log(
                    f"round {round_ + 1}: {peer.name}: start-up "
                    f"{block.get('startup_ms', float('nan')):.0f} ms, {said} "
                    f"(load {block['load']})"
                )
    except KeyboardInterrupt:
        log("interrupted: cleaning up, no report written")
        return 130
    finally:
        for peer in peers:
            peer.kill()
        reaper.kill_descendants()
        watcher.close()
        shutil.rmtree(root, ignore_errors=True)
    data = {
        "command": "bench/outside.py " + " ".join(argv),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "seed": seed,
        "rounds": args.rounds,
        "kills": args.kills,
        "fifo": args.fifo,
        "pause_ms": args.pause,
        "machine": machine.describe(),
        "load_before": load_before,
        "load_after": machine.load_average(),
        "peers": versions,
        "summary": summarise(blocks, [peer.name for peer in peers]),
        "blocks": blocks,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "outside.json").write_text(json.dumps(data, indent=1) + "\n")
    text = "\n".join(markdown(data)) + "\n"
    (args.out / "outside.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
