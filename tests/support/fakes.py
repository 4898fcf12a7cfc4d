"""Fakes of what the API serves: the Controller, and the subscriptions of a feed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from taskforce.api.metrics import Row, series
from taskforce.api.query import EVERYTHING, TaskQuery
from taskforce.runtime.manage import ControlError, parse_signal
from taskforce.runtime.output.capture import Follower


class Subscribers:
    """subscribe()/unsubscribe() as the Controller and the fleet feed offer them; changed()
    wakes every subscriber, as a change of the real one does."""

    def __init__(self) -> None:
        self.subscribers: set[asyncio.Event] = set()
        self.changes = 0

    def subscribe(self) -> asyncio.Event:
        event = asyncio.Event()
        self.subscribers.add(event)
        return event

    def unsubscribe(self, event: asyncio.Event) -> None:
        self.subscribers.discard(event)

    def changed(self) -> None:
        self.changes += 1
        for event in self.subscribers:
            event.set()


TASKS = ("web", "db")


class FakeController:
    """Answers like the Controller, and records the changes asked of it."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.origin = ""

    def _known(self, task: str) -> None:
        if task not in TASKS:
            raise ControlError(404, f"no task named {task!r}")

    def version(self) -> dict[str, Any]:
        return {"taskforce": "test"}

    def config(self) -> dict[str, Any]:
        return {"tasks": {"web": {"commands": {"start": ["web", "--password=x"]}}}}

    def reload_status(self) -> dict[str, Any]:
        return {"file": "/etc/taskforce.conf"}

    def tasks(self, *, query: TaskQuery = EVERYTHING) -> dict[str, Any]:
        return {
            name: {"running": 1}
            for name in TASKS
            if query.selects_name(name) and query.selects_state("running", True)
        }

    async def tasks_with_usage(self, query: TaskQuery = EVERYTHING) -> dict[str, Any]:
        return self.tasks(query=query)

    def table(self, query: TaskQuery = EVERYTHING) -> bytes:
        return json.dumps(self.tasks(query=query), separators=(",", ":")).encode()

    async def table_with_usage(self, query: TaskQuery = EVERYTHING) -> list[bytes]:
        return [self.table(query)]

    def summary(self, query: TaskQuery = EVERYTHING) -> dict[str, Any]:
        shown = self.tasks(query=query)
        return {"total": len(shown), "wanted": len(shown), "unwanted": 0}

    def counters(self) -> dict[str, Any]:
        return {"reloads": 3}

    async def series(self) -> list[Row]:
        return series(self.tasks())

    def set_overrides(self, key: str, values: Mapping[str, str | int]) -> dict[str, Any]:
        if not values:
            raise ControlError(400, "name at least one task")
        for task, value in values.items():
            self._known(task)
            if key == "count" and not str(value).isdigit():
                raise ControlError(400, f"count must be a whole number, got {value!r}")
        self.calls.append(("override", key, dict(values)))
        return {task: {"task": task, key: str(value)} for task, value in values.items()}

    def _action(self, action: str, task: str) -> dict[str, Any]:
        self._known(task)
        self.calls.append((action, task))
        return {"task": task, "action": action}

    def start(self, task: str) -> dict[str, Any]:
        return self._action("start", task)

    def stop(self, task: str) -> dict[str, Any]:
        return self._action("stop", task)

    def restart(self, task: str) -> dict[str, Any]:
        return self._action("restart", task)

    def signal(self, task: str, sig: str | int) -> dict[str, Any]:
        self._known(task)
        self.calls.append(("signal", task, parse_signal(sig)))
        return {"task": task, "signal": str(sig)}

    def reload(self) -> dict[str, Any]:
        self.calls.append(("reload",))
        return {"reloaded": True}

    def plan(self, text: str) -> dict[str, Any]:
        if "bad" in text:
            raise ControlError(422, "t.conf:1:1: bad")
        self.calls.append(("plan", text))
        return {"changes": [], "problems": []}

    def shutdown(self) -> dict[str, Any]:
        self.calls.append(("shutdown",))
        return {"stopping": True}

    def reset(self) -> dict[str, Any]:
        self.calls.append(("reset",))
        return {"resetting": True}

    def upgrade(self) -> dict[str, Any]:
        self.calls.append(("upgrade",))
        return {"upgrading": True}

    def logs(self, task: str, n: int) -> dict[str, Any]:
        self._known(task)
        return {"task": task, "lines": []}

    def follow_logs(self, task: str) -> Follower:
        self._known(task)
        raise ControlError(409, f"the output of {task!r} is not captured")

    def unfollow_logs(self, task: str, follower: Follower) -> None:
        pass
