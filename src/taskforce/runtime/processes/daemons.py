"""Processes taskforce did not fork itself: daemons found through pidfiles, adopted
processes, and leftovers of an earlier taskforce.

Their exit is seen through a pidfd (Linux 5.3+), which the event loop reads like any
other descriptor: no polling. A process that turns out to be our child after all
(daemons are reparented to the subreaper) is left to wait(2), which also gives its
status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Sequence

from taskforce.runtime.processes.identity import (
    ProcessIdentity,
    identify,
    read_pidfile,
    runs_program,
)

log = logging.getLogger("taskforce")

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().decode(errors="replace").rsplit(")", 1)[-1].split()
        return int(fields[1])
    except (OSError, IndexError, ValueError):
        return None


def started_after(identity: ProcessIdentity, monotonic: float) -> bool:
    """Whether the process started after `monotonic` (seconds since boot, time.monotonic)."""
    return identity.start_ticks / _CLOCK_TICKS >= monotonic - 1.0


def find_daemon(
    pidfile: str | None, program: str, launched_at: float, argv: Sequence[str] = ()
) -> tuple[int, bool] | str:
    """The daemon a nowait/adopt start command left, as (pid, is_our_child), or why not.

    The pidfile is not trusted blindly: the process must have started after the start
    command, and be our child (reparented to us) or run the task's program.
    """
    if pidfile is None:
        return "the task has no pidfile"
    pid = read_pidfile(pidfile)
    if pid is None:
        return f"{pidfile} names no pid yet"
    identity = identify(pid)
    if identity is None:
        return f"{pidfile} names pid {pid}, which is not running"
    child = parent_of(pid) == os.getpid()
    if not started_after(identity, launched_at):
        return f"{pidfile} names pid {pid}, which is older than the start command"
    if not child and not runs_program(identity, program, argv):
        return f"{pidfile} names pid {pid}, which does not run {program}"
    return pid, child


class ExitWatch:
    """Calls `on_exit(pid)` when a process that is not our child exits."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_exit: Callable[[int], None]) -> None:
        self._loop = loop
        self._on_exit = on_exit
        self._fds: dict[int, int] = {}

    def watch(self, pid: int) -> bool:
        if pid in self._fds:
            return True
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            self._loop.call_soon(self._on_exit, pid)
            return True
        except (OSError, AttributeError) as exc:
            log.warning("cannot watch pid %d for its exit (%s): relying on checks", pid, exc)
            return False
        self._fds[pid] = fd
        self._loop.add_reader(fd, self._exited, pid)
        return True

    def forget(self, pid: int) -> None:
        fd = self._fds.pop(pid, None)
        if fd is not None:
            self._loop.remove_reader(fd)
            with contextlib.suppress(OSError):
                os.close(fd)

    def close(self) -> None:
        for pid in list(self._fds):
            self.forget(pid)

    def _exited(self, pid: int) -> None:
        self.forget(pid)
        self._on_exit(pid)
