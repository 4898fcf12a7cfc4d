"""Exponential backoff for retrying etcd: quick at first, then no more than `limit` apart."""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, initial: float = 0.25, limit: float = 5.0) -> None:
        self.initial = initial
        self.limit = max(initial, limit)
        self._next = initial

    def next(self) -> float:
        """Seconds to wait before the next try; each failure doubles it, up to the limit."""
        delay = self._next
        self._next = min(self.limit, self._next * 2)
        # Jitter, so that many hosts that lost etcd together do not return in step.
        return delay * random.uniform(0.8, 1.0)

    def reset(self) -> None:
        self._next = self.initial
