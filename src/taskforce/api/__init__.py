"""The HTTP status and control service: a thin layer over the runtime's Controller.
A legion is served with it by the wiring (:mod:`taskforce.app.serve`).

Nothing is imported here, so that a taskforce without listeners pays nothing for it, and a
client can compute the default socket path (:mod:`taskforce.api.paths`) cheaply.

- :mod:`~taskforce.api.paths`: where the default unix socket lives.
- :mod:`~taskforce.api.listen`: configured listeners, checked and made ready to bind.
- :mod:`~taskforce.api.unix`: creating and removing owner-only unix sockets safely.
- :mod:`~taskforce.api.auth`: who may use which paths.
- :mod:`~taskforce.api.hosts`: which Host headers a TCP listener answers (DNS rebinding).
- :mod:`~taskforce.api.routes`: the paths, mapped to Controller calls.
- :mod:`~taskforce.api.http`: one HTTP/1.1 connection (h11), with limits and timeouts.
- :mod:`~taskforce.api.sse`: the server-sent event stream of task state.
- :mod:`~taskforce.api.server`: listeners started and stopped as one service.
"""
