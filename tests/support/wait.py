"""Waiting for a condition with a deadline: the only way the tests wait for anything."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

# Generous: the suite must pass on a loaded two-core machine.
DEADLINE = 30.0


def wait_for(
    condition: Callable[[], Any], timeout: float = DEADLINE, what: str = "condition"
) -> Any:
    """Poll `condition` until it returns something truthy, and return that; fail after
    `timeout` seconds. (Any: conditions are often `found and len(found) > n and found`.)"""
    end = time.monotonic() + timeout
    delay = 0.005
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)  # polling interval of a deadline-bounded wait, not a wait itself
        delay = min(delay * 2, 0.1)


async def until(
    condition: Callable[[], Any], what: str = "condition", timeout: float = DEADLINE
) -> Any:
    """wait_for inside an event loop: the loop keeps running between the polls."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    delay = 0.005
    while not (value := condition()):
        if loop.time() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(delay)  # polling interval of a deadline-bounded wait
        delay = min(delay * 2, 0.05)
    return value
