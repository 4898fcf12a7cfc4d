"""A legion served with its HTTP service, notifications and systemd: what a running
taskforce is, assembled (the daemon runner, :mod:`taskforce.app.daemon`, and the fleet's
assembly, :mod:`taskforce.app.fleet`, serve through here).

The service's modules (h11 and the rest) are imported only when some listener is to be
opened, so `settings: {http: []}` costs nothing. Notifications (`settings.notify`) and
systemd's readiness protocol (when `NOTIFY_SOCKET` is set, with its watchdog) are hooked
to the supervisor as it starts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from taskforce.api.listen import listeners_to_open
from taskforce.api.paths import default_socket_path
from taskforce.api.servers import Published, ServerRecord, client_command
from taskforce.api.unix import close_inherited
from taskforce.config.model import HttpListener
from taskforce.runtime.legion import Legion, Loaded
from taskforce.runtime.loop.supervisor import Outcome
from taskforce.runtime.notify.notifications import Notifications, attach_notifications
from taskforce.runtime.notify.systemd import ENV as NOTIFY_SOCKET
from taskforce.runtime.notify.systemd import WATCHDOG_ENV, Notifier, SystemdStatus, Watchdog

if TYPE_CHECKING:
    from taskforce.api.server import ApiService
    from taskforce.api.sse import Fleet

log = logging.getLogger("taskforce")


async def serve_with_api(
    legion: Legion,
    *,
    pidfile: str | None = None,
    extra: Sequence[HttpListener] = (),
    on_ready: Callable[[], None] | None = None,
    fleet: Fleet | None = None,
    reexec: bool = False,
) -> Outcome:
    """legion.serve(on_ready), with the listeners of its `settings.http` and `extra`
    (and `fleet`, the fleet's statuses, for them to show).

    The listeners start before any task does: one that must not or cannot start raises
    ApiConfigError (:mod:`taskforce.api.listen`) with nothing started. Without
    `settings.http`, the default socket for `pidfile` is offered too, if it can be. The
    listeners close when serve() ends, whatever its outcome (a reset or an upgrade
    re-executes taskforce, which opens them again). The configuration is read once
    before serving, for its `settings.http`; a ConfigError then means what one from
    serve() would. `reexec`: the caller re-executes taskforce on a reset or an upgrade
    (the command does); the unix sockets are then handed over to the next image,
    listening all along, rather than closed.
    """
    _hide_notify_socket(legion)  # before the configuration is resolved
    loaded = legion.load()
    required, best_effort = listeners_to_open(loaded.config.settings.http, pidfile, extra)
    if not required and not best_effort:
        close_inherited()  # sockets an earlier image served, not wanted now
        return await serve_hooked(legion, on_ready, loaded)
    from taskforce.api.server import start_api
    from taskforce.api.status import Controller

    service = await start_api(
        legion, Controller(legion), required, best_effort=best_effort, fleet=fleet
    )
    published = _publish(service, pidfile, legion.config_file)
    outcome: Outcome | None = None
    try:
        outcome = await serve_hooked(legion, on_ready, loaded)
        return outcome
    finally:
        # Re-executing (same pid): the next image takes the sockets over, and rewrites
        # the records.
        reexecuting = reexec and outcome in (Outcome.RESET, Outcome.UPGRADE)
        if not reexecuting:
            published.remove()
        await service.close(hand_over=reexecuting)


def _publish(service: ApiService, pidfile: str | None, config_file: str) -> Published:
    """Record where clients reach the service (see :mod:`taskforce.api.servers`), and log
    the client command that does."""
    servers = service.client_servers()
    command = client_command(pidfile, servers, default_socket_path(None))
    record = ServerRecord(os.getpid(), tuple(servers), pidfile, config_file, command)
    published = Published(record)
    for problem in published.problems:
        log.warning("clients may not find this taskforce: cannot record its servers: %s", problem)
    if command:
        log.info("clients reach this taskforce with: %s", command)
    return published


async def serve_hooked(
    legion: Legion, on_ready: Callable[[], None] | None = None, loaded: Loaded | None = None
) -> Outcome:
    """legion.serve(on_ready), its supervisor reporting to notifications and systemd.

    Both are hooked from serve()'s `on_ready`, which runs once the supervisor exists and
    before its first planning pass: no event is missed, and READY=1 follows that pass.
    """
    systemd = _systemd(legion)
    # Fed from this loop from now on: loading and starting count as much as running.
    watchdog = Watchdog.start_if_asked(systemd.notifier) if systemd is not None else None
    notifications: list[Notifications] = []

    def ready() -> None:
        supervisor = legion.supervisor
        if supervisor is not None:
            notifications.append(attach_notifications(legion))
            if systemd is not None:
                systemd.attach(supervisor)
        if on_ready is not None:
            on_ready()

    outcome: Outcome | None = None
    try:
        outcome = await legion.serve(ready, loaded)
        return outcome
    finally:
        if watchdog is not None:
            watchdog.stop()
        if systemd is not None:
            if outcome is not None:
                systemd.ended(reexecuting=outcome is not Outcome.STOPPED)
            systemd.close()
        for each in notifications:
            await each.close()


def _systemd(legion: Legion) -> SystemdStatus | None:
    notifier = _hide_notify_socket(legion)
    return None if notifier is None else SystemdStatus(notifier)


def _hide_notify_socket(legion: Legion) -> Notifier | None:
    """systemd's notifier, if started by it, taken out of the tasks' environment (with the
    watchdog's variables): tasks must not speak to systemd in our name (it would refuse
    them, and log it)."""
    notifier = Notifier.from_environ()
    if notifier is not None:
        for name in (NOTIFY_SOCKET, *WATCHDOG_ENV):
            legion.environ.pop(name, None)
    return notifier
