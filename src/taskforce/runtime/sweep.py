"""Finding what a task left behind after its process exited.

A task's processes may fork children that leave its process group or daemonize
(setsid, double fork): killing the group misses them. They still carry the task's
environment, and so the `Task_ppid` (this taskforce) and `Task_pid` (the process they
descend from) taskforce put there. One pass over /proc finds them all.
"""

from __future__ import annotations

import os
from collections.abc import Collection


def left_behind(leaders: Collection[int], exclude: Collection[int]) -> list[tuple[int, int]]:
    """(pid, leader) of live processes descending from the exited `leaders`."""
    if not leaders:
        return []
    ours = f"Task_ppid={os.getpid()}".encode()
    wanted = {f"Task_pid={leader}".encode(): leader for leader in leaders}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid in exclude:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read()
        except OSError:
            continue  # gone, or not ours to read
        if ours not in environ:
            continue
        for variable in environ.split(b"\0"):
            leader = wanted.get(variable)
            if leader is not None:
                found.append((pid, leader))
                break
    return found
