"""Scale mode (`run.py --scale`): 10,000 tasks in one configuration file.

Each peer, in shuffled order, runs the workload once at SMALL tasks (start-up, then its own
memory is read) and once at its scale count: start-up, memory, the status of every task
through its API, one task changed and reloaded, shutdown. Peers that cannot go as far in
reasonable time run fewer tasks, and the report says so.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import procfs, reaper
from harness.context import Context, sleep_until_aged, wait_quiet
from harness.lifecycle import measure_reload, measure_shutdown, measure_startup
from harness.report import BASELINE, busy_note, fmt, ratio
from harness.results import Metric, Results
from harness.tswatch import read_starts
from harness.workload import Workload
from peers.base import Peer

SCALE = 10_000
SMALL = 100
STATUS_SAMPLES = 5
FRESH_AFTER_S = 1.2
STARTUP_TIMEOUT_S = 900.0
# Peers measured with fewer tasks, and why (the report shows it).
REDUCED = {
    "supervisord": (
        1_000,
        "supervisord starts its programs one at a time from its main loop: 8.5 s for 1,000"
        " in latest.md, so 10,000 would take minutes per trial",
    ),
}
# s6 runs one s6-supervise per service: twice as many processes as tasks.
PROCESSES_PER_TASK = {"s6": 2, "runit": 2}
# Figures comparable between peers that ran different numbers of tasks.
PER_TASK = {"small_startup_ms", "small_rss_mb", "per_task_rss_kb", "per_task_pss_kb"}

SCALE_METRICS = [
    Metric("scale_startup_ms", "Start-up, launch to all running", "ms"),
    Metric("scale_rss_mb", "RSS after start-up, supervisor's own processes", "MB"),
    Metric("scale_pss_mb", "PSS after start-up, supervisor's own processes", "MB"),
    Metric("small_startup_ms", f"Start-up with {SMALL} tasks", "ms"),
    Metric("small_rss_mb", f"RSS after start-up with {SMALL} tasks", "MB"),
    Metric("per_task_rss_kb", f"RSS per task: (RSS at N - RSS at {SMALL}) / (N - {SMALL})", "KB"),
    Metric("per_task_pss_kb", f"PSS per task: (PSS at N - PSS at {SMALL}) / (N - {SMALL})", "KB"),
    Metric("status_ms", "Status of every task through the API, one request", "ms"),
    Metric("status_bytes", "Size of that answer", "bytes"),
    Metric("reload_ms", "Reload, one task changed (whole file): to its new process", "ms"),
    Metric("reload_touched", "Reload: other processes restarted or gone", "count"),
    Metric("scale_shutdown_ms", "Shutdown, stop request to all children gone", "ms"),
]


@dataclass
class Sizes:
    counts: dict[str, int]
    reasons: dict[str, str]


def choose_counts(peers: list[Peer], scale: int) -> Sizes:
    """Each peer's task count: `scale`, unless known to take too long or the machine has
    not the processes to spare (pid_max is shared with everything else running)."""
    counts: dict[str, int] = {}
    reasons: dict[str, str] = {}
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    running = sum(1 for entry in os.listdir("/proc") if entry.isdigit())
    for peer in peers:
        count = scale
        if peer.name in REDUCED and scale > REDUCED[peer.name][0]:
            count, reasons[peer.name] = REDUCED[peer.name]
        needed = count * PROCESSES_PER_TASK.get(peer.name, 1)
        if needed + running + 2_000 > pid_max:
            count = min(count, 1_000)
            reasons[peer.name] = (
                f"{needed:,} processes needed, {running:,} running and pid_max {pid_max:,}"
            )
        counts[peer.name] = count
    return Sizes(counts, reasons)


def own_memory_mb(peer: Peer) -> tuple[float, float]:
    """RSS and PSS of the supervisor's own processes (without the children), in MB."""
    used = procfs.usage(peer.own_pids()).values()
    return sum(u.rss_kb for u in used) / 1024, sum(u.pss_kb for u in used) / 1024


def _settle(ctx: Context, workload: Workload) -> None:
    """Let start-up finish (no child started for a second) before reading memory."""
    wait_quiet(ctx, workload, 1.0, 60.0)


def _small_run(ctx: Context, peer: Peer, label: str) -> tuple[float, float] | None:
    workload = Workload.create(ctx.root / f"{peer.name}-{label}", ctx.child, SMALL)
    try:
        if not measure_startup(ctx, peer, workload, "small_startup_ms"):
            return None
        _settle(ctx, workload)
        return own_memory_mb(peer)
    finally:
        _clean(ctx, peer, workload)


def _clean(ctx: Context, peer: Peer, workload: Workload) -> None:
    peer.kill()
    reaper.kill_descendants()
    ctx.watcher.remove(workload.ts_dir)
    shutil.rmtree(workload.root, ignore_errors=True)


