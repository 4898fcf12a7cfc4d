"""Exponential backoff for retrying etcd: quick at first, then no more than `limit` apart."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import NoReturn

from taskforce.fleet.session import EtcdUnavailableError

log = logging.getLogger("taskforce.fleet")


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


async def keep_trying(
    attempt: Callable[[], Awaitable[object]], name: str, failure: str, backoff: Backoff
) -> NoReturn:
    """Await `attempt()` again and again, for ever, after a backoff when it failed: etcd
    out of reach is logged as a detail under `name`; anything else is a bug, logged
    loudly as `failure`, which must not end the loop either (see EtcdSource._follow)."""
    while True:
        try:
            await attempt()
        except EtcdUnavailableError as exc:
            log.debug("%s: %s", name, exc)
        except Exception:
            log.exception("%s", failure)
        else:
            backoff.reset()
            continue
        await asyncio.sleep(backoff.next())
