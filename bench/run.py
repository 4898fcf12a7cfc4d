#!/usr/bin/env python3
"""Benchmark taskforce against its peers on this machine: `make bench` (see README.md).

Installs missing peers, runs every metric with the peers interleaved, and writes
bench/results/latest.md and latest.json (and a dated copy under results/raw/).
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from harness import machine, reaper, report, targets
from harness.build import build_child
from harness.context import Context
from harness.lifecycle import run_lifecycle
from harness.results import Results
from harness.scale import SCALE, SCALE_METRICS, Sizes, choose_counts, latest_section, run_scale
from harness.scale import markdown as scale_markdown
from harness.steady import run_steady
from harness.tswatch import TsWatcher
from peers import ALL, Env, Peer, UnavailableError

BENCH = Path(__file__).resolve().parent
METRIC_GROUPS = ("restart", "file_change", "startup", "shutdown", "idle", "reload")
SCALE_PEERS = "taskforce,s6,supervisord"


@dataclass(frozen=True)
class Plan:
    restart_rounds: int
    file_change_rounds: int
    idle_windows: int
    idle_s: float
    startup_100_rounds: int
    startup_1000_rounds: int
    reloads_per_round: int


FULL = Plan(30, 24, 2, 20.0, 5, 3, 2)
QUICK = Plan(3, 3, 1, 5.0, 1, 1, 1)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    names = [peer.name for peer in ALL]
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few trials: a smoke run (<3 min)")
    parser.add_argument("--only", help=f"comma-separated peers (of {', '.join(names)})")
    parser.add_argument(
        "--metrics", help=f"comma-separated metric groups (of {', '.join(METRIC_GROUPS)})"
    )
    parser.add_argument("--out", type=Path, default=BENCH / "results", help="results directory")
    parser.add_argument("--seed", type=int, default=None, help="seed for the trial order")
    parser.add_argument(
        "--scale",
        action="store_true",
        help=f"scale mode: {SCALE:,} tasks ({SCALE_PEERS} unless --only); writes scale.md",
    )
    parser.add_argument("--scale-tasks", type=int, default=SCALE, help="tasks in scale mode")
    parser.add_argument("--scale-rounds", type=int, default=1, help="rounds in scale mode")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="measure nothing: write latest.md again from a saved results JSON",
    )
    args = parser.parse_args(argv)
    args.argv = argv
    if args.scale and not args.only:
        args.only = SCALE_PEERS
    args.peers = _choose(args.only, names, "peer")
    args.metric_set = set(_choose(args.metrics, list(METRIC_GROUPS), "metric"))
    return args


def _choose(spec: str | None, known: list[str], what: str) -> list[str]:
    if not spec:
        return known
    chosen = [item.strip() for item in spec.split(",") if item.strip()]
    unknown = [item for item in chosen if item not in known]
    if unknown:
        sys.exit(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    return chosen


def install_peers(env: Env, names: list[str]) -> tuple[list[Peer], list[dict[str, Any]]]:
    peers: list[Peer] = []
    info: list[dict[str, Any]] = []
    for cls in ALL:
        if cls.name not in names:
            continue
        peer = cls(env)
        try:
            peer.version = peer.install()
        except UnavailableError as error:
            log(f"skipping {cls.name}: {error}")
            info.append({"name": cls.name, "skipped": str(error)})
            continue
        log(f"{cls.name} {peer.version}")
        peers.append(peer)
        info.append({"name": cls.name, "version": peer.version, "notes": cls.notes})
    return peers, info


def measure(ctx: Context, peers: list[Peer], metrics: set[str], plan: Plan) -> None:
    if metrics & {"restart", "file_change", "idle"}:
        run_steady(
            ctx,
            peers,
            metrics,
            plan.restart_rounds,
            plan.file_change_rounds,
            plan.idle_windows,
            plan.idle_s,
        )
        reaper.kill_descendants()
    if metrics & {"startup", "shutdown"}:
        run_lifecycle(ctx, peers, 100, plan.startup_100_rounds, 0, "shutdown" in metrics)
    if metrics & {"startup", "reload"}:
        reloads = plan.reloads_per_round if "reload" in metrics else 0
        run_lifecycle(ctx, peers, 1000, plan.startup_1000_rounds, reloads, False)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def render(saved: Path, out: Path) -> int:
    data = json.loads(saved.read_text())
    results = Results.from_json(data.pop("metrics"))
    data["targets"] = targets.evaluate(results)
    md_path, _ = report.write(out, data, results, latest_section(out / "scale.json"))
    log(f"wrote {md_path} from {saved}")
    return 0


def run(
    args: argparse.Namespace,
    results: Results,
    prefix: str,
    measure_all: Callable[[Context, list[Peer]], None],
) -> dict[str, Any] | None:
    """Install the peers, measure, clean up everything; the report's common data, or None
    if interrupted."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    reaper.become_subreaper()
    began = time.monotonic()
    load_before = machine.load_average()
    peers_dir = BENCH / ".peers"
    env = Env(bench=BENCH, peers_dir=peers_dir, python=Path(sys.executable), log=log)
    child = build_child(peers_dir)
    log(f"child program: {child.kind} ({child.exe})")
    peers, peer_info = install_peers(env, args.peers)
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    watcher = TsWatcher()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    ctx = Context(root, child, watcher, results, random.Random(seed), log, args.out / "raw")
    try:
        measure_all(ctx, peers)
    except KeyboardInterrupt:
        log("interrupted: cleaning up, no report written")
        return None
    finally:
        for peer in peers:
            peer.kill()
        left = reaper.kill_descendants()
        if left:
            log(f"cleaned up {left} leftover processes")
        watcher.close()
        shutil.rmtree(root, ignore_errors=True)
    return {
        "argv": args.argv,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "duration_s": round(time.monotonic() - began, 1),
        "seed": seed,
        "machine": machine.describe(),
        "load_before": load_before,
        "load_after": machine.load_average(),
        "child": child.kind,
        "peers": peer_info,
    }


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.render is not None:
        return render(args.render, args.out)
    if args.scale:
        return main_scale(args)
    plan = QUICK if args.quick else FULL
    results = Results()
    data = run(args, results, "tfb-", lambda ctx, peers: measure(ctx, peers, args.metric_set, plan))
    if data is None:
        return 130
    data |= {
        "command": "make bench" + (" (--quick)" if args.quick else ""),
        "plan": plan.__dict__,
        "targets": targets.evaluate(results),
    }
    md_path, json_path = report.write(
        args.out, data, results, latest_section(args.out / "scale.json")
    )
    raw = args.out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    shutil.copy2(json_path, raw / f"{stamp}.json")
    log(f"wrote {md_path} and {json_path} in {data['duration_s'] / 60:.1f} min")
    print(md_path.read_text())
    return 0


def main_scale(args: argparse.Namespace) -> int:
    """`--scale`: each peer once at 10,000 tasks (fewer where it cannot), see harness/scale.py."""
    results = Results(SCALE_METRICS)
    sizes: list[Sizes] = []

    def measure_scale(ctx: Context, peers: list[Peer]) -> None:
        sizes.append(choose_counts(peers, args.scale_tasks))
        run_scale(ctx, peers, sizes[0], args.scale_rounds)

    data = run(args, results, "tfb-scale-", measure_scale)
    if data is None:
        return 130
    data |= {
        "command": "bench/run.py " + " ".join(args.argv),
        "rounds": args.scale_rounds,
        "counts": sizes[0].counts,
        "reduced": sizes[0].reasons,
        "metrics": results.to_json(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps(data, indent=1) + "\n")
    md_path = args.out / "scale.md"
    md_path.write_text("\n".join(scale_markdown(data, results, sizes[0])) + "\n")
    log(f"wrote {md_path} in {data['duration_s'] / 60:.1f} min")
    print(md_path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
