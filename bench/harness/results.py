"""Collected samples per metric and peer, and their summaries (median, p95, max)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Metric:
    key: str
    title: str
    unit: str
    lower_is_better: bool = True


METRICS: list[Metric] = [
    Metric("restart_ms", "Restart latency (SIGKILL to replacement started), 100 children", "ms"),
    Metric("file_change_ms", "File change to restart (rename over a watched file)", "ms"),
    Metric("startup_100_ms", "Start-up, 100 children (launch to all running)", "ms"),
    Metric("startup_1000_ms", "Start-up, 1,000 children (launch to all running)", "ms"),
    Metric("shutdown_100_ms", "Shutdown, 100 children (stop request to all gone)", "ms"),
    Metric("idle_cpu_ms", "Idle CPU time in 20 s, 100 children", "ms"),
    Metric("idle_wakeups", "Idle context switches (wake-ups) in 20 s, 100 children", "count"),
    Metric("idle_rss_mb", "Idle RSS, supervisor's own processes, 100 children", "MB"),
    Metric("idle_pss_mb", "Idle PSS, supervisor's own processes, 100 children", "MB"),
    Metric("idle_processes", "Supervisor's own processes, 100 children", "count"),
    Metric("reload_ms", "Reload, 1 of 1,000 tasks changed: to that task's new process", "ms"),
    Metric("reload_touched", "Reload, 1 of 1,000 tasks changed: other processes touched", "count"),
]
BY_KEY = {metric.key: metric for metric in METRICS}


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Series:
    """The samples of one metric for one peer, and trials that produced none."""

    values: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n": len(self.values), "failures": len(self.failures)}
        if self.values:
            out |= {
                "median": statistics.median(self.values),
                "p95": percentile(self.values, 0.95),
                "max": max(self.values),
                "min": min(self.values),
            }
        if self.failures:
            out["failure_reasons"] = sorted(set(self.failures))
        return out


class Results:
    def __init__(self, metrics: list[Metric] | None = None) -> None:
        self.metrics = METRICS if metrics is None else metrics
        self.series: dict[str, dict[str, Series]] = {metric.key: {} for metric in self.metrics}
        self.not_applicable: dict[str, dict[str, str]] = {metric.key: {} for metric in self.metrics}

    def _get(self, metric: str, peer: str) -> Series:
        return self.series[metric].setdefault(peer, Series())

    def add(self, metric: str, peer: str, value: float) -> None:
        self._get(metric, peer).values.append(value)

    def fail(self, metric: str, peer: str, reason: str) -> None:
        self._get(metric, peer).failures.append(reason)

    def na(self, metric: str, peer: str, reason: str) -> None:
        self.not_applicable[metric][peer] = reason

    def median(self, metric: str, peer: str) -> float | None:
        series = self.series[metric].get(peer)
        return statistics.median(series.values) if series and series.values else None

    @classmethod
    def from_json(cls, metrics: dict[str, Any], kinds: list[Metric] | None = None) -> Results:
        """The inverse of to_json (to render a saved run again)."""
        results = cls(kinds)
        for key, metric in metrics.items():
            if key not in results.series:
                continue
            for peer, summary in metric["peers"].items():
                if "n/a" in summary:
                    results.na(key, peer, summary["n/a"])
                    continue
                series = results._get(key, peer)
                series.values.extend(summary.get("values", []))
                reasons = summary.get("failure_reasons", ["failed"])
                series.failures.extend(
                    reasons[i % len(reasons)] for i in range(summary["failures"])
                )
        return results

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for metric in self.metrics:
            per_peer: dict[str, Any] = {}
            for peer, series in self.series[metric.key].items():
                per_peer[peer] = series.summary() | {"values": series.values}
            for peer, reason in self.not_applicable[metric.key].items():
                per_peer[peer] = {"n/a": reason}
            out[metric.key] = {"title": metric.title, "unit": metric.unit, "peers": per_peer}
        return out