def _status(ctx: Context, peer: Peer) -> None:
    query = peer.status_query()
    if query is None:
        ctx.results.na("status_ms", peer.name, "no API call for all tasks at once")
        ctx.results.na("status_bytes", peer.name, "no API call for all tasks at once")
        return
    for sample in range(STATUS_SAMPLES):
        if sample:
            # taskforce serves one usage reading for 1 s: each sample reads afresh.
            time.sleep(FRESH_AFTER_S)
        t0 = time.monotonic_ns()
        try:
            size = query()
        except OSError as error:
            ctx.results.fail("status_ms", peer.name, str(error))
            continue
        ctx.results.add("status_ms", peer.name, (time.monotonic_ns() - t0) / 1e6)
        ctx.results.add("status_bytes", peer.name, size)


def scale_trial(ctx: Context, peer: Peer, count: int, label: str) -> None:
    results = ctx.results
    small = _small_run(ctx, peer, f"{label}-small")
    if small is not None:
        results.add("small_rss_mb", peer.name, small[0])
    workload = Workload.create(ctx.root / f"{peer.name}-{label}", ctx.child, count)
    ok = False
    try:
        began = time.monotonic()
        if not measure_startup(ctx, peer, workload, "scale_startup_ms", STARTUP_TIMEOUT_S):
            return
        _settle(ctx, workload)
        rss, pss = own_memory_mb(peer)
        results.add("scale_rss_mb", peer.name, rss)
        results.add("scale_pss_mb", peer.name, pss)
        if small is not None and count > SMALL:
            results.add("per_task_rss_kb", peer.name, (rss - small[0]) * 1024 / (count - SMALL))
            results.add("per_task_pss_kb", peer.name, (pss - small[1]) * 1024 / (count - SMALL))
        _status(ctx, peer)
        sleep_until_aged(read_starts(workload.ts_dir), 1.2)
        name = ctx.rng.choice([task.name for task in workload.tasks])
        workload = measure_reload(ctx, peer, workload, name)
        ok = measure_shutdown(ctx, peer, workload, "scale_shutdown_ms")
        ctx.log(f"  {peer.name}: {count:,} tasks in {time.monotonic() - began:.0f} s")
    finally:
        if not ok:
            ctx.keep_logs(workload, f"{peer.name}-{label}")
        _clean(ctx, peer, workload)


def run_scale(ctx: Context, peers: list[Peer], sizes: Sizes, rounds: int) -> None:
    ctx.log(f"scale: {rounds} round(s) x {len(peers)} peers, {sizes.counts}")
    for trial in range(rounds):
        for peer in ctx.rng.sample(peers, len(peers)):
            ctx.log(f"  round {trial + 1}: {peer.name}, {sizes.counts[peer.name]:,} tasks")
            scale_trial(ctx, peer, sizes.counts[peer.name], f"scale-r{trial}")


def _cell(results: Results, metric: Metric, peer: str, sizes: Sizes) -> str:
    if peer in results.not_applicable[metric.key]:
        return "n/a"
    series = results.series[metric.key].get(peer)
    if series is None:
        return ""
    if not series.values:
        return "failed"
    unit = "count" if metric.unit == "bytes" else metric.unit
    median = statistics.median(series.values)
    text = fmt(median, unit)
    if len(set(series.values)) > 1:
        text += f" ({fmt(min(series.values), unit)} to {fmt(max(series.values), unit)})"
    same_size = sizes.counts.get(peer) == sizes.counts.get(BASELINE)
    if peer != BASELINE and (same_size or metric.key in PER_TASK):
        r = ratio(median, results.median(metric.key, BASELINE))
        text += f" [{r}]" if r else ""
    if series.failures:
        text += f" [{len(series.failures)} failed: {'; '.join(sorted(set(series.failures)))}]"
    return text


