"""Commands run on behalf of a task instance (its stop, check and ready-probe commands,
event commands) or of taskforce itself: started, timed, killed, told of their end.

They are not tasks: the planner never sees them. Each gets /dev/null for stdio, the task's
environment with Task_pid naming the task's process, and a process group of its own, so
that killing one reaches whatever it started.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from taskforce.core.spec import LaunchSpec
from taskforce.runtime.clock import Handle, Scheduler
from taskforce.runtime.processes import spawn
from taskforce.runtime.processes.spawn import SpawnError
from taskforce.runtime.processes.spawn_reports import SpawnReports

log = logging.getLogger("taskforce")


@dataclass(slots=True)
class _Command:
    task: str
    slot: int
    what: str
    # Told the wait status when the command ends (checks, probes); else its end is logged.
    on_exit: Callable[[int], None] | None = None
    timer: Handle | None = None


class TaskCommands:
    """The commands running on behalf of tasks (and of taskforce): their pids, timers, ends."""

    def __init__(self, reports: SpawnReports) -> None:
        self._reports = reports
        self._running: dict[int, _Command] = {}
        self._scheduler: Scheduler | None = None
        self._devnull = -1

    def start(self, scheduler: Scheduler, devnull: int) -> None:
        self._scheduler = scheduler
        self._devnull = devnull

    def __bool__(self) -> bool:
        return bool(self._running)

    def __iter__(self) -> Iterator[int]:
        return iter(self._running)

    def run(
        self,
        task: str,
        slot: int,
        launch: LaunchSpec,
        pid_value: str,
        what: str,
        on_exit: Callable[[int], None] | None = None,
        *,
        deadline: float | None = None,
        on_late: Callable[[int], None] | None = None,
    ) -> int | None:
        """Start `launch` (Task_pid replaced by `pid_value`); its pid, or None (logged).

        After `deadline` seconds `on_late(pid)` runs, by default a silent SIGKILL of its
        process group.
        """
        try:
            spawned = spawn.spawn(
                launch,
                argv=launch.argv,
                stdin=self._devnull,
                stdout=self._devnull,
                stderr=self._devnull,
                pid_value=pid_value,
            )
        except (SpawnError, OSError) as exc:
            log.error("%s[%d]: cannot run %s: %s", task, slot, what, exc)
            return None
        helper = _Command(task, slot, what, on_exit)
        self._running[spawned.pid] = helper
        self._reports.watch(spawned)
        if deadline is not None and self._scheduler is not None:
            late, pid = on_late or _kill, spawned.pid
            helper.timer = self._scheduler.call_later(deadline, lambda: late(pid))
        return spawned.pid

    def kill_hung(self, pid: int) -> None:
        """An on_late for commands that should have ended: say so, then SIGKILL."""
        helper = self._running.get(pid)
        if helper is not None:
            helper.timer = None
            log.warning(
                "%s[%d]: its %s, pid %d, is still running: SIGKILL",
                helper.task,
                helper.slot,
                helper.what,
                pid,
            )
            spawn.signal_group(pid, signal.SIGKILL)

    def kill_for(self, task: str, slot: int) -> None:
        """SIGKILL every command running on behalf of one task instance."""
        for pid, helper in self._running.items():
            if helper.task == task and helper.slot == slot:
                log.warning("%s[%d]: killing its %s, pid %d", task, slot, helper.what, pid)
                spawn.signal_group(pid, signal.SIGKILL)

    def exited(self, pid: int, status: int, error: str | None) -> bool:
        """Handle the end of `pid` if it is a helper (True), else leave it (False)."""
        helper = self._running.pop(pid, None)
        if helper is None:
            return False
        if helper.timer is not None:
            helper.timer.cancel()
        if helper.on_exit is not None:
            helper.on_exit(status if error is None else -1)
            return True
        label = f"{helper.task}[{helper.slot}]"
        if error is not None:
            log.error("%s: %s could not run: %s", label, helper.what, error)
        elif status != 0:
            log.warning("%s: %s pid %d %s", label, helper.what, pid, spawn.describe_status(status))
        else:
            log.debug("%s: %s pid %d finished", label, helper.what, pid)
        return True


def command_launch(task: LaunchSpec, argv: tuple[str, ...]) -> LaunchSpec:
    """How a command of a task runs: its own argv, with the task's environment, directory
    and identity."""
    return LaunchSpec(argv[0], argv, task.env, task.cwd, task.user, task.group)


def _kill(pid: int) -> None:
    spawn.signal_group(pid, signal.SIGKILL)
