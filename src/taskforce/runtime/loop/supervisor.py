# Over 450 lines: one job, the loop and its pass (executor, reaper, signals: own modules).
"""The event loop: feed facts to the planner, carry out its actions, sleep until needed.

One thread, one asyncio loop. Inputs are signals (:mod:`.signals`), the close-on-exec
pipes that report failed execs, and the planner's next deadline; nothing wakes up on a
timer that is not a deadline, so an idle supervisor makes no system calls. The actions
are carried out by :mod:`.executor`, exits collected by :mod:`.reaper`.

The clock, the scheduler (the asyncio loop) and the process runner are parameters, so
that the loop runs in tests with fakes: no processes, no waiting.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
from collections.abc import Callable, Mapping, Sequence

from taskforce.core.actions import RunCommand, SendSignal, Start, Stop
from taskforce.core.planner import ExitOutcome, Planner
from taskforce.core.spec import DesiredState, LaunchSpec, differing
from taskforce.core.state import Phase
from taskforce.core.vocabulary import Control, Overlap
from taskforce.runtime.clock import Clock, Handle, Scheduler, SystemClock
from taskforce.runtime.limits.confinement import Confinement
from taskforce.runtime.loop import exit_log, signals
from taskforce.runtime.loop.collaborators import Collaborators
from taskforce.runtime.loop.executor import Executor
from taskforce.runtime.loop.reaper import Reaper
from taskforce.runtime.loop.schedule import Scheduler as Schedules
from taskforce.runtime.output.capture import OutputCapture
from taskforce.runtime.own import memory
from taskforce.runtime.processes import spawn
from taskforce.runtime.processes.daemons import ExitWatch
from taskforce.runtime.processes.records import Records
from taskforce.runtime.processes.runner import OsProcesses, ProcessRunner
from taskforce.runtime.processes.sockets import SocketHolder
from taskforce.runtime.processes.spawn_reports import SpawnReports
from taskforce.runtime.processes.task_commands import TaskCommands

log = logging.getLogger("taskforce")

# Seconds from a change of the running processes to writing their records, and at least
# between two such writes (while processes keep exiting and starting: a write costs a
# restart's CPU time again).
_RECORDS_DELAY = 0.1
_RECORDS_INTERVAL = 1.0
# A burst of more starts than this makes and drops much (each start's request, pipes,
# argv and environment blocks, then the records written for them all, the log lines):
# the heap's free pages are handed back once it is over, as after a configuration load
# (2.4 to 5 MB with 10,000 starts). Seconds after the burst: past the records' write.
_BURST = 128
_GIVE_BACK_DELAY = 1.0


class Outcome(enum.Enum):
    """How the supervisor ended."""

    STOPPED = "stopped"  # SIGTERM, SIGINT or stop(): all tasks stopped
    RESET = "reset"  # SIGHUP or reset(): all tasks stopped, the caller re-executes
    UPGRADE = "upgrade"  # hand_over(): tasks left running for the re-executed image


class Supervisor:
    """Runs the tasks of a desired state until asked to stop.

    `clock`, `scheduler` (default: the running asyncio loop) and `runner` are what the
    loop reads the time from, is called back by, and starts and reaps processes with.
    """

    def __init__(
        self,
        desired: DesiredState,
        records: Records | None = None,
        *,
        clock: Clock | None = None,
        scheduler: Scheduler | None = None,
        runner: ProcessRunner | None = None,
    ) -> None:
        self.planner = Planner(desired)
        # Timers of the tasks with a `schedule` (none without).
        self.schedules = Schedules(self._scheduled_run)
        self.schedules.configure(desired.tasks)
        self.records = records or Records(None)
        self._clock = clock or SystemClock()
        self._given_scheduler = scheduler
        self._scheduler: Scheduler | None = None  # while running
        self._records_version = -1  # the processes' version last written to the records
        self._pid_version = -1  # and the planner's now
        self._records_timer: Handle | None = None
        self._give_back_timer: Handle | None = None
        self._records_written_at = float("-inf")
        self._pass_scheduled = False
        self._pass_handle: Handle | None = None  # of the pass scheduled
        self._passing = False  # within _pass
        # Exits reaped, told once the pass that follows has spawned their replacements.
        self._untold: list[tuple[int | None, ExitOutcome]] = []
        self._timer: Handle | None = None
        self._timer_at: float | None = None
        self._spawn_reports = SpawnReports()
        self._commands = TaskCommands(self._spawn_reports)
        self._done: asyncio.Future[Outcome] | None = None
        self._outcome = Outcome.STOPPED
        # How run() ended, or is about to: set once the last task has stopped.
        self.finished: Outcome | None = None
        # Task output that is not /dev/null: pipes, destinations and recent lines.
        self.output = OutputCapture(lambda: self.planner.desired)
        # Each instance's cgroup, and memory_restart.
        self.confinement = Confinement()
        # Listening sockets held for tasks (their `sockets`), kept across restarts.
        self.sockets = SocketHolder()
        shared = Collaborators(
            self.planner,
            runner or OsProcesses(),
            self._clock,
            self._commands,
            self._spawn_reports,
            self.output,
            self.confinement,
            self._schedule,
            self._log_exit,
            self._tell_exits,
        )
        self.reaper = Reaper(shared)
        self.executor = Executor(shared, self.records, self.reaper, self.sockets, self.emit)
        self.on_change: Callable[[], None] | None = None
        # Told about state changes worth notifying (see emit()).
        self.on_event: Callable[[dict[str, object]], None] | None = None
        # Called on SIGUSR2: re-execute in place, keeping the tasks.
        self.on_upgrade: Callable[[], object] | None = None
        # Told of every task process's exit (and failed start), once it is logged.
        self.on_exit: Callable[[ExitOutcome], None] | None = None

    # ----- public control -------------------------------------------------------------

    async def run(self) -> Outcome:
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        handled = signals.install(
            loop,
            on_child=self.on_child,
            on_stop=lambda name: self._on_stop_signal(name, Outcome.STOPPED),
            on_reset=lambda name: self._on_stop_signal(name, Outcome.RESET),
            on_upgrade=self._on_usr2,
        )
        if spawn.become_subreaper():
            log.debug("acting as child subreaper: orphaned descendants are reaped here")
        exit_watch = ExitWatch(loop, self.reaper.foreign_exit)
        self.confinement.start(loop, self.records.path, self._memory_restart)
        self._spawn_reports.start(loop)
        self.schedules.start(loop)
        outcome = Outcome.STOPPED
        try:
            self.begin(self._given_scheduler or loop, exit_watch)
            outcome = await self._done
            if outcome is Outcome.STOPPED and not self.executor.kept:
                self.records.remove()
            self.confinement.close(keep=outcome is Outcome.UPGRADE or bool(self.executor.kept))
            return outcome
        finally:
            self.schedules.close()
            if outcome in (Outcome.UPGRADE, Outcome.RESET):
                self.sockets.hand_over()  # the next image serves them on
            else:
                self.sockets.close()
            self.confinement.close(keep=True)
            exit_watch.close()
            signals.remove(loop, handled)
            self.end()

    def begin(self, scheduler: Scheduler, exit_watch: ExitWatch | None = None) -> None:
        """Start supervising, called back by `scheduler` from now on (run() does this; a
        test may drive the loop itself, then calls end())."""
        self._scheduler = scheduler
        devnull = os.open(os.devnull, os.O_RDWR)
        self.executor.devnull = devnull
        self._commands.start(scheduler, devnull)
        self.reaper.start(scheduler, exit_watch)
        self.reaper.reap()  # anything that exited before the handler was in place
        self.reaper.recover(self.records.load())
        self.confinement.resume(self.planner)
        self.records.begin()
        self.sockets.keep(self.planner.desired)  # those handed over and still wanted
        self._schedule()

    def end(self) -> None:
        self._tell_exits()
        if self._timer is not None:
            self._timer.cancel()
        if self._records_timer is not None:
            self._records_timer.cancel()
            self._records_timer = None
        if self._give_back_timer is not None:
            self._give_back_timer.cancel()
            self._give_back_timer = None
        self.reaper.close()
        self._spawn_reports.close()
        self.output.close()
        if self.executor.devnull >= 0:
            os.close(self.executor.devnull)
            self.executor.devnull = -1
        self._scheduler = None

    def set_desired(self, desired: DesiredState) -> None:
        if self.planner.shutting_down:
            return
        previous = self.planner.desired
        self.planner.set_desired(desired)
        self.schedules.configure(desired.tasks, differing(previous, desired))
        self.sockets.keep(desired)
        self._schedule()

    def busy(self) -> bool:
        """Whether something is in flight that a re-exec would lose track of."""
        if self._commands or self.reaper.stopping_strays() or self.planner.shutting_down:
            return True
        return any(
            inst.phase in (Phase.STOPPING, Phase.STARTING, Phase.DAEMONIZING)
            for state in self.planner.tasks.values()
            for inst in state.instances.values()
        )

    def run_command(
        self,
        argv: tuple[str, ...],
        what: str,
        on_exit: Callable[[int], None],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> bool:
        """Run a command of taskforce's own (not a task's); `on_exit` gets its status.

        `env` replaces our environment for it; after `timeout` seconds its process group
        is killed (`on_exit` then gets the SIGKILL status).
        """
        environ = os.environ if env is None else env
        launch = LaunchSpec(argv[0], argv, tuple(environ.items()))
        pid = self._commands.run("taskforce", 0, launch, "", what, on_exit, deadline=timeout)
        return pid is not None

    def hand_over(self) -> None:
        """End run() with Outcome.UPGRADE, leaving every process running."""
        self._finish(Outcome.UPGRADE)

    def poke(self) -> None:
        """Run a planning pass soon (something outside the planner changed)."""
        self._schedule()

    def stop(self, outcome: Outcome = Outcome.STOPPED) -> None:
        """Stop every task, then end run() with `outcome`."""
        if self.planner.shutting_down:
            if outcome is Outcome.STOPPED:
                self._outcome = Outcome.STOPPED  # a stop during a reset is a plain stop
            return
        log.info("stopping all tasks (%s)", "reset" if outcome is Outcome.RESET else "exit")
        self._outcome = outcome
        self.planner.shutdown()
        self.schedules.configure({})
        self._schedule()

    def _on_usr2(self) -> None:
        if self.on_upgrade is None:
            log.info("SIGUSR2 ignored")
        else:
            log.info("SIGUSR2 received: upgrading in place")
            self.on_upgrade()

    def _on_stop_signal(self, name: str, outcome: Outcome) -> None:
        log.info("%s received", name)
        self.stop(outcome)

    def _finish(self, outcome: Outcome) -> None:
        if self.finished is None:
            self.finished = outcome
        if self._done is not None and not self._done.done():
            self._done.set_result(outcome)

    # ----- event actions --------------------------------------------------------------

    def event_stop(self, task: str, reason: str) -> None:
        if self.planner.request_stop(task, reason):
            self._schedule()

    def _memory_restart(self, task: str, slot: int, reason: str) -> None:
        log.warning("%s[%d]: %s: restarting it", task, slot, reason)
        if self.planner.request_stop(task, reason, slot):
            self._schedule()

    def event_start(self, task: str, reason: str) -> None:
        if self.planner.request_run(task):
            log.info("%s: run requested (%s)", task, reason)
            self._schedule()

    def _scheduled_run(self, task: str, overlap: Overlap) -> None:
        if self.planner.request_run(task, overlap):
            log.info("%s: run requested (schedule)", task)
            self._schedule()
        else:
            log.info("%s: scheduled run skipped: the last run is still going", task)

    def event_signal(self, task: str, signum: int, reason: str) -> None:
        for slot, pid in self._running(task):
            self.executor.execute(SendSignal(task, slot, pid, signum, reason))

    def event_command(self, task: str, command: str, reason: str) -> None:
        """Run one of the task's named commands once per running process (or once)."""
        state = self.planner.tasks.get(task)
        spec = self.planner.desired.tasks.get(task)
        if state is None or spec is None:
            return
        targets: list[tuple[int, int | None]] = list(self._running(task)) or [(0, None)]
        for slot, pid in targets:
            instance = spec.instances[slot] if slot < spec.count else None
            if instance is None or command not in instance.commands:
                continue
            log.info("%s[%d]: running command %r (%s)", task, slot, command, reason)
            argv = instance.commands[command]
            self.executor.execute(RunCommand(task, slot, pid, argv, instance.launch, reason))

    def _running(self, task: str) -> list[tuple[int, int]]:
        state = self.planner.tasks.get(task)
        if state is None:
            return []
        return [
            (slot, inst.pid)
            for slot, inst in sorted(state.instances.items())
            if inst.pid is not None and inst.phase is Phase.RUNNING
        ]

    # ----- the planning pass ----------------------------------------------------------

    def _schedule(self) -> None:
        if self._pass_scheduled or self._scheduler is None:
            return
        self._pass_scheduled = True
        self._pass_handle = self._scheduler.call_soon(self._pass)

    def on_child(self) -> None:
        """SIGCHLD: reap, then plan at once rather than a turn of the loop later (the
        replacement of a process that exited is spawned without waiting for that)."""
        self.reaper.reap()
        if self._pass_handle is not None:
            self._pass_handle.cancel()
            self._pass()

    def _pass(self) -> None:
        self._pass_scheduled = False
        self._pass_handle = None
        if self._scheduler is None:
            self._tell_exits()
            return  # run() has ended (a hand-over): the next image plans
        self._passing = True
        try:
            self._plan_and_act()
        finally:
            self._passing = False
        self._tell_exits()  # those whose pass started nothing
        if self.on_change is not None:
            self.on_change()
        if self.planner.shutting_down and self._idle():
            self._finish(self._outcome)

    def _plan_and_act(self) -> None:
        record_now = False
        for _ in range(100):  # each round runs what the previous round's facts allow
            plan = self.planner.plan(self._clock.monotonic())
            if not plan.actions:
                # A pass with nothing to do may still find an instance steady again.
                self._report_recovered(plan.recovered)
                break
            starts: list[Start] = []
            stops: list[Stop] = []
            for action in plan.actions:
                if isinstance(action, Start):
                    starts.append(action)  # together, last: a burst spawns in parallel
                elif isinstance(action, Stop):
                    stops.append(action)  # together: every group signalled at once
                else:
                    self.executor.execute(action)
            self.executor.stop_all(stops)
            self.executor.start_all(starts)
            if len(starts) > _BURST:
                self._give_back_later()
            self._report_recovered(plan.recovered)
            record_now = record_now or self._runs_once(starts)
        self._set_timer(plan.next_deadline)
        self._pid_version = plan.pid_version
        if plan.pid_version != self._records_version and record_now and self.records.path:
            # A process that must not run twice (a once or event task's run, a daemon's
            # starter): recorded before anything else, so that a taskforce killed now is
            # followed by one that keeps it rather than stopping it to run it again.
            if self._records_timer is not None:
                self._records_timer.cancel()
            self._write_records()
        elif (
            plan.pid_version != self._records_version
            and self._records_timer is None
            and self.records.path is not None
            and self._scheduler is not None
        ):
            # Later and once for a burst: a write costs milliseconds (a thousand records,
            # ten), which a restart would otherwise share a CPU with. A process started
            # meanwhile and not yet recorded is still found by the next taskforce should
            # this one be killed (recovery.py: by its environment).
            since = self._clock.monotonic() - self._records_written_at
            delay = max(_RECORDS_DELAY, _RECORDS_INTERVAL - since)
            self._records_timer = self._scheduler.call_later(delay, self._write_records)

    def _give_back_later(self) -> None:
        if self._give_back_timer is not None:
            self._give_back_timer.cancel()
        if self._scheduler is not None:
            self._give_back_timer = self._scheduler.call_later(_GIVE_BACK_DELAY, self._give_back)

    def _give_back(self) -> None:
        self._give_back_timer = None
        memory.give_back()

    def _runs_once(self, starts: Sequence[Start]) -> bool:
        tasks = self.planner.desired.tasks
        return any(
            (spec := tasks.get(start.task)) is not None and spec.control is not Control.WAIT
            for start in starts
        )

    def _write_records(self) -> None:
        self._records_timer = None
        self._records_written_at = self._clock.monotonic()
        self._records_version = self._pid_version
        self.records.update(self.planner.pid_owners())

    def _report_recovered(self, recovered: Sequence[tuple[str, int]]) -> None:
        for task, slot in recovered:
            log.info("%s[%d]: running steadily again", task, slot)
            self.emit("recovered", task, "running steadily again", instance=slot)

    def _idle(self) -> bool:
        busy = self._commands or self.reaper.busy()
        return not (busy or self.planner.has_processes())

    def _set_timer(self, when: float | None) -> None:
        if when == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = when
        if when is not None and self._scheduler is not None:
            self._timer = self._scheduler.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self._schedule()

    # ----- telling ---------------------------------------------------------------------

    def emit(self, event: str, task: str | None, detail: str, **extra: object) -> None:
        """Tell whoever listens (notifications) about a state change worth a person's eye."""
        if self.on_event is not None:
            data: dict[str, object] = {
                "event": event,
                "task": task,
                "detail": detail,
                "time": self._clock.wall(),
            }
            data.update(extra)
            try:
                self.on_event(data)
            except Exception:
                log.exception("event listener failed")

    def _log_exit(self, pid: int | None, outcome: ExitOutcome) -> None:
        """Tell a task process's exit (or failed start): its log line, its event, on_exit.

        An exit reaped between passes is told by the pass that follows, once that pass
        has spawned the replacements: formatting the line and calling the listeners would
        otherwise count in every restart's latency. Not when on_exit listens (--exit-with):
        it may stop every task rather than let that pass restart any."""
        if self.on_exit is None and not self._passing and self._scheduler is not None:
            self._untold.append((pid, outcome))
            self._schedule()
            return
        self._tell_exits()  # in the order they happened
        self._tell_exit(pid, outcome)

    def _tell_exits(self) -> None:
        while self._untold:
            untold, self._untold = self._untold, []
            for pid, outcome in untold:
                self._tell_exit(pid, outcome)

    def _tell_exit(self, pid: int | None, outcome: ExitOutcome) -> None:
        exit_log.log_exit(pid, outcome, self.emit)
        if self.on_exit is not None:
            self.on_exit(outcome)
