"""Exits and processes no task owns: reaping children, what they leave behind, strays, and
at start-up the processes an earlier taskforce left running."""

from __future__ import annotations

import logging
import os
import signal

from taskforce.core.planner import ExitOutcome
from taskforce.core.vocabulary import DAEMON, Control
from taskforce.runtime.clock import Handle, Scheduler
from taskforce.runtime.loop import exit_log
from taskforce.runtime.loop.collaborators import Collaborators, LoopPart
from taskforce.runtime.processes.daemons import ExitWatch, parent_of
from taskforce.runtime.processes.identity import identify
from taskforce.runtime.processes.leftovers import left_behind
from taskforce.runtime.processes.records import Earlier
from taskforce.runtime.processes.recovery import recover
from taskforce.runtime.processes.runner import WALK_INTERVAL
from taskforce.runtime.processes.spawn import describe_status

log = logging.getLogger("taskforce")

# Seconds from a task process's exit to the scan for what it left behind.
_SWEEP_DELAY = 0.05


class Reaper(LoopPart):
    """Tells the planner of every exit, and stops what no task owns."""

    def __init__(self, shared: Collaborators) -> None:
        super().__init__(shared)
        self._scheduler: Scheduler | None = None
        # Exits of processes that are not our children (daemons, adopted processes).
        self.exit_watch: ExitWatch | None = None
        # Task processes that exited since the last sweep for what they left behind.
        self._sweep_leaders: set[int] = set()
        self._sweep_timer: Handle | None = None
        # Processes no task owns that are being stopped, with their SIGKILL timers.
        self._strays: dict[int, Handle] = {}
        # Another look for exits, when the runner put off asking about every child.
        self._again: Handle | None = None

    def start(self, scheduler: Scheduler, exit_watch: ExitWatch | None = None) -> None:
        self._scheduler = scheduler
        self.exit_watch = exit_watch

    def close(self) -> None:
        if self._again is not None:
            self._again.cancel()
            self._again = None

    def busy(self) -> bool:
        """Whether strays are being stopped or a sweep is due (taskforce waits for them)."""
        return bool(self._strays) or self._sweep_timer is not None

    def stopping_strays(self) -> bool:
        return bool(self._strays)

    # ----- exits ----------------------------------------------------------------------

    def reap(self) -> None:
        """Collect every child that exited (SIGCHLD)."""
        for pid, status in self._runner.reaped():
            self._on_exit(pid, status)
        if self._runner.walk_put_off() and self._again is None and self._scheduler is not None:
            self._again = self._scheduler.call_later(WALK_INTERVAL, self._reap_again)
        if self._sweep_leaders and self._sweep_timer is None and self._scheduler is not None:
            # Off the restart path, and one scan of /proc for a burst of exits.
            self._sweep_timer = self._scheduler.call_later(_SWEEP_DELAY, self._sweep)
        self._schedule()

    def _reap_again(self) -> None:
        self._again = None
        self.reap()

    def _on_exit(self, pid: int, status: int) -> None:
        error = self._reports.take(pid)
        if self._commands.exited(pid, status, error):
            self._schedule()
            return
        self.forget(pid)
        self._output.exited(pid)  # its last words, before its exit is logged
        clock = self._clock
        cause = self._confinement.exit_cause(self.planner.owner(pid), status)
        outcome = self.planner.exited(pid, status, clock.monotonic(), clock.wall(), error, cause)
        if outcome is None:
            log.debug("reaped orphan pid %d (%s)", pid, describe_status(status))
            timer = self._strays.pop(pid, None)
            if timer is not None:
                timer.cancel()
            return
        leaves_nothing = self._leaves_nothing_behind(outcome)
        contained = self._confinement.contains(outcome.task, outcome.slot)
        # The leader is gone; whatever it left in its process group goes with it (in its
        # cgroup, where the kill below reaches it: no killpg for every exit of a stop).
        if not (leaves_nothing and contained) and self._runner.signal_group(pid, signal.SIGKILL):
            log.info(
                "%s: killed what pid %d left in its process group", exit_log.label(outcome), pid
            )
        if leaves_nothing and not contained:
            # A pass over /proc reads every process's environment: only for a process
            # outside a cgroup, whose kill below would not reach all it left.
            self._sweep_leaders.add(pid)
        self._confinement.exited(outcome, leaves_nothing)
        self._log_exit(pid, outcome)

    def _leaves_nothing_behind(self, outcome: ExitOutcome) -> bool:
        """Whether what escaped the process group of this exited process must go too.

        After a stop, always; after any exit of a wait task, whose replacement would
        otherwise run beside its predecessor's leftovers. Never for nowait/adopt tasks,
        whose start command's descendant is the very daemon.
        """
        if outcome.record.error is not None:
            return False
        state = self.planner.tasks.get(outcome.task)
        control = state.spec.control if state is not None and state.spec is not None else None
        if control in DAEMON:
            return False
        return outcome.record.expected or control is Control.WAIT

    def _sweep(self) -> None:
        self._sweep_timer = None
        leaders, self._sweep_leaders = self._sweep_leaders, set()
        exclude = {*self.planner.pids(), *self._commands}
        for pid, leader in left_behind(leaders, exclude):
            log.warning(
                "pid %d, left behind by pid %d outside its process group: stopping it", pid, leader
            )
            self.terminate_stray(pid)
        self._schedule()  # shutting down may have been waiting for this scan

    # ----- processes we did not start ------------------------------------------------

    def recover(self, earlier: Earlier | None) -> None:
        """Take charge of what an earlier taskforce left running (see :mod:`.recovery`)."""
        found, strays = recover(self.planner, earlier)
        found = [f for f in found if self.planner.owner(f.pid) is None]
        now, wall = self._clock.monotonic(), self._clock.wall()
        for item in found:
            what = "stopping it to start afresh" if item.leftover else "adopting it"
            log.info("%s[%d]: found pid %d still running: %s", item.task, item.slot, item.pid, what)
            self.planner.adopt(item.task, item.slot, item.pid, now, wall, item.leftover)
            self.watch_foreign(item.pid)
        for pid in strays:
            log.warning(
                "pid %d was left running by an earlier taskforce for a task no longer in "
                "scope: stopping it",
                pid,
            )
            self.terminate_stray(pid)

    def terminate_stray(self, pid: int) -> None:
        """SIGTERM a process no task owns, SIGKILL it after the stop timeout.

        taskforce does not exit before its strays are gone: they are its to clean up.
        """
        identity = identify(pid)
        if identity is None or pid in self._strays:
            return
        self._runner.signal_group(pid, signal.SIGTERM, or_process=True)
        timeout = self.planner.desired.policy.stop_timeout

        def kill_if_same() -> None:
            self._strays.pop(pid, None)
            again = identify(pid)
            if again is not None and again.start_ticks == identity.start_ticks:
                log.warning("pid %d ignored SIGTERM for %gs: SIGKILL", pid, timeout)
                self._runner.signal_group(pid, signal.SIGKILL, or_process=True)
            self._schedule()

        assert self._scheduler is not None
        self._strays[pid] = self._scheduler.call_later(timeout, kill_if_same)

    def watch_foreign(self, pid: int) -> None:
        """Hear of the exit of `pid`, which wait(2) does not report unless it is our child."""
        if parent_of(pid) != os.getpid() and self.exit_watch is not None:
            self.exit_watch.watch(pid)

    def forget(self, pid: int) -> None:
        if self.exit_watch is not None:
            self.exit_watch.forget(pid)

    def foreign_exit(self, pid: int) -> None:
        cause = self._confinement.exit_cause(self.planner.owner(pid))
        clock = self._clock
        outcome = self.planner.exited(pid, -1, clock.monotonic(), clock.wall(), cause=cause)
        if outcome is not None:
            self._confinement.exited(outcome, self._leaves_nothing_behind(outcome))
            self._log_exit(pid, outcome)
        self._schedule()
