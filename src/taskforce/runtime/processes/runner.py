"""The process runner the supervisor is given: starting task processes, signalling them,
collecting their exits. The real one runs processes (:mod:`.spawn`, waitpid); tests give
one that only records.

Reaping: waitpid(-1) has the kernel walk the list of all our children at every call (one
that finds nothing walks all of them), so with thousands of children a burst of exits
(a stop of all) would cost a walk per exit. A process being stopped is watched through
a pidfd in one epoll set: its exit is found without a walk, and reaped by its pid. Not
every process from its start: each descriptor held would be copied into every child
spawned (vfork copies the descriptor table) and closed again at its exec. A walk is still
needed for the other children: it is done when no watched exit explains a SIGCHLD, and
otherwise at most every `walk_interval` seconds (the caller asks again later: see
`walk_put_off`).
"""

from __future__ import annotations

import os
import resource
import select
import time
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple, Protocol

from taskforce.core.spec import LaunchSpec
from taskforce.runtime.processes import spawn
from taskforce.runtime.processes.spawn import Spawned, SpawnError


class StartRequest(NamedTuple):
    launch: LaunchSpec
    stdin: int
    stdout: int
    stderr: int
    fds: tuple[int, ...] = ()  # passed from 3 on (held sockets)
    cgroups: tuple[str, ...] = ()  # the cgroup.procs files the process joins


class ProcessRunner(Protocol):
    def begin(self, requests: Sequence[StartRequest]) -> Callable[[], list[Spawned | Exception]]:
        """Start each process (together: a burst spawns in parallel, on threads while the
        caller goes on); the function returned waits for them and gives each one's
        process, or why it could not start."""

    def signal_group(self, pid: int, signum: int, *, or_process: bool = False) -> bool: ...

    def signal_process(self, pid: int, signum: int) -> bool: ...

    def expect_exits(self, pids: Sequence[int]) -> None:
        """These children are being stopped: their exits are to be found cheaply."""

    def reaped(self) -> Iterator[tuple[int, int]]:
        """(pid, wait status) of each child that has exited since last asked."""

    def walk_put_off(self) -> bool:
        """Whether the last reaped() left some children unasked: call it again soon."""


# Seconds between two walks of all children while watched exits keep coming.
WALK_INTERVAL = 0.02


class OsProcesses:
    """Real processes: spawned by :mod:`taskforce.runtime.processes.spawn`, reaped by waitpid."""

    def __init__(self) -> None:
        self.walk_interval = WALK_INTERVAL
        self._epoll: select.epoll | None = None
        self._watched: dict[int, int] = {}  # pidfd: pid
        self._pidfds: dict[int, int] = {}  # pid: pidfd
        self._walked = float("-inf")
        self._put_off = False

    def start(self, requests: Sequence[StartRequest]) -> list[Spawned | Exception]:
        return self.begin(requests)()

    def begin(self, requests: Sequence[StartRequest]) -> Callable[[], list[Spawned | Exception]]:
        results: list[Spawned | Exception | None] = [None] * len(requests)
        prepared: list[tuple[int, spawn.Job]] = []
        for index, (launch, stdin, stdout, stderr, fds, cgroups) in enumerate(requests):
            try:
                job = spawn.prepare(
                    launch, stdin=stdin, stdout=stdout, stderr=stderr, cgroups=cgroups, fds=fds
                )
            except (SpawnError, OSError) as exc:
                results[index] = exc
                continue
            prepared.append((index, job))
        running = spawn.begin_jobs([job for _, job in prepared])

        def wait() -> list[Spawned | Exception]:
            for (index, _), result in zip(prepared, running(), strict=True):
                results[index] = result
            return [r for r in results if r is not None]

        return wait

    def expect_exits(self, pids: Sequence[int]) -> None:
        if not pids:
            return  # every pass asks (a restart's too): no getrlimit for nothing
        ceiling = _half_the_fd_limit()  # the other half: pipes, sockets, clients
        for pid in pids:
            if pid not in self._pidfds:
                self._watch(pid, ceiling)

    def _watch(self, pid: int, ceiling: int) -> None:
        """Hear of the child's exit through a pidfd (not our child yet reaped: its pid is
        not reused meanwhile). Without one (no fd left, an old kernel) a walk finds it."""
        try:
            if self._epoll is None:
                self._epoll = select.epoll()
            fd = os.pidfd_open(pid)
        except (OSError, AttributeError):
            return
        try:
            if fd >= ceiling:
                raise OSError(f"pidfd {fd} past {ceiling}")
            self._epoll.register(fd, select.EPOLLIN)
        except OSError:
            os.close(fd)
            return
        self._watched[fd] = pid
        self._pidfds[pid] = fd

    def _unwatch(self, pid: int) -> None:
        fd = self._pidfds.pop(pid, None)
        if fd is not None:
            del self._watched[fd]
            os.close(fd)  # which takes it out of the epoll set

    def signal_group(self, pid: int, signum: int, *, or_process: bool = False) -> bool:
        return spawn.signal_group(pid, signum, or_process=or_process)

    def signal_process(self, pid: int, signum: int) -> bool:
        return spawn.signal_process(pid, signum)

    def reaped(self) -> Iterator[tuple[int, int]]:
        watched = 0
        while self._epoll is not None:
            ready = self._epoll.poll(0, 256)
            for fd, _ in ready:
                pid = self._watched.get(fd)
                if pid is None:
                    continue
                self._unwatch(pid)
                try:
                    got, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    continue
                if got == pid:
                    watched += 1
                    yield pid, status
            if len(ready) < 256:
                break
        now = time.monotonic()
        self._put_off = bool(watched) and now - self._walked < self.walk_interval
        if self._put_off:
            return
        self._walked = now
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._unwatch(pid)
            yield pid, status

    def walk_put_off(self) -> bool:
        return self._put_off


def _half_the_fd_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft // 2 if soft != resource.RLIM_INFINITY else 1 << 20
