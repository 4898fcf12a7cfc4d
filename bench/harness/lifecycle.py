"""Metrics of a supervisor's life: start-up of N children, reload of one changed task out
of N, shutdown. Each trial starts a fresh supervisor; peers take turns in shuffled order."""

from __future__ import annotations

import shutil
import time

from harness import procfs, reaper
from harness.context import Context, sleep_until_aged, wait_all_started, wait_gone, wait_quiet
from harness.tswatch import read_starts
from harness.workload import Workload
from peers.base import Peer

RELOAD_TIMEOUT_S = 60.0
SHUTDOWN_TIMEOUT_S = 60.0


def measure_startup(
    ctx: Context, peer: Peer, workload: Workload, metric: str, timeout: float | None = None
) -> bool:
    ctx.watcher.add(workload.ts_dir)
    t0 = time.monotonic_ns()
    try:
        peer.launch(workload)
        if timeout is None:
            timeout = 30 + 0.3 * len(workload.tasks)
        starts = wait_all_started(ctx, workload, timeout)
    except (OSError, TimeoutError) as error:
        ctx.results.fail(metric, peer.name, str(error))
        ctx.log(f"  {peer.name}: {error}")
        return False
    ctx.results.add(metric, peer.name, (max(s.ns for s in starts.values()) - t0) / 1e6)
    return True


def measure_reload(ctx: Context, peer: Peer, workload: Workload, name: str) -> Workload:
    before = read_starts(workload.ts_dir)
    new = workload.changed(name)
    apply = peer.prepare_reload(new, name)
    ctx.watcher.drain()
    t0 = time.monotonic_ns()
    apply()
    start = ctx.watcher.wait_for_start(workload.ts_dir, name, t0, RELOAD_TIMEOUT_S)
    if start is None:
        ctx.results.fail("reload_ms", peer.name, f"not restarted in {RELOAD_TIMEOUT_S:g} s")
        ctx.keep_logs(workload, f"{peer.name}-reload-{name}")
    elif not peer.runs(start.pid, new.task(name)):
        ctx.results.fail("reload_ms", peer.name, "restarted the old version")
    else:
        ctx.results.add("reload_ms", peer.name, (start.ns - t0) / 1e6)
    # Whatever else the reload does (restarting others, late) has a few seconds to show.
    wait_quiet(ctx, workload, 1.0, RELOAD_TIMEOUT_S)
    peer.helpers_done()
    after = read_starts(workload.ts_dir)
    touched = sum(
        1
        for other, was in before.items()
        if other != name
        and (other not in after or after[other].pid != was.pid or not procfs.alive(was.pid))
    )
    ctx.results.add("reload_touched", peer.name, touched)
    return new


def measure_shutdown(ctx: Context, peer: Peer, workload: Workload, metric: str) -> bool:
    # Let the supervisor finish its start-up (circus misses a SIGTERM that arrives during it).
    wait_quiet(ctx, workload, 0.3, 10)
    time.sleep(0.2)
    pids = [start.pid for start in read_starts(workload.ts_dir).values()]
    t0 = time.monotonic_ns()
    peer.request_stop()
    if wait_gone(pids, SHUTDOWN_TIMEOUT_S):
        ctx.results.add(metric, peer.name, (time.monotonic_ns() - t0) / 1e6)
        return True
    left = sum(1 for pid in pids if procfs.alive(pid))
    ctx.results.fail(metric, peer.name, f"{left} children left after {SHUTDOWN_TIMEOUT_S:g} s")
    return False


class _Phases:
    """Wall time of a trial's phases, for the progress log."""

    def __init__(self) -> None:
        self.times: list[tuple[str, float]] = []
        self._last = time.monotonic()

    def done(self, phase: str) -> None:
        now = time.monotonic()
        self.times.append((phase, now - self._last))
        self._last = now

    def __str__(self) -> str:
        total = sum(seconds for _, seconds in self.times)
        parts = ", ".join(f"{phase} {seconds:.1f}" for phase, seconds in self.times)
        return f"{total:.1f} s: {parts}"


def lifecycle_trial(
    ctx: Context, peer: Peer, count: int, label: str, reloads: int, shutdown: bool
) -> str:
    phases = _Phases()
    workload = Workload.create(ctx.root / f"{peer.name}-{label}", ctx.child, count)
    ok = False
    try:
        if not measure_startup(ctx, peer, workload, f"startup_{count}_ms"):
            return "start-up failed"
        phases.done("start")
        if reloads:
            sleep_until_aged(read_starts(workload.ts_dir), 1.2)
            for name in ctx.rng.sample([task.name for task in workload.tasks], reloads):
                workload = measure_reload(ctx, peer, workload, name)
            phases.done("reload")
        ok = measure_shutdown(ctx, peer, workload, f"shutdown_{count}_ms") if shutdown else True
        phases.done("stop")
    finally:
        if not ok:
            ctx.keep_logs(workload, f"{peer.name}-{label}")
        peer.kill()
        phases.done("kill")
        reaper.kill_descendants()
        ctx.watcher.remove(workload.ts_dir)
        shutil.rmtree(workload.root, ignore_errors=True)
        phases.done("clean")
    return str(phases)


def run_lifecycle(
    ctx: Context, peers: list[Peer], count: int, rounds: int, reloads: int, shutdown: bool
) -> None:
    what = ["start-up"] + (["reload"] if reloads else []) + (["shutdown"] if shutdown else [])
    ctx.log(f"{', '.join(what)} of {count} children: {rounds} rounds x {len(peers)} peers")
    for trial in range(rounds):
        for peer in ctx.rng.sample(peers, len(peers)):
            spent = lifecycle_trial(ctx, peer, count, f"n{count}-r{trial}", reloads, shutdown)
            ctx.log(f"  round {trial + 1}: {peer.name} ({spent})")
