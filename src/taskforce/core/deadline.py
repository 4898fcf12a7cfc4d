"""Deadlines: monotonic times at which the planner must look again (None: never)."""

from __future__ import annotations


def earliest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
