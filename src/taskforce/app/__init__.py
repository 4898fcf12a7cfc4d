"""The wiring: a running taskforce assembled from the layers below it.

The command line calls in here and nowhere lower to run the supervisor; the layers below
know nothing of each other's presence. Nothing is imported here, so that a client
command pays nothing for it.

- :mod:`~taskforce.app.daemon`: the daemon runner (logging, pidfile, detaching, the
  legion made and served, the re-exec on a reset or an upgrade).
- :mod:`~taskforce.app.serve`: a legion served with its HTTP service, notifications and
  systemd's readiness protocol and watchdog.
- :mod:`~taskforce.app.fleet`: the same as a member of the fleet (the configuration
  from etcd, the status published, the fleet's statuses served).
- :mod:`~taskforce.app.logs`: where taskforce's own log goes.
"""
