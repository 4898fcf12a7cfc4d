"""The supervisor's side of task cgroups: which instance's processes go where, what its
exit means, who is signalled and killed with it, and memory_restart.

One object, so that the supervisor calls it at a few points of a process's life (start,
stop, kill, exit, the end of taskforce) and knows nothing of hierarchies and files.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable

from taskforce.core.planner import ExitOutcome, Planner
from taskforce.core.spec import CgroupLimits, TaskSpec
from taskforce.runtime.limits.cgroups import Cgroups, GroupUsage
from taskforce.runtime.limits.memory_restart import MemoryRestart
from taskforce.runtime.processes.usage import GroupFiles

log = logging.getLogger("taskforce")


class Confinement:
    def __init__(self) -> None:
        self.cgroups = Cgroups([])
        self._memory: MemoryRestart | None = None
        # Instances whose process this taskforce started in their cgroup: all they leave
        # behind is in it (not those taken over or adopted: started by another image).
        # Task -> the slots started in their cgroups, as bits: no (task, slot) tuple and
        # set entry per instance (100 bytes each, 1 MB with 10,000 tasks).
        self._contained: dict[str, int] = {}

    def start(
        self,
        loop: asyncio.AbstractEventLoop,
        records_path: str | None,
        restart: Callable[[str, int, str], None],
    ) -> None:
        """Find the hierarchies (one log line says what came of it)."""
        self.cgroups = Cgroups.discover(records_path)
        self._memory = MemoryRestart(loop, self.cgroups, restart)

    def close(self, *, keep: bool) -> None:
        """At the end of taskforce: unless the processes are `keep`t for the next image,
        kill whatever is left in the instances' cgroups and remove them."""
        if self._memory is not None:
            self._memory.close()
            self._memory = None
        if not keep and self.cgroups.available:
            self.cgroups.remove_all()

    def procs_for(
        self, task: str, slot: int, limits: CgroupLimits, memory_restart: int | None
    ) -> tuple[str, ...]:
        """The cgroup.procs files the instance's next process joins (made now)."""
        slots = self._contained.pop(task, 0) & ~(1 << slot)
        if slots:
            self._contained[task] = slots
        if not self.cgroups.available:
            return ()
        try:
            procs = self.cgroups.prepare(task, slot, limits, memory_restart is not None)
        except OSError as exc:
            log.warning(
                "%s[%d]: cannot make its cgroup (%s): it runs in taskforce's",
                task,
                slot,
                exc.strerror or exc,
            )
            return ()
        self._contained[task] = self._contained.get(task, 0) | 1 << slot
        return procs

    def contains(self, task: str, slot: int) -> bool:
        """Whether everything the instance's process left behind is in its cgroup (it was
        started there by this taskforce), so that killing the cgroup leaves nothing: no
        need to look through /proc for the task's environment."""
        return bool(self._contained.get(task, 0) >> slot & 1)

    def started(self, task: TaskSpec, slot: int, pid: int, interval: float) -> None:
        if self._memory is not None:
            self._memory.interval = interval
            self._memory.started(task.name, slot, pid, task.memory_restart)

    def resume(self, planner: Planner) -> None:
        """Watch the memory of the processes taken over (an upgrade) or adopted (after
        SIGKILL): their cgroups are where they were, found by task name and instance."""
        interval = planner.desired.policy.memory_check_interval
        for name, state in planner.tasks.items():
            spec = planner.desired.tasks.get(name)
            if spec is None or spec.memory_restart is None:
                continue
            for slot, inst in state.instances.items():
                if inst.pid is not None:
                    self.started(spec, slot, inst.pid, interval)

    def exit_cause(self, owner: tuple[str, int] | None, status: int = -1) -> str | None:
        """What the exit status of the instance's process will not say. A process that
        died of a signal other than SIGKILL was not the OOM killer's (nor, as far as its
        exit tells, short of memory): its cgroup's count is not read (a file read an exit,
        which a stop of thousands of instances would pay for each)."""
        if owner is None or not self.cgroups.available:
            return None
        if status >= 0 and os.WIFSIGNALED(status) and os.WTERMSIG(status) != signal.SIGKILL:
            return None
        return self.cgroups.out_of_memory(*owner)

    def exited(self, outcome: ExitOutcome, leaves_nothing: bool) -> None:
        """The instance's process is gone: after a stop (or where nothing it left may
        stay), so is everything in its cgroup."""
        if self._memory is not None:
            self._memory.exited(outcome.task, outcome.slot)
        if outcome.record.error is not None and self.cgroups.available:
            self.cgroups.forget(outcome.task, outcome.slot)
        if not (outcome.record.expected or leaves_nothing) or not self.cgroups.available:
            return
        killed = self.cgroups.kill(outcome.task, outcome.slot)
        if killed:
            log.info(
                "%s[%d]: killed %d process(es) left in its cgroup",
                outcome.task,
                outcome.slot,
                killed,
            )

    def stop(self, task: str, slot: int, signum: int, pid: int) -> None:
        """The stop signal to every process of the instance's cgroup outside the group of
        `pid`, which has been sent it."""
        if self.cgroups.available:
            self.cgroups.signal(task, slot, signum, pid)

    def kill(self, task: str, slot: int) -> None:
        if self.cgroups.available:
            self.cgroups.kill(task, slot)

    def usage(self, task: str, slot: int) -> GroupUsage | None:
        return self.cgroups.usage(task, slot) if self.cgroups.available else None

    def usage_files(self, task: str, slot: int) -> GroupFiles | None:
        return self.cgroups.usage_files(task, slot) if self.cgroups.available else None