def markdown(data: dict[str, Any], results: Results, sizes: Sizes) -> list[str]:
    peers = [peer["name"] for peer in data["peers"] if "skipped" not in peer]
    machine = data["machine"]
    lines = [
        f"# taskforce at scale: {max(sizes.counts.values(), default=0):,} tasks",
        "",
        f"Generated by `{data['command']}` on {data['date']} in {data['duration_s'] / 60:.1f}"
        " minutes ([bench/README.md](../README.md) says what each figure is).",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB,"
        f" Linux {machine['kernel']}; load average (1/5/15 min) before"
        f" {' / '.join(map(str, data['load_before']))}, after"
        f" {' / '.join(map(str, data['load_after']))}.",
        "",
        *busy_note(data),
        "Every task is the static C child (`wait` in taskforce), all in one configuration file"
        " (JSON for taskforce), the control socket on. Medians"
        + (f" of {data['rounds']} rounds (range in brackets)" if data["rounds"] > 1 else "")
        + "; in square brackets the ratio to taskforce (only where both ran as many tasks, or"
        " for the figures per task). MB and KB are MiB and KiB.",
        "",
        "| | " + " | ".join(peers) + " |",
        "| --- |" + " ---: |" * len(peers),
        "| tasks | " + " | ".join(f"{sizes.counts[p]:,}" for p in peers) + " |",
    ]
    for metric in results.metrics:
        cells = [_cell(results, metric, peer, sizes) for peer in peers]
        if any(cells):
            lines.append(f"| {metric.title} ({metric.unit}) | " + " | ".join(cells) + " |")
    lines.append("")
    for peer in peers:
        if peer in sizes.reasons:
            lines.append(f"- {peer} ran {sizes.counts[peer]:,} tasks: {sizes.reasons[peer]}.")
    for peer in data["peers"]:
        if "skipped" in peer:
            lines.append(f"- {peer['name']} skipped: {peer['skipped']}.")
    lines += [
        f"- Per-task memory: the supervisor's own RSS (PSS) after start-up with N tasks, minus"
        f" the same with {SMALL}, divided by N - {SMALL}; s6 counts s6-svscan and every"
        " s6-supervise (a process per task), the children are never counted.",
        "- Status: taskforce `GET /status/tasks` on its control socket; supervisord the"
        " XML-RPC `supervisor.getAllProcessInfo` on its unix socket; s6 has one `s6-svstat`"
        " per service only. Time to the whole answer, measured by the harness; samples"
        f" {FRESH_AFTER_S:g} s apart, so that each reads every process's usage afresh.",
        "- Reload: one task's argv changed, the new file renamed over the old (s6: its `run`"
        " replaced, then `s6-svc -r`; supervisord: then `supervisorctl update`); time to that"
        " task's new process, from its own start timestamp.",
        "",
    ]
    for peer in data["peers"]:
        if "skipped" not in peer:
            lines.append(f"- {peer['name']} {peer['version']}: {peer['notes']}")
    return lines


# Issue 18's figures for taskforce at 10,000 tasks before the scale work (quiet machine,
# control socket on; its status answer had no usage figures), and its targets.
BEFORE = {
    "scale_startup_ms": 8_700.0,
    "scale_rss_mb": 97.0,
    "status_ms": 338.0,
    "reload_ms": 235.0,
    "scale_shutdown_ms": 1_700.0,
}
TARGET = {
    "scale_startup_ms": 3_000.0,
    "scale_rss_mb": 60.0,
    "status_ms": 100.0,
    "reload_ms": 100.0,
    "scale_shutdown_ms": 1_000.0,
}


def latest_section(saved: Path) -> list[str]:
    """The scale figures for latest.md, from a saved scale.json: taskforce before issue 18,
    now, its target, and the peers beside it (nothing when no scale run was saved)."""
    if not saved.exists():
        return []
    data = json.loads(saved.read_text())
    results = Results.from_json(data["metrics"], SCALE_METRICS)
    counts: dict[str, int] = data["counts"]
    peers = [p for p in counts if p != BASELINE and results.median("scale_rss_mb", p) is not None]
    lines = [
        f"## Scale: {counts.get(BASELINE, SCALE):,} tasks",
        "",
        f"From `{data['command']}` on {data['date']} (load average before"
        f" {data['load_before'][0]:g}, after {data['load_after'][0]:g}; every figure in"
        " [scale.md](scale.md)). Before: the figures issue 18 measured on a quiet machine"
        " (its status answer had no usage figures).",
        "",
        "| | before | taskforce | target | met | "
        + " | ".join(f"{p} ({counts[p]:,} tasks)" for p in peers)
        + " |",
        "| --- | ---: | ---: | ---: | --- |" + " ---: |" * len(peers),
    ]
    for metric in SCALE_METRICS:
        now = results.median(metric.key, BASELINE)
        if now is None:
            continue
        unit = "count" if metric.unit == "bytes" else metric.unit
        target = TARGET.get(metric.key)
        met = "" if target is None else ("yes" if now <= target else "no")
        cells = [fmt(results.median(metric.key, p), unit) for p in peers]
        lines.append(
            f"| {metric.title} ({metric.unit}) | {fmt(BEFORE.get(metric.key), unit)}"
            f" | {fmt(now, unit)} | {fmt(target, unit)} | {met} | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        "Where a target is not met, the floor under it, measured beside taskforce:"
        " start-up, C programs spawning as many children each way"
        " ([spawn-floor.md](spawn-floor.md), `bench/spawn_floor.py`); status, reading every"
        " process's usage files from C (`bench/usage_cost.py`, bench/README.md).",
    ]
    return [*lines, ""]
