"""A legion served as a member of the fleet: what the daemon runs when -f names an etcd key.

The fleet (:class:`taskforce.fleet.member.FleetMember`) is started before the legion
serves (the configuration read from etcd, the lease taken, the first elections run),
hooked to the supervisor once it exists (the status it publishes, the elections it
re-runs after each planning pass), shown by the HTTP service (/status/fleet), and
stopped after serving: leaving the fleet, or handing the lease over to the next image
of an in-place upgrade.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from taskforce.api.status import Controller
from taskforce.app.serve import serve_with_api
from taskforce.config.model import HttpListener
from taskforce.fleet.member import FleetMember
from taskforce.runtime.legion import Legion
from taskforce.runtime.loop.supervisor import Outcome


async def serve_in_fleet(
    legion: Legion,
    *,
    pidfile: str | None = None,
    extra: Sequence[HttpListener] = (),
    on_ready: Callable[[], None] | None = None,
    reexec: bool = False,
) -> Outcome:
    """serve_with_api(legion, ...) with the fleet plugged in; `legion` is made with
    :func:`taskforce.fleet.member.fleet_legion_kwargs`."""
    member = FleetMember(legion, tasks=Controller(legion).tasks)
    try:
        await member.start()

        def ready() -> None:
            member.attach(legion.supervisor)
            if on_ready is not None:
                on_ready()

        outcome = await serve_with_api(
            legion, pidfile=pidfile, extra=extra, on_ready=ready, fleet=member.view, reexec=reexec
        )
    except BaseException:
        await member.stop()
        raise
    await member.stop(hand_over=outcome is Outcome.UPGRADE)
    return outcome
