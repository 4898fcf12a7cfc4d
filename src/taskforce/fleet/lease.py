"""The host's lease: its status key and the leader keys it holds live and die with it.

The lease is renewed every TTL/6 (a member lost, with an etcd election to wait for,
costs a renewal or two, not the lease). Each renewal that etcd acknowledges proves the lease
alive until at least (the moment the request was *sent*) + TTL: etcd extends a lease from
when it receives the renewal, which is later. That instant, minus a guard of TTL/3, is
the lease's *safe deadline*: past it without a newer renewal, the host must act as if it
had lost the lease (the election stops its cluster-wide tasks), while etcd still holds
the lease for at least the guard, so no other host can have taken over yet.

Listeners are called (on the loop) when the lease changes, and when it becomes unsafe.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import Callable

from taskforce.fleet.backoff import Backoff, keep_trying
from taskforce.fleet.session import EtcdUnavailableError, Session

log = logging.getLogger("taskforce.fleet")

# A lease kept across an in-place upgrade (tasks keep running, so must their leadership).
LEASE_ENV = "TASKFORCE_FLEET_LEASE"


class LeaseKeeper:
    def __init__(self, session: Session, ttl: int) -> None:
        self.session = session
        self.ttl = ttl
        self.lease_id = 0  # 0: none at the moment
        self._valid_until = -math.inf  # monotonic time; etcd holds the lease until then
        self._listeners: list[Callable[[], None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._safe = False
        self._inherited = _inherited_lease()

    @property
    def guard(self) -> float:
        return self.ttl / 3

    @property
    def safe(self) -> bool:
        """Whether etcd surely still holds our lease, with the guard to spare."""
        return self._safe

    def listen(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    async def run(self) -> None:
        backoff = Backoff(initial=0.1, limit=self.ttl / 4)
        await keep_trying(self._keep, "lease", "fleet lease: renewal failed; retrying", backoff)

    async def start(self) -> bool:
        """Obtain the lease before the tasks start, trying each member once; whether done."""
        for _ in self.session.connection.endpoints:
            try:
                await self._obtain()
                return True
            except EtcdUnavailableError as exc:
                log.debug("lease: %s", exc)
        return False

    async def revoke(self) -> None:
        """Give the lease up (every key under it goes at once); best effort."""
        lease, self.lease_id = self.lease_id, 0
        self._set_valid_until(-math.inf)
        if lease:
            try:
                await self.session.revoke(lease)
            except EtcdUnavailableError as exc:
                log.info("could not revoke the fleet lease (it expires by itself): %s", exc)

    def hand_over(self) -> None:
        """Leave the lease to the image that an in-place upgrade is about to start."""
        if self.lease_id:
            os.environ[LEASE_ENV] = str(self.lease_id)

    async def _keep(self) -> None:
        if not self.lease_id:
            await self._obtain()
        else:
            sent = asyncio.get_running_loop().time()
            remaining = await self.session.keepalive(self.lease_id)
            if remaining <= 0:
                log.warning("the fleet lease expired while etcd was out of reach: taking a new one")
                self.lease_id = 0
                self._set_valid_until(-math.inf)
                self._changed()
                return
            self._set_valid_until(sent + remaining)
        await asyncio.sleep(self.ttl / 6)

    async def _obtain(self) -> None:
        loop = asyncio.get_running_loop()
        inherited, self._inherited = self._inherited, 0
        if inherited:
            sent = loop.time()
            remaining = await self.session.keepalive(inherited)
            if remaining > 0:
                log.info("fleet lease %x kept across the upgrade", inherited)
                self.lease_id = inherited
                self._set_valid_until(sent + remaining)
                self._changed()
                return
        sent = loop.time()
        lease, granted = await self.session.grant(self.ttl)
        # etcd may grant more than asked (its minimum); it then holds the lease longer.
        self.lease_id = lease
        self._set_valid_until(sent + granted)
        log.debug("fleet lease %x granted for %d s", lease, granted)
        self._changed()

    def _set_valid_until(self, when: float) -> None:
        self._valid_until = when
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        loop = asyncio.get_running_loop()
        deadline = when - self.guard
        safe = loop.time() < deadline
        if safe:
            self._timer = loop.call_at(deadline, self._deadline)
        if safe != self._safe:
            self._safe = safe
            self._changed()

    def _deadline(self) -> None:
        self._timer = None
        if self._safe:
            log.warning("the fleet lease could not be renewed in time: acting as if it were lost")
            self._safe = False
            self._changed()

    def _changed(self) -> None:
        for callback in list(self._listeners):
            callback()


def _inherited_lease() -> int:
    text = os.environ.pop(LEASE_ENV, "")
    return int(text) if text.isdigit() else 0
