"""Every host of the fleet as the HTTP service shows it: /status/fleet, /events/fleet.

The statuses are the keys ``<prefix>status/<host>`` that :mod:`taskforce.fleet.status`
publishes. While someone looks (a request in the last minute, or an open event stream),
a watch keeps a copy of them current and tells the streams of each change; then it
stops, so a host nobody looks at neither hears of the other hosts' every change nor
costs etcd a watch. Nothing is polled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from taskforce.fleet.backoff import Backoff
from taskforce.fleet.session import KV, EtcdUnavailableError, Session
from taskforce.runtime.manage import ControlError

log = logging.getLogger("taskforce.fleet")

LINGER = 60.0  # seconds the copy is kept current after the last look


class FleetView:
    def __init__(self, session: Session, prefix: str, host: str, linger: float = LINGER) -> None:
        self.session = session
        self.prefix = prefix + "status/"
        self.host = host
        self.linger = linger
        self.hosts: dict[str, Any] = {}
        self.error: str | None = None  # why the copy may be out of date
        self.changes = 0
        self._read = False  # the statuses were read at least once
        self._current = asyncio.Event()  # the copy is read and followed
        self._task: asyncio.Task[None] | None = None
        self._subscribers: set[asyncio.Event] = set()
        self._idle: asyncio.TimerHandle | None = None

    # ----- for the HTTP service -------------------------------------------------------

    def document(self) -> dict[str, Any]:
        return {
            "fleet": True,
            "host": self.host,  # the host answering
            "prefix": self.prefix[: -len("status/")],
            "current": self._current.is_set(),
            "error": self.error,
            "hosts": self.hosts,
        }

    async def snapshot(self) -> dict[str, Any]:
        """The document, once the copy is current (or etcd has failed to answer);
        ControlError (503) when etcd has not answered since the copy was started."""
        self._look()
        if not self._current.is_set():
            # A full round of the members, as `taskforce fleet status` would try.
            wait = self.session.rpc_timeout * (len(self.session.connection.endpoints) + 1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._current.wait(), wait)
        if not self._read:
            raise ControlError(503, self.error or "etcd did not answer in time")
        return self.document()

    def subscribe(self) -> asyncio.Event:
        """An event set at each change of the document; unsubscribe() at the end."""
        self._look()
        event = asyncio.Event()
        self._subscribers.add(event)
        return event

    def unsubscribe(self, event: asyncio.Event) -> None:
        self._subscribers.discard(event)
        self._look()  # the copy lingers after the last stream, for the next look

    async def close(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        task = self._halt()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # ----- following the statuses -----------------------------------------------------

    def _look(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._follow())
        if self._idle is not None:
            self._idle.cancel()
        self._idle = asyncio.get_running_loop().call_later(self.linger, self._maybe_idle)

    def _maybe_idle(self) -> None:
        self._idle = None
        if self._subscribers:
            self._look()
        else:
            self._halt()

    def _halt(self) -> asyncio.Task[None] | None:
        # At once, not in a task of its own: a look right after must start afresh.
        task, self._task = self._task, None
        self._current.clear()
        if task is not None:
            task.cancel()
        return task

    async def _follow(self) -> None:
        backoff = Backoff()
        while True:
            try:
                kvs, revision = await self.session.get_prefix(self.prefix.encode())
                self.hosts = dict(sorted(self._entry(kv) for kv in kvs))
                self._read, self.error = True, None
                self._current.set()
                self._changed()
                backoff.reset()
                async for event in self.session.watch(
                    self.prefix.encode(), revision + 1, prefix=True
                ):
                    name, status = self._entry(event.kv)
                    if event.deleted:
                        self.hosts.pop(name, None)
                    else:
                        self.hosts = dict(sorted({**self.hosts, name: status}.items()))
                    self._changed()
            except EtcdUnavailableError as exc:
                self._lost(f"etcd is unreachable: {exc}")
                await asyncio.sleep(backoff.next())
            except Exception:  # a bug: say so, and go on (see EtcdSource._follow)
                log.exception("fleet view: following the statuses failed; retrying")
                self._lost("the statuses could not be followed (see taskforce's log)")
                await asyncio.sleep(backoff.next())

    def _entry(self, kv: KV) -> tuple[str, Any]:
        name = kv.key.decode("utf-8", "replace")[len(self.prefix) :]
        try:
            return name, json.loads(kv.value)
        except ValueError:
            return name, {"error": "unreadable status"}

    def _lost(self, why: str) -> None:
        self._current.clear()
        if why != self.error:
            self.error = why
            self._changed()

    def _changed(self) -> None:
        self.changes += 1
        for event in self._subscribers:
            event.set()
