"""memory_restart: restart an instance whose memory passes its task's threshold.

Told by the kernel where it can be: a cgroup v1 memory controller signals an eventfd when
the usage of a cgroup crosses a threshold (cgroup.event_control). Elsewhere (cgroup v2,
whose memory.events reports no such crossing, or no memory cgroup at all) the memory is
sampled every `memory_check_interval` seconds, the cgroup's where there is one, else the
process's resident memory; that timer runs only while some running instance has a
memory_restart and no event to tell it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable

from taskforce.runtime.limits.cgroups import Cgroups
from taskforce.runtime.processes.usage import process_usage

log = logging.getLogger("taskforce")

# Called with task, slot and why, to restart that instance.
Restart = Callable[[str, int, str], None]


class MemoryRestart:
    def __init__(self, loop: asyncio.AbstractEventLoop, cgroups: Cgroups, restart: Restart) -> None:
        self._loop = loop
        self._cgroups = cgroups
        self._restart = restart
        # Instances told of by an eventfd: (task, slot) -> (eventfd, threshold).
        self._events: dict[tuple[str, int], tuple[int, int]] = {}
        # Instances sampled: (task, slot) -> (pid, threshold).
        self._sampled: dict[tuple[str, int], tuple[int, int]] = {}
        # Running instances with a threshold: (task, slot) -> (pid, threshold).
        self._running: dict[tuple[str, int], tuple[int, int]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self.interval = 10.0

    def started(self, task: str, slot: int, pid: int, threshold: int | None) -> None:
        key = (task, slot)
        self._sampled.pop(key, None)
        if threshold is None:
            self._running.pop(key, None)
            self._unregister(key)
            return
        self._running[key] = (pid, threshold)
        if key in self._events and self._events[key][1] == threshold:
            return
        self._unregister(key)
        if not self._register(key, threshold):
            self._sampled[key] = (pid, threshold)
            self._arm()

    def exited(self, task: str, slot: int) -> None:
        key = (task, slot)
        self._running.pop(key, None)
        self._sampled.pop(key, None)

    def close(self) -> None:
        for key in list(self._events):
            self._unregister(key)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # ----- cgroup v1 events -----------------------------------------------------------

    def _register(self, key: tuple[str, int], threshold: int) -> bool:
        found = self._cgroups.memory_file(*key)
        if found is None or found[0] != 1:
            return False
        directory = found[1]
        try:
            efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        except OSError:
            return False
        try:
            usage = os.open(os.path.join(directory, "memory.usage_in_bytes"), os.O_RDONLY)
            try:
                control = os.open(os.path.join(directory, "cgroup.event_control"), os.O_WRONLY)
                try:
                    os.write(control, f"{efd} {usage} {threshold}".encode())
                finally:
                    os.close(control)
            finally:
                os.close(usage)  # the kernel holds on to what it needs
        except OSError as exc:
            log.debug("no memory threshold event for %s[%d]: %s", *key, exc)
            os.close(efd)
            return False
        self._events[key] = (efd, threshold)
        self._loop.add_reader(efd, self._crossed, key)
        return True

    def _unregister(self, key: tuple[str, int]) -> None:
        found = self._events.pop(key, None)
        if found is not None:
            self._loop.remove_reader(found[0])
            os.close(found[0])  # the kernel drops the event with it

    def _crossed(self, key: tuple[str, int]) -> None:
        found = self._events.get(key)
        if found is None:
            return
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(found[0])
        used = self._cgroups.usage(*key)
        memory = used.memory_bytes if used is not None else None
        if memory is not None:
            self._check(key, memory)

    # ----- sampling -------------------------------------------------------------------

    def _arm(self) -> None:
        if self._timer is None and self._sampled:
            self._timer = self._loop.call_later(self.interval, self._sample)

    def _sample(self) -> None:
        self._timer = None
        for key, (pid, _) in list(self._sampled.items()):
            memory: int | None = None
            if self._cgroups.memory_file(*key) is not None:
                used = self._cgroups.usage(*key)
                memory = used.memory_bytes if used is not None else None
            else:
                process = process_usage(pid)
                memory = process.rss_bytes if process is not None else None
            if memory is not None:
                self._check(key, memory)
        self._arm()

    def _check(self, key: tuple[str, int], memory: int) -> None:
        running = self._running.get(key)
        if running is None or memory < running[1]:
            return
        self._running.pop(key, None)
        self._sampled.pop(key, None)
        self._restart(*key, f"memory {_mib(memory)} passed memory_restart {_mib(running[1])}")


def _mib(value: int) -> str:
    return f"{value / (1 << 20):.1f}M"
