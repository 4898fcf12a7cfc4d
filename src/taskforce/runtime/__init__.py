"""The runtime: the legion (library entry point) and what runs its tasks on this host.

- :mod:`.legion`: loads the configuration (through :mod:`taskforce.config.pipeline`),
  watches it, and serves it with a supervisor; :mod:`.upgrade` re-executes in place.
- :mod:`.loop`: the supervisor's loop, its action executor, reaper, signals, probes and
  scheduled runs.
- :mod:`.processes`: spawning (and what a child is given before exec), held listening
  sockets, knowing processes again, records, task commands.
- :mod:`.limits`: a cgroup per task instance (limits, accounting, killing), memory_restart.
- :mod:`.output`: task output capture; :mod:`.notify`: notifications and systemd.
- :mod:`.own`: taskforce's own process (pidfile, detaching, its open-file limit, runtime files).
- :mod:`.manage`: what may be done to a running legion (the API's control actions).
"""
