"""The process runner the supervisor is given: starting task processes, signalling them,
collecting their exits. The real one runs processes (:mod:`.spawn`, waitpid); tests give
one that only records."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
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
    def start(self, requests: Sequence[StartRequest]) -> list[Spawned | Exception]:
        """Start each process (together: a burst spawns in parallel); each one's process,
        or why it could not start."""

    def signal_group(self, pid: int, signum: int, *, or_process: bool = False) -> bool: ...

    def signal_process(self, pid: int, signum: int) -> bool: ...

    def reaped(self) -> Iterator[tuple[int, int]]:
        """(pid, wait status) of each child that has exited since last asked."""


class OsProcesses:
    """Real processes: spawned by :mod:`taskforce.runtime.processes.spawn`, reaped by waitpid."""

    def start(self, requests: Sequence[StartRequest]) -> list[Spawned | Exception]:
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
        ran = spawn.run_jobs([job for _, job in prepared])
        for (index, _), result in zip(prepared, ran, strict=True):
            results[index] = result
        return [r for r in results if r is not None]

    def signal_group(self, pid: int, signum: int, *, or_process: bool = False) -> bool:
        return spawn.signal_group(pid, signum, or_process=or_process)

    def signal_process(self, pid: int, signum: int) -> bool:
        return spawn.signal_process(pid, signum)

    def reaped(self) -> Iterator[tuple[int, int]]:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            yield pid, status
