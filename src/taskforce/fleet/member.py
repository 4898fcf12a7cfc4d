"""This host as a member of the fleet: what plugs the fleet into a legion when -f names
an etcd key.

    legion = Legion(**fleet_legion_kwargs(config_url, roles_url_or_path), ...)
    member = FleetMember(legion, tasks=Controller(legion).tasks)
    await member.start()        # before serving: etcd read, lease taken, elections run
    ... legion.serve(on_ready=lambda: member.attach(legion.supervisor)) ...
    await member.stop(outcome)  # after serving

The fleet is a configuration source (:class:`~taskforce.fleet.source.EtcdSource`, the
legion's `config_source` and perhaps `roles_source`), a filter of the desired state (the
election of cluster-wide tasks) and a status publisher hooked to the supervisor's
planning passes and events; :attr:`FleetMember.view` is what the HTTP service shows as
/status/fleet. The assembly, with the HTTP service beside it, is
:mod:`taskforce.app.fleet`'s, which also gives the member the task views it publishes
(the api's: the fleet sits beside the api, not above it). When the member stops, the
lease is revoked (the host leaves the fleet status at once, and its cluster-wide tasks go
to other hosts without waiting for the lease to expire), except for an in-place upgrade,
which hands the lease to the new image.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

from taskforce.config.errors import ConfigError
from taskforce.config.host import HostFacts
from taskforce.fleet.election import Election
from taskforce.fleet.lease import LEASE_ENV, LeaseKeeper
from taskforce.fleet.session import FORK_ENV, FORK_ENV_MARK, FORK_ENV_OURS, Session
from taskforce.fleet.source import EtcdSource, cache_path
from taskforce.fleet.status import StatusPublisher, TaskViews
from taskforce.fleet.urls import Connection, is_etcd_url, parse_etcd_url
from taskforce.fleet.view import FleetView
from taskforce.runtime.legion import Legion
from taskforce.runtime.loop.listeners import after

log = logging.getLogger("taskforce.fleet")


def rpc_timeout(ttl: int) -> float:
    """How long one etcd call may take: short enough to retry on another member before
    the lease stops being safe (TTL/6 between renewals, unsafe after 2*TTL/3)."""
    return max(0.5, min(2.0, ttl / 4))


def fleet_legion_kwargs(
    config_url: str, roles: str | None, host: HostFacts | None = None
) -> dict[str, Any]:
    """Legion(...) arguments for a configuration in etcd; `roles` is an etcd URL, a roles
    file path, or None. Raises EtcdUrlError (a ValueError) for a bad URL.

    `config_file` is the local copy of the configuration (it names the instance's
    runtime files, and shows where the copy is).
    """
    host = host or HostFacts.from_system()
    url = parse_etcd_url(config_url, host.hostname, host.fqdn)
    sessions: dict[Connection, Session] = {}

    def session(connection: Connection) -> Session:
        if connection not in sessions:
            sessions[connection] = Session(connection, rpc_timeout(url.ttl))
        return sessions[connection]

    config = EtcdSource(session(url.connection), url, cache_path(url, host.hostname), missing=None)
    kwargs: dict[str, Any] = {
        "config_file": config.cache_file,
        "roles_file": roles,
        "config_source": config,
        "roles_source": None,
        "host": host,
    }
    if is_etcd_url(roles):
        assert roles is not None
        roles_url = parse_etcd_url(roles, host.hostname, host.fqdn)
        kwargs["roles_file"] = None
        kwargs["roles_source"] = EtcdSource(
            session(roles_url.connection),
            roles_url,
            cache_path(roles_url, host.hostname),
            missing=b"",
        )
    return kwargs


def legion_for_check(config_url: str, roles: str | None) -> Legion:
    """A legion whose check() checks what etcd holds now (for `taskforce -C`)."""
    legion = Legion(**fleet_legion_kwargs(config_url, roles))

    async def prime() -> None:
        for source in _etcd_sources(legion):
            await source.prime()
            await source.session.close()

    asyncio.run(prime())
    return legion


class Supervised(Protocol):
    """The hooks of the legion's supervisor that the member listens to (chained)."""

    on_change: Callable[[], None] | None
    on_event: Callable[[dict[str, object]], None] | None


