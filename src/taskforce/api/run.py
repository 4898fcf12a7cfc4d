"""A legion served together with its HTTP service: what the `taskforce` command runs.

The service's modules (h11 and the rest) are imported only when some listener is to be
opened, so `settings: {http: []}` costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from taskforce.api.listen import listeners_to_open
from taskforce.config.model import HttpListener
from taskforce.runtime.legion import Legion
from taskforce.runtime.supervisor import Outcome


async def serve_with_api(
    legion: Legion,
    *,
    pidfile: str | None = None,
    extra: Sequence[HttpListener] = (),
    on_ready: Callable[[], None] | None = None,
) -> Outcome:
    """legion.serve(on_ready), with the listeners of its `settings.http` and `extra`.

    The listeners start before any task does: one that must not or cannot start raises
    ApiConfigError (:mod:`taskforce.api.listen`) with nothing started. Without
    `settings.http`, the default socket for `pidfile` is offered too, if it can be. The
    listeners close when serve() ends, whatever its outcome (a reset or an upgrade
    re-executes taskforce, which opens them again). The configuration is read once
    before serving, for its `settings.http`; a ConfigError then means what one from
    serve() would.
    """
    settings = legion.load().config.settings
    required, best_effort = listeners_to_open(settings.http, pidfile, extra)
    if not required and not best_effort:
        return await legion.serve(on_ready)
    from taskforce.api.server import start_api
    from taskforce.runtime.control import Controller

    service = await start_api(legion, Controller(legion), required, best_effort=best_effort)
    try:
        return await legion.serve(on_ready)
    finally:
        await service.close()
