"""Fleet mode for the `taskforce` command: what it calls when -f names an etcd key.

    kwargs = fleet_legion_kwargs(config_url, roles_url_or_path)
    legion = Legion(**kwargs, watch_self=True, upgrade_snapshot=...)
    outcome = asyncio.run(run_fleet(legion, pidfile=..., extra=..., on_ready=...))

:func:`run_fleet` takes the arguments of :func:`taskforce.api.run.serve_with_api` and
serves the legion the same way, with the fleet around it: the configuration (and roles)
read from etcd before the start, the host's lease, its status, and the election of
cluster-wide tasks. When it returns, the lease is revoked (the host leaves the fleet
status at once, and its cluster-wide tasks go to other hosts without waiting for the
lease to expire), except for an in-place upgrade, which hands the lease to the new image.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from taskforce.config.errors import ConfigError
from taskforce.config.host import HostFacts
from taskforce.config.model import HttpListener
from taskforce.fleet.election import Election
from taskforce.fleet.lease import LEASE_ENV, LeaseKeeper
from taskforce.fleet.session import Session
from taskforce.fleet.source import EtcdSource, cache_path
from taskforce.fleet.status import StatusPublisher
from taskforce.fleet.urls import Connection, is_etcd_url, parse_etcd_url
from taskforce.fleet.view import FleetView
from taskforce.runtime.legion import Legion
from taskforce.runtime.supervisor import Outcome

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


async def run_fleet(
    legion: Legion,
    *,
    pidfile: str | None = None,
    extra: Sequence[HttpListener] = (),
    on_ready: Callable[[], None] | None = None,
    reexec: bool = False,
) -> Outcome:
    """serve_with_api(legion, ...) as a member of the fleet (see the module's doc)."""
    from taskforce.api.run import serve_with_api
    from taskforce.fleet.session import FORK_ENV, FORK_ENV_MARK, FORK_ENV_OURS

    # What taskforce puts in its own environment is not the tasks' (the lease an in-place
    # upgrade hands over, say): were it to reach them, the new image would find them all
    # changed, and restart them.
    for name in (LEASE_ENV, FORK_ENV_MARK):
        legion.environ.pop(name, None)
    if FORK_ENV_OURS:
        legion.environ.pop(FORK_ENV, None)
    fleet = _Fleet(legion)
    try:
        await fleet.start()

        def ready() -> None:
            fleet.attach()
            if on_ready is not None:
                on_ready()

        outcome = await serve_with_api(
            legion, pidfile=pidfile, extra=extra, on_ready=ready, fleet=fleet.view, reexec=reexec
        )
    except BaseException:
        await fleet.stop(None)
        raise
    await fleet.stop(outcome)
    return outcome


class _Fleet:
    def __init__(self, legion: Legion) -> None:
        source = legion.config_source
        if not isinstance(source, EtcdSource):
            raise TypeError("run_fleet needs a legion made with fleet_legion_kwargs()")
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
            self.session, self.keeper, source.url.prefix, host, legion, self.election
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

    def attach(self) -> None:
        """Hear about the planning passes of the legion's supervisor (chained)."""
        supervisor = self.legion.supervisor
        if supervisor is None:
            return
        previous = supervisor.on_change

        def on_change() -> None:
            if previous is not None:
                previous()
            self._planned()

        supervisor.on_change = on_change
        # A rejected configuration changes no task, so no planning pass tells of it.
        previous_event = supervisor.on_event

        def on_event(event: dict[str, object]) -> None:
            if previous_event is not None:
                previous_event(event)
            self.status.changed()

        supervisor.on_event = on_event
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

    async def stop(self, outcome: Outcome | None) -> None:
        self.election.close()  # what follows is leaving, not losing the leadership
        await self.view.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if outcome is Outcome.UPGRADE:
            self.keeper.hand_over()  # the tasks keep running, and so keep their leaders
        else:
            # Every task has stopped: let the others take over now, not after the TTL.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.keeper.revoke(), self.session.rpc_timeout * 2)
        for source in self.sources:
            await source.session.close()


def _etcd_sources(legion: Legion) -> list[EtcdSource]:
    return [s for s in (legion.config_source, legion.roles_source) if isinstance(s, EtcdSource)]
