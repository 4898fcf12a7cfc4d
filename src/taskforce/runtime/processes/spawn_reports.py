"""What a new process's child side said before it became the task: nothing, or why not.

A vfork spawn knows at once (the error comes back with the pid); a fork from Python
reports through a close-on-exec pipe, read when it becomes readable. Either way the
report is kept until the process is reaped, so that its exit is told with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from taskforce.runtime.processes import spawn


class SpawnReports:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._errors: dict[int, str] = {}  # pid -> why its exec failed
        self._fds: dict[int, int] = {}  # pid -> its report pipe, not yet read

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def watch(self, spawned: spawn.Spawned) -> None:
        if spawned.error_fd < 0:  # known already: the child exec'd, or failed and exits
            if spawned.error is not None:
                self._errors[spawned.pid] = spawned.error
            return
        assert self._loop is not None
        self._fds[spawned.pid] = spawned.error_fd
        self._loop.add_reader(spawned.error_fd, self._on_readable, spawned.pid, spawned.error_fd)

    def take(self, pid: int) -> str | None:
        """The reason `pid` (reaped now) never became its task, if it did not."""
        fd = self._fds.pop(pid, None)
        if fd is not None:
            error = spawn.read_spawn_error(fd)
            self._close(fd)
            if error is not None:
                return error
        return self._errors.pop(pid, None)

    def close(self) -> None:
        for fd in list(self._fds.values()):
            self._close(fd)
        self._fds.clear()
        self._loop = None

    def _on_readable(self, pid: int, fd: int) -> None:
        error = spawn.read_spawn_error(fd)
        if error is not None:
            self._errors[pid] = error
        if self._fds.get(pid) == fd:
            del self._fds[pid]
        self._close(fd)

    def _close(self, fd: int) -> None:
        if self._loop is not None:
            self._loop.remove_reader(fd)
        with contextlib.suppress(OSError):
            os.close(fd)