class FleetMember:
    def __init__(self, legion: Legion, *, tasks: TaskViews) -> None:
        """`tasks` gives every task's status as the API shows it (ControlError while
        nothing is supervised yet)."""
        source = legion.config_source
        if not isinstance(source, EtcdSource):
            raise TypeError("FleetMember needs a legion made with fleet_legion_kwargs()")
        # What taskforce puts in its own environment is not the tasks' (the lease an
        # in-place upgrade hands over, say): were it to reach them, the new image would
        # find them all changed, and restart them.
        for name in (LEASE_ENV, FORK_ENV_MARK):
            legion.environ.pop(name, None)
        if FORK_ENV_OURS:
            legion.environ.pop(FORK_ENV, None)
        self.legion = legion
        self.sources = _etcd_sources(legion)
        self.session = source.session
        host = legion.host.hostname
        self.keeper = LeaseKeeper(self.session, source.url.ttl)
        self.election = Election(
            self.session,
            self.keeper,
            source.url.prefix,
            host,
            legion,
            config_revision=lambda: source.revision_read,
        )
        self.status = StatusPublisher(
            self.session, self.keeper, source.url.prefix, host, legion, tasks, self.election
        )
        self.election.listeners.append(self.status.changed)
        self.view = FleetView(self.session, source.url.prefix, host)
        self._tasks: list[asyncio.Task[None]] = []
        self._seen: object = None  # the legion's `loaded` last looked at

    async def start(self) -> None:
        """Read the configuration, take the lease and compete before any task starts, so
        a cluster-wide task that this host wins starts with the others."""
        for source in self.sources:
            await source.prime()
        self.legion.desired_filter = self.election.filter
        if await self.keeper.start():
            try:
                self.election.loaded(self.legion.load().desired)
                await self.election.campaign()
            except ConfigError:
                pass  # serving reports it
            except Exception as exc:  # etcd went away meanwhile: the loops retry
                log.debug("fleet start: %s", exc)
        loop = asyncio.get_running_loop()
        for run in (self.keeper.run, self.election.run, self.status.run):
            self._tasks.append(loop.create_task(run()))

    def attach(self, supervisor: Supervised | None) -> None:
        """Hear about the planning passes and events of the legion's supervisor, once it
        exists (from serve()'s `on_ready`)."""
        if supervisor is None:
            return
        supervisor.on_change = after(supervisor.on_change, self._planned)
        # A rejected configuration changes no task, so no planning pass tells of it.
        supervisor.on_event = after(supervisor.on_event, lambda event: self.status.changed())
        self._planned()

    def _planned(self) -> None:
        loaded = self.legion.loaded
        if loaded is not None and loaded is not self._seen:
            self._seen = loaded
            self.election.loaded(loaded.desired)
            if self.legion.reload_error is None:
                # Just loaded without a problem: this is the copy worth keeping.
                for source in self.sources:
                    source.commit()
        self.election.planned()
        self.status.changed()

    async def stop(self, *, hand_over: bool = False) -> None:
        """Leave the fleet; `hand_over`: to the next image of an in-place upgrade, whose
        tasks keep running, and so keep their leaders (the lease is not revoked)."""
        self.election.close()  # what follows is leaving, not losing the leadership
        await self.view.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if hand_over:
            self.keeper.hand_over()
        else:
            # Every task has stopped: let the others take over now, not after the TTL.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.keeper.revoke(), self.session.rpc_timeout * 2)
        for source in self.sources:
            await source.session.close()


def _etcd_sources(legion: Legion) -> list[EtcdSource]:
    return [s for s in (legion.config_source, legion.roles_source) if isinstance(s, EtcdSource)]
