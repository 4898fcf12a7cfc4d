"""Cluster-wide `once` tasks: their completion is kept in etcd, so a failover does not
run them again.

A host runs a `once` task one time, and again only when asked to (an event, another
task's `onexit`) or when the task leaves its configuration and comes back. A cluster-wide
one must behave the same across the fleet, whichever host holds it: when the holder dies
after the task has run, the host that takes over must not run it a second time.

So the holder records each successful run under ``<prefix>done/<task>`` (beside the
leader keys, but under no lease: it must outlive the holder), and removes the record when
a new run starts; a host that takes the task over reads the records before it runs
anything, and leaves a completed task alone. A run that fails (exits non-zero, is killed,
or is cut short by the loss of the leadership) leaves no record: the next holder tries
again. Every host in scope removes the record when the task leaves the configuration,
or stops being a cluster-wide `once` task, so that it runs once more when it comes back,
as it would on one host.

A run that completes just before its holder dies, before the record reaches etcd, is run
again by the next holder: at least once, never twice in a row knowingly.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable

from taskforce.core.planner import Planner
from taskforce.core.spec import DesiredState
from taskforce.core.state import Phase
from taskforce.core.vocabulary import Control
from taskforce.fleet.session import Session

log = logging.getLogger("taskforce.fleet")


def cluster_once(desired: DesiredState) -> frozenset[str]:
    """The cluster-wide `once` tasks among those in scope."""
    return frozenset(n for n, s in desired.tasks.items() if s.cluster and s.control is Control.ONCE)


class Completions:
    """What etcd says about the completion of cluster-wide once tasks, and the changes
    this host has still to write there."""

    def __init__(self, session: Session, prefix: str, host: str) -> None:
        self.session = session
        self.prefix = prefix + "done/"
        self.host = host
        self.done: dict[str, str] = {}  # task -> the host that completed it
        # task -> record it (True), or remove a record older than this revision (0: any)
        self._pending: dict[str, bool | int] = {}
        self._known: frozenset[str] = frozenset()  # cluster once tasks configured here

    # ----- what changed here ----------------------------------------------------------

    def configured(self, desired: DesiredState, revision: int) -> bool:
        """A configuration was loaded (from etcd at `revision`, 0: unknown): forget the
        runs of tasks that left it, or are no longer cluster-wide once tasks. Whether
        there is something to write.

        Only records older than the configuration are removed: a host slow to see the
        task leave must not remove the record of a run after it came back."""
        now = cluster_once(desired)
        # Out of scope here (roles) is not gone: the task may run elsewhere as before.
        gone = {n for n in self._known - now if n in desired.tasks or n not in desired.out_of_scope}
        self._known = now | (self._known & desired.out_of_scope)
        for name in sorted(gone):
            log.info("%s: no longer a cluster-wide once task: its run is forgotten", name)
            self._want(name, False, revision)
        return bool(gone)

    def observe(self, planner: Planner, runs: Iterable[str]) -> bool:
        """After a planning pass: record the runs (`runs`: the cluster-wide once tasks this
        host holds and runs) that have just completed, forget those that start again.
        Whether there is something to write."""
        changed = False
        for name in runs:
            state = planner.tasks.get(name)
            if state is None or not state.instances:
                continue
            instances = state.instances.values()
            if any(i.phase is not Phase.IDLE for i in instances):
                changed |= self._want(name, False)  # a new run: the last one is no more
            elif planner.once_done(name):
                ok = all(
                    i.last_exit is not None
                    and i.last_exit.status == 0
                    and i.last_exit.error is None
                    and not i.last_exit.expected
                    for i in instances
                )
                changed |= self._want(name, ok)
        return changed

    def _want(self, name: str, done: bool, revision: int = 0) -> bool:
        if (name in self.done) == done:
            return False
        if done:
            self.done[name] = self.host
            log.info("%s: the cluster-wide once task has completed: recording it in etcd", name)
        else:
            self.done.pop(name, None)
        self._pending[name] = True if done else revision
        return True

    # ----- etcd -----------------------------------------------------------------------

    async def write(self) -> None:
        """Write what changed here (raises EtcdUnavailableError; what is left is retried)."""
        for name, change in sorted(self._pending.items()):
            key = (self.prefix + name).encode()
            if change is True:
                record = {"host": self.host, "at": time.time()}
                await self.session.put(key, json.dumps(record).encode())
            else:
                await self.session.delete_if_older(key, change)
            if self._pending.get(name) is change:
                del self._pending[name]

    async def read(self) -> None:
        """Learn which tasks have completed, wherever (what is still to write here wins)."""
        kvs, _ = await self.session.get_prefix(self.prefix.encode())
        done: dict[str, str] = {}
        for kv in kvs:
            name = kv.key.decode("utf-8", "replace")[len(self.prefix) :]
            try:
                host = str(json.loads(kv.value)["host"])
            except (ValueError, KeyError, TypeError):
                host = "?"
            done[name] = host
        for name, change in self._pending.items():
            if change is True:
                done[name] = self.host
            else:
                done.pop(name, None)
        self.done = done
