"""Finding what a task left behind after its process exited.

A task's processes may fork children that leave its process group or daemonize
(setsid, double fork): killing the group misses them. They still carry the task's
environment, and so the `Task_ppid` (this taskforce) and `Task_pid` (the process they
descend from) taskforce put there. One pass over /proc finds them all: costly where the
host runs many processes, so only for processes started outside a cgroup of their own
(whatever one in a cgroup leaves is killed with its cgroup, limits/confinement.py).
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Collection

log = logging.getLogger("taskforce")

# Out of file descriptors: the scan cannot go on (and must not fail the loop).
_SHORTAGE = (errno.EMFILE, errno.ENFILE, errno.ENOMEM)


def left_behind(leaders: Collection[int], exclude: Collection[int]) -> list[tuple[int, int]]:
    """(pid, leader) of live processes descending from the exited `leaders`."""
    if not leaders:
        return []
    ours = f"Task_ppid={os.getpid()}".encode()
    wanted = {f"Task_pid={leader}".encode(): leader for leader in leaders}
    found: list[tuple[int, int]] = []
    try:
        entries = os.listdir("/proc")
    except OSError as exc:
        _cannot_scan(exc)
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid in exclude:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read()
        except OSError as exc:
            if exc.errno in _SHORTAGE:
                _cannot_scan(exc)
                return found
            continue  # gone, or not ours to read
        if ours not in environ:
            continue
        for variable in environ.split(b"\0"):
            leader = wanted.get(variable)
            if leader is not None:
                found.append((pid, leader))
                break
    return found


def _cannot_scan(exc: OSError) -> None:
    log.warning("cannot look for processes left behind by exited tasks: %s", exc.strerror or exc)
