"""Metrics on a running workload of 100 children, all peers up at once and interleaved:
restart latency, file change to restart, idle cost."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

from harness import procfs
from harness.context import MIN_AGE_S, Context, alive_children, wait_all_started, wait_quiet
from harness.tswatch import read_starts
from harness.workload import Workload
from peers.base import Peer

CHILDREN = 100
WATCHED = 10  # tasks with a watched file; trials cycle through them
TRIAL_TIMEOUT_S = 15.0


@dataclass
class Running:
    peer: Peer
    workload: Workload


def start_all(ctx: Context, peers: list[Peer], metrics: set[str]) -> list[Running]:
    running: list[Running] = []
    for peer in peers:
        watched = WATCHED if peer.file_change and "file_change" in metrics else 0
        workload = Workload.create(ctx.root / f"{peer.name}-steady", ctx.child, CHILDREN, watched)
        ctx.watcher.add(workload.ts_dir)
        try:
            peer.launch(workload)
            wait_all_started(ctx, workload, 120)
        except (OSError, TimeoutError) as error:
            ctx.log(f"  {peer.name}: could not start 100 children: {error}")
            ctx.keep_logs(workload, f"{peer.name}-steady")
            for metric in ("restart_ms", "file_change_ms", "idle_cpu_ms"):
                ctx.results.fail(metric, peer.name, f"start-up failed: {error}")
            peer.kill()
            continue
        running.append(Running(peer, workload))
        ctx.log(f"  {peer.name}: 100 children running")
    return running


def _oldest(ctx: Context, workload: Workload, names: set[str] | None) -> tuple[str, int] | None:
    starts = alive_children(read_starts(workload.ts_dir))
    limit = time.monotonic_ns() - int(MIN_AGE_S * 1e9)
    candidates = [
        (start.ns, name, start.pid)
        for name, start in starts.items()
        if start.ns <= limit and (names is None or name in names)
    ]
    if not candidates:
        return None
    _, name, pid = min(candidates)
    return name, pid


def _wait_for_candidate(
    ctx: Context, workload: Workload, names: set[str] | None
) -> tuple[str, int] | None:
    deadline = time.monotonic() + MIN_AGE_S + 2
    while time.monotonic() < deadline:
        found = _oldest(ctx, workload, names)
        if found is not None:
            return found
        time.sleep(0.2)
    return None


def restart_trial(ctx: Context, run: Running) -> None:
    found = _wait_for_candidate(ctx, run.workload, None)
    if found is None:
        ctx.results.fail("restart_ms", run.peer.name, "no child old enough to kill")
        return
    name, pid = found
    ctx.watcher.drain()
    t0 = time.monotonic_ns()
    os.kill(pid, signal.SIGKILL)
    start = ctx.watcher.wait_for_start(run.workload.ts_dir, name, t0, TRIAL_TIMEOUT_S)
    if start is None:
        ctx.results.fail("restart_ms", run.peer.name, f"not restarted in {TRIAL_TIMEOUT_S:g} s")
    else:
        ctx.results.add("restart_ms", run.peer.name, (start.ns - t0) / 1e6)


def file_change_trial(ctx: Context, run: Running, serial: int) -> None:
    watched = {task.name: task.watch for task in run.workload.tasks if task.watch is not None}
    found = _wait_for_candidate(ctx, run.workload, set(watched))
    if found is None:
        ctx.results.fail("file_change_ms", run.peer.name, "no watched child old enough")
        return
    name, _ = found
    path = watched[name]
    assert path is not None
    tmp = path.with_name(f".{path.name}.new")
    tmp.write_text(f"version {serial}\n")
    ctx.watcher.drain()
    t0 = time.monotonic_ns()
    os.rename(tmp, path)
    start = ctx.watcher.wait_for_start(run.workload.ts_dir, name, t0, TRIAL_TIMEOUT_S)
    if start is None:
        ctx.results.fail("file_change_ms", run.peer.name, f"not restarted in {TRIAL_TIMEOUT_S:g} s")
    else:
        ctx.results.add("file_change_ms", run.peer.name, (start.ns - t0) / 1e6)


def idle_window(ctx: Context, running: list[Running], seconds: float) -> None:
    """All peers sit idle together; each one's own processes are measured over the window."""
    before = {run.peer.name: procfs.usage(run.peer.own_pids()) for run in running}
    time.sleep(seconds)
    for run in running:
        name = run.peer.name
        after = procfs.usage(run.peer.own_pids())
        common = set(before[name]) & set(after)
        if not after:
            ctx.results.fail("idle_cpu_ms", name, "supervisor not found")
            continue
        cpu = sum(after[pid].cpu_ms - before[name][pid].cpu_ms for pid in common)
        ctx_sw = sum(after[pid].ctx_switches - before[name][pid].ctx_switches for pid in common)
        ctx.results.add("idle_cpu_ms", name, cpu * 20.0 / seconds)
        ctx.results.add("idle_wakeups", name, ctx_sw * 20.0 / seconds)
        ctx.results.add("idle_rss_mb", name, sum(u.rss_kb for u in after.values()) / 1024)
        ctx.results.add("idle_pss_mb", name, sum(u.pss_kb for u in after.values()) / 1024)
        ctx.results.add("idle_processes", name, len(after))


def run_steady(
    ctx: Context,
    peers: list[Peer],
    metrics: set[str],
    restart_trials: int,
    file_change_trials: int,
    idle_windows: int,
    idle_s: float,
) -> None:
    ctx.log(f"steady state: {len(peers)} peers x {CHILDREN} children, interleaved")
    running = start_all(ctx, peers, metrics)
    try:
        if "restart" in metrics:
            for trial in range(restart_trials):
                for run in ctx.rng.sample(running, len(running)):
                    restart_trial(ctx, run)
                    time.sleep(0.05)
                if trial % 10 == 9:
                    ctx.log(f"  restart latency: {trial + 1}/{restart_trials} rounds")
        if "file_change" in metrics:
            watching = [run for run in running if run.peer.file_change]
            for run in running:
                if not run.peer.file_change:
                    ctx.results.na("file_change_ms", run.peer.name, "no file watching")
            for trial in range(file_change_trials):
                for run in ctx.rng.sample(watching, len(watching)):
                    file_change_trial(ctx, run, trial + 1)
                    time.sleep(0.05)
            ctx.log(f"  file change: {file_change_trials} rounds")
        if "idle" in metrics:
            for run in running:
                wait_quiet(ctx, run.workload, 0.5, 10)
            time.sleep(3)  # let deferred work (log flushes, timers) settle
            for window in range(idle_windows):
                idle_window(ctx, running, idle_s)
                ctx.log(f"  idle: window {window + 1}/{idle_windows} of {idle_s:g} s")
    finally:
        for run in running:
            run.peer.kill()
            ctx.watcher.remove(run.workload.ts_dir)
