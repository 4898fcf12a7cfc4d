"""The issue's targets, checked against taskforce's medians."""

from __future__ import annotations

from typing import Any

from harness.report import BASELINE, fmt
from harness.results import Results


def _check(
    results: Results, target: str, key: str, limit: float | None, unit: str = "ms"
) -> dict[str, Any]:
    value = results.median(key, BASELINE)
    if value is None or limit is None:
        return {"target": target, "measured": fmt(value, unit), "met": "not measured"}
    return {
        "target": target,
        "measured": f"{fmt(value, unit)} {unit}",
        "met": "yes" if value <= limit else "**no**",
    }


def evaluate(results: Results) -> list[dict[str, Any]]:
    peers_restart = [
        m for m in (results.median("restart_ms", p) for p in ("s6", "runit")) if m is not None
    ]
    fastest = min(peers_restart) if peers_restart else None
    restart_goal = (
        f"restart latency ≤ s6 and runit ({fmt(fastest)} ms here)"
        if fastest is not None
        else "restart latency ≤ s6 and runit (not measured)"
    )
    targets = [
        _check(results, restart_goal, "restart_ms", fastest),
        _check(results, "file change to restart < 10 ms", "file_change_ms", 10.0),
        _check(results, "start-up of 1,000 children < 1 s", "startup_1000_ms", 1000.0),
        _check(results, "idle: 0 wake-ups in 20 s, 100 children", "idle_wakeups", 0.0, "count"),
        _check(results, "RSS ≤ 25 MB with 100 children", "idle_rss_mb", 25.0, "MB"),
        _check(results, "reload, 1 of 1,000 changed: < 50 ms", "reload_ms", 50.0),
        _check(
            results, "reload, 1 of 1,000 changed: 0 others touched", "reload_touched", 0.0, "count"
        ),
    ]
    return targets
