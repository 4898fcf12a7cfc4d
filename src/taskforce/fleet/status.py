"""This host's task status, published to etcd for `taskforce fleet status`.

One key per host, ``<prefix>status/<host>``, under the host's lease: it disappears when
the host dies or is cut off from etcd for longer than the lease. It is written when the
status changes (after planning passes that changed something), not on a timer; changes
that arrive while a write is in flight are coalesced into the next write.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from taskforce.fleet.backoff import Backoff, keep_trying
from taskforce.fleet.election import Election
from taskforce.fleet.lease import LeaseKeeper
from taskforce.fleet.session import Session
from taskforce.runtime.legion import Legion
from taskforce.runtime.manage import ControlError

log = logging.getLogger("taskforce.fleet")

# Fields of a task's status worth showing fleet-wide (uptimes and histories are not:
# they would change the key without any change of state).
_TASK_FIELDS = ("control", "state", "running", "count", "restarts")

# Every task's status as the API shows it (api.status.Controller.tasks): ControlError
# while nothing is supervised yet.
TaskViews = Callable[[], Mapping[str, Any]]


def summary(
    legion: Legion, task_views: TaskViews, election: Election | None, host: str
) -> dict[str, Any]:
    """The status of this host, as published (without the time of publication)."""
    loaded = legion.loaded
    tasks: dict[str, Any] = {}
    try:
        full = task_views()
    except ControlError:
        full = {}
    running = election.running() if election is not None else frozenset()
    holding = election.holding() if election is not None else frozenset()
    for name, task in full.items():
        entry = {f: task.get(f) for f in _TASK_FIELDS}
        entry["pids"] = [p["pid"] for p in task.get("processes", ()) if p.get("pid")]
        if name in running:
            entry["placement"] = "cluster"
        tasks[name] = entry
    error = legion.reload_error
    return {
        "host": host,
        "pid": legion.host.pid,
        "roles": list(loaded.roles.names) if loaded is not None and loaded.roles else None,
        "tasks": tasks,
        # Cluster-wide tasks in scope here, and the host that holds each (None: nobody yet).
        "cluster": (
            {n: (host if n in holding else election.holders.get(n)) for n in election.wanted}
            if election is not None
            else {}
        ),
        # Cluster-wide once tasks in scope here that have completed, and where.
        "done": (
            {n: h for n, h in election.completions.done.items() if n in election.wanted}
            if election is not None
            else {}
        ),
        "reload_error": "; ".join(str(p) for p in error.problems) if error else None,
    }


class StatusPublisher:
    def __init__(
        self,
        session: Session,
        keeper: LeaseKeeper,
        prefix: str,
        host: str,
        legion: Legion,
        task_views: TaskViews,
        election: Election | None,
    ) -> None:
        self.session = session
        self.keeper = keeper
        self.key = f"{prefix}status/{host}".encode()
        self.host = host
        self.legion = legion
        self.task_views = task_views
        self.election = election
        self._wake = asyncio.Event()
        self._published: tuple[int, str] | None = None  # (lease, body) last written
        keeper.listen(self.changed)

    def changed(self) -> None:
        """Something may have changed: publish if it did (soon, coalesced)."""
        self._wake.set()

    async def run(self) -> None:
        await keep_trying(
            self._publish_when_woken, "status", "status: publishing failed; retrying", Backoff()
        )

    async def _publish_when_woken(self) -> None:
        await self._wake.wait()
        self._wake.clear()
        try:
            await self._publish()
        except Exception:
            self._wake.set()  # try again after the backoff
            raise

    async def _publish(self) -> None:
        lease = self.keeper.lease_id
        if not lease:
            return  # the keeper tells us when it has one
        status = summary(self.legion, self.task_views, self.election, self.host)
        body = json.dumps(status, sort_keys=True)
        if self._published == (lease, body):
            return
        document = json.loads(body)
        document["updated"] = time.time()
        await self.session.put(self.key, json.dumps(document).encode(), lease)
        self._published = (lease, body)
