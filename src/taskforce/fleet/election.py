"""Cluster-wide tasks (`placement: cluster`): run on one host of those where in scope.

Each such task has a leader key, ``<prefix>leaders/<task>``. The hosts where the task is
in scope compete for it with one etcd transaction each ("create the key, under my lease,
if it does not exist"); the winner runs the task, the others watch the key and compete
again when it is deleted, which etcd does when the holder's lease expires (it died, or
lost etcd) or when the holder gives it up (the task left its scope, taskforce stopped).

The guarantee, with TTL the lease time (the URL's ttl=, 10 s by default):

- The holder stops the task as soon as its lease is no longer *safe*: TTL/3 before the
  earliest moment etcd can expire it, counted from the last renewal etcd acknowledged
  (see :mod:`taskforce.fleet.lease`). Another host can start the task only once etcd has
  expired the lease. So if the task's processes exit within TTL/3 of SIGTERM (always,
  when settings.stop_timeout <= TTL/3, since SIGKILL follows at stop_timeout), two
  copies never run at once; otherwise they overlap by at most stop_timeout - TTL/3.
- A holder that dies is replaced within TTL (plus one etcd round trip and the task's
  start); one that is cut off from etcd stops the task within 2*TTL/3 and is replaced
  within TTL, as etcd counts it.
- This rests on the hosts' clocks running at the same rate (not on them being set alike)
  and on taskforce itself not being frozen (SIGSTOP, a paused VM) longer than TTL/3.

The election decides by filtering the legion's desired state: a cluster-wide task this
host does not hold (safely) is left out of it, as a task out of scope is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import replace

from taskforce.core.spec import DesiredState
from taskforce.fleet.backoff import Backoff, keep_trying
from taskforce.fleet.lease import LeaseKeeper
from taskforce.fleet.once import Completions, cluster_once
from taskforce.fleet.session import EtcdUnavailableError, Session
from taskforce.runtime.legion import Legion

log = logging.getLogger("taskforce.fleet")


class Election:
    def __init__(
        self,
        session: Session,
        keeper: LeaseKeeper,
        prefix: str,
        host: str,
        legion: Legion,
        config_revision: Callable[[], int] = lambda: 0,
    ) -> None:
        self.session = session
        self.keeper = keeper
        self.prefix = prefix + "leaders/"
        self.host = host
        self.legion = legion
        self.wanted: frozenset[str] = frozenset()  # cluster-wide tasks in scope here
        self.held: frozenset[str] = frozenset()  # their keys are under our lease
        self.holders: dict[str, str | None] = {}  # the others: who holds them
        self._held_lease = 0  # the lease `held` was established under
        # Cluster-wide once tasks: which have completed (etcd's record), and those this
        # host took on to run (held, and not completed when taken; see fleet.once).
        self.completions = Completions(session, prefix, host)
        self._runs: frozenset[str] = frozenset()
        self._config_revision = config_revision  # etcd's, of the configuration loaded
        self._applied: frozenset[str] = frozenset()  # what the legion was last given
        self._releasing: set[str] = set()
        self._closed = False
        self._wake = asyncio.Event()
        # Filtered desired states handed out, with what they were filtered from: a new
        # holding applies to the running configuration even when etcd's has gone bad.
        self._filtered: deque[tuple[DesiredState, DesiredState]] = deque(maxlen=8)
        # Told when what this host holds, or who holds the others, changes (status).
        self.listeners: list[Callable[[], None]] = []
        keeper.listen(self._lease_changed)

    # ----- what runs ------------------------------------------------------------------

    def running(self) -> frozenset[str]:
        """The cluster-wide tasks this host runs now (a once task held here that completed
        elsewhere is not run again: it stays out, as one held elsewhere does)."""
        mine = self._mine()
        done = self.completions.done
        return frozenset(n for n in mine if n not in done or n in self._runs)

    def holding(self) -> frozenset[str]:
        """The cluster-wide tasks in scope whose leadership this host holds (safely)."""
        return self._mine()

    def _mine(self) -> frozenset[str]:
        if not self.keeper.safe or self._held_lease != self.keeper.lease_id:
            return frozenset()
        return self.held & self.wanted

    def filter(self, desired: DesiredState) -> DesiredState:
        """The legion's desired_filter: leave out the cluster-wide tasks not held here."""
        running = self.running()
        drop = {n for n, s in desired.tasks.items() if s.cluster and n not in running}
        if not drop:
            return desired
        tasks = {n: s for n, s in desired.tasks.items() if n not in drop}
        # Held elsewhere: tasks that require one here must not wait for it.
        filtered = replace(desired, tasks=tasks, out_of_scope=desired.out_of_scope | drop)
        self._filtered.append((filtered, desired))
        return filtered

    def unfiltered(self, desired: DesiredState) -> DesiredState:
        for filtered, original in self._filtered:
            if filtered is desired:
                return original
        return desired

    def loaded(self, desired: DesiredState) -> None:
        """The legion loaded a configuration: compete for its cluster-wide tasks."""
        original = self.unfiltered(desired)
        if self.completions.configured(original, self._config_revision()):
            self._wake.set()
        wanted = frozenset(n for n, s in original.tasks.items() if s.cluster)
        if wanted == self.wanted:
            return
        for name in self.held & (self.wanted - wanted):
            self._releasing.add(name)
        self.wanted = wanted
        self._releasing -= wanted
        self._wake.set()

    def planned(self) -> None:
        """After each planning pass: release what has stopped here, record the once tasks
        that completed here."""
        if self._releasing and any(self._stopped(n) for n in self._releasing):
            self._wake.set()
        supervisor, loaded = self.legion.supervisor, self.legion.loaded
        if supervisor is None or loaded is None or not self._runs:
            return
        once = cluster_once(self.unfiltered(loaded.desired))
        if self.completions.observe(supervisor.planner, sorted(self._runs & once)):
            self._wake.set()
            self._tell()

    # ----- competing ------------------------------------------------------------------

    async def run(self) -> None:
        await keep_trying(self._round, "election", "election: failed; retrying", Backoff())

    async def resign(self) -> None:
        """Give up every leader key (the tasks have stopped); best effort."""
        lease = self.keeper.lease_id
        for name in sorted(self.held):
            with contextlib.suppress(EtcdUnavailableError):
                await self.session.delete_if_lease(self._key(name), lease)
        self.held = frozenset()

    async def campaign(self) -> int:
        """Compete once for every wanted task; the store revision of the last answer."""
        lease = self.keeper.lease_id
        if not lease:
            return 0
        await self._release(lease)
        held: set[str] = set()
        holders: dict[str, str | None] = {}
        revision = 0
        for name in sorted(self.wanted):
            won, kv, revision = await self.session.create(
                self._key(name), self.host.encode(), lease
            )
            if won or (kv is not None and kv.lease == lease):
                held.add(name)
            else:
                holders[name] = kv.value.decode("utf-8", "replace") if kv is not None else None
        if self.wanted:
            # Before anything held is run: a once task may have completed under its
            # previous holder.
            await self.completions.read()
        self._settle(frozenset(held), holders, lease)
        return revision

    async def _round(self) -> None:
        self._wake.clear()
        await self.completions.write()
        revision = await self.campaign()
        if not revision:  # no lease yet, or nothing to compete for: wait to be told
            await self._wake.wait()
            return
        await self._watch(revision)

    async def _watch(self, revision: int) -> None:
        """Until a leader key of ours changes hands, or something else calls for a round."""
        watcher = asyncio.ensure_future(self._next_change(revision))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({watcher, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (watcher, waker):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waker
            if watcher.done() and not watcher.cancelled():
                # Seen, even when we are being cancelled (taskforce is leaving): asyncio
                # would log a failure never looked at as an error.
                watcher.exception()
        if watcher.done() and not watcher.cancelled():
            watcher.result()  # raises EtcdUnavailableError

    async def _next_change(self, revision: int) -> None:
        async for event in self.session.watch(self.prefix.encode(), revision + 1, prefix=True):
            name = event.kv.key.decode("utf-8", "replace")[len(self.prefix) :]
            if name in self.wanted and (event.deleted or name not in self.held):
                return

    async def _release(self, lease: int) -> None:
        for name in sorted(self._releasing):
            if name in self.wanted:
                self._releasing.discard(name)
            elif self._stopped(name):
                await self.session.delete_if_lease(self._key(name), lease)
                self._releasing.discard(name)
                self.held -= {name}
                log.info("%s: no longer in scope here: gave up its leadership", name)

    def _settle(self, held: frozenset[str], holders: dict[str, str | None], lease: int) -> None:
        for name in sorted(held - self.held):
            log.info("%s: this host now holds the cluster-wide task", name)
        for name in sorted((self.held - held) & self.wanted):
            log.info("%s: the cluster-wide task is held by %s", name, holders.get(name))
        held |= self.held & frozenset(self._releasing)
        changed = held != self.held or holders != self.holders
        self.held, self.holders, self._held_lease = held, holders, lease
        self._apply()
        if changed:
            self._tell()

    def _lease_changed(self) -> None:
        if self.keeper.lease_id != self._held_lease:
            self.held = frozenset()  # keys under an older lease are gone, or going
        self._apply()
        self._wake.set()

    # ----- telling the legion -------------------------------------------------------------

    def close(self) -> None:
        """taskforce is leaving: its tasks have stopped, or an upgrade keeps them running."""
        self._closed = True

    def _apply(self) -> None:
        if self._closed:
            return
        # A once task taken on while not completed is this host's to run to the end
        # (its completion, once recorded, must not then stop it here).
        mine = self._mine()
        self._runs = (self._runs & mine) | (mine - self.completions.done.keys())
        running = self.running()
        if running == self._applied:
            return
        for name in sorted(self._applied - running):
            log.warning("%s: stopping the cluster-wide task here (no longer held)", name)
        self._applied = running
        self._tell()
        if self.legion.supervisor is None or self.legion.reload(keep_overrides=True):
            return
        # The newest configuration is unusable: apply the holding to the running one.
        loaded, supervisor = self.legion.loaded, self.legion.supervisor
        if loaded is None or supervisor.planner.shutting_down:
            return
        desired = self.filter(self.unfiltered(loaded.desired))
        self.legion.loaded = replace(loaded, desired=desired)
        supervisor.set_desired(desired)

    def _tell(self) -> None:
        for callback in list(self.listeners):
            callback()

    def _stopped(self, name: str) -> bool:
        """Whether no process of the task is left here as a cluster-wide task."""
        supervisor, loaded = self.legion.supervisor, self.legion.loaded
        if supervisor is None:
            return True
        if loaded is not None:
            spec = self.unfiltered(loaded.desired).tasks.get(name)
            if spec is not None and not spec.cluster:
                return True  # it now runs on every host: nothing to hand over
        state = supervisor.planner.tasks.get(name)
        return state is None or all(i.pid is None for i in state.instances.values())

    def _key(self, name: str) -> bytes:
        return (self.prefix + name).encode()
