"""The event loop: feed facts to the planner, carry out its actions, sleep until needed.

One thread, one asyncio loop. Inputs are signals (SIGCHLD, SIGTERM, SIGINT, SIGHUP), the
close-on-exec pipes that report failed execs, and the planner's next deadline; nothing
wakes up on a timer that is not a deadline, so an idle supervisor makes no system calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence

from taskforce.core.actions import (
    Action,
    Check,
    Kill,
    LookForPid,
    Probe,
    Release,
    RunCommand,
    SendSignal,
    Start,
    Stop,
)
from taskforce.core.planner import ExitOutcome, Planner
from taskforce.core.sockets import activation_env
from taskforce.core.spec import TASK_PID_MARKER, DesiredState, LaunchSpec
from taskforce.core.state import Phase
from taskforce.core.vocabulary import DAEMON, Control, Overlap
from taskforce.runtime import exit_log, process, readiness
from taskforce.runtime.confinement import Confinement
from taskforce.runtime.foreign import ExitWatch, find_daemon
from taskforce.runtime.helpers import Helpers
from taskforce.runtime.identity import identify
from taskforce.runtime.output import OutputCapture, Stdio
from taskforce.runtime.process import SpawnError
from taskforce.runtime.records import ProcessRecord, Records
from taskforce.runtime.recovery import recover
from taskforce.runtime.schedule import Scheduler
from taskforce.runtime.sockets import SocketHolder
from taskforce.runtime.spawn_reports import SpawnReports
from taskforce.runtime.sweep import left_behind

log = logging.getLogger("taskforce")

# Starts prepared at once at most (each holds its output pipe until spawned).
_START_SLICE = 128

# Seconds from a task process's exit to the scan for what it left behind.
_SWEEP_DELAY = 0.05


class Outcome(enum.Enum):
    """How the supervisor ended."""

    STOPPED = "stopped"  # SIGTERM, SIGINT or stop(): all tasks stopped
    RESET = "reset"  # SIGHUP or reset(): all tasks stopped, the caller re-executes
    UPGRADE = "upgrade"  # hand_over(): tasks left running for the re-executed image


class Supervisor:
    """Runs the tasks of a desired state until asked to stop.

    `reload` is called to get a fresh desired state (on start-up and when the
    configuration changes); it returns None when the new configuration is unusable.
    """

    def __init__(self, desired: DesiredState, records: Records | None = None) -> None:
        self.planner = Planner(desired)
        # Timers of the tasks with a `schedule` (none without).
        self.schedules = Scheduler(self._scheduled_run)
        self.schedules.configure(desired.tasks)
        self.records = records or Records(None)
        self._records_version = -1
        self._exit_watch: ExitWatch | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pass_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._spawn_reports = SpawnReports()
        self._helpers = Helpers(self._spawn_reports)
        # Each instance's cgroup, and memory_restart.
        self.confinement = Confinement()
        self._done: asyncio.Future[Outcome] | None = None
        self._outcome = Outcome.STOPPED
        self._devnull = -1
        # Task output that is not /dev/null: pipes, destinations and recent lines.
        self.output = OutputCapture(lambda: self.planner.desired)
        # Listening sockets held for tasks (their `sockets`), kept across restarts.
        self.sockets = SocketHolder()
        self._kept: list[ProcessRecord] = []
        self._probes: set[asyncio.Task[str | None]] = set()
        # Task processes that exited since the last sweep for what they left behind.
        self._sweep_leaders: set[int] = set()
        # Why a nowait/adopt pidfile was last doubted, per instance (logged once).
        self._pidfile_doubts: dict[tuple[str, int], str] = {}
        self._sweep_timer: asyncio.TimerHandle | None = None
        # Processes no task owns that are being stopped, with their SIGKILL timers.
        self._strays: dict[int, asyncio.TimerHandle] = {}
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
        self._loop = loop
        self._done = loop.create_future()
        self._devnull = os.open(os.devnull, os.O_RDWR)
        handled = self._install_signals(loop)
        # A thousand children exiting at once overflow asyncio's wake-up pipe; that loses
        # nothing (one wake-up reaps them all) but Python would print a traceback for
        # each lost byte, which at that rate stalls the loop.
        signal.set_wakeup_fd(signal.set_wakeup_fd(-1), warn_on_full_buffer=False)
        if process.become_subreaper():
            log.debug("acting as child subreaper: orphaned descendants are reaped here")
        self._exit_watch = ExitWatch(loop, self._foreign_exit)
        self.confinement.start(loop, self.records.path, self._memory_restart)
        self._spawn_reports.start(loop)
        self._helpers.start(loop, self._devnull)
        self.schedules.start(loop)
        outcome = Outcome.STOPPED
        try:
            self._reap()  # anything that exited before the handler was in place
            self._recover()
            self.confinement.resume(self.planner)
            self.records.begin()
            self.sockets.keep(self.planner.desired)  # those handed over and still wanted
            self._schedule()
            outcome = await self._done
            if outcome is Outcome.STOPPED and not self._kept:
                self.records.remove()
            self.confinement.close(keep=outcome is Outcome.UPGRADE or bool(self._kept))
            return outcome
        finally:
            self.schedules.close()
            if outcome in (Outcome.UPGRADE, Outcome.RESET):
                self.sockets.hand_over()  # the next image serves them on
            else:
                self.sockets.close()
            self.confinement.close(keep=True)
            self._exit_watch.close()
            for signum in handled:
                loop.remove_signal_handler(signum)
            if self._timer is not None:
                self._timer.cancel()
            self._spawn_reports.close()
            self.output.close()
            os.close(self._devnull)
            self._loop = None

    def set_desired(self, desired: DesiredState) -> None:
        if self.planner.shutting_down:
            return
        self.planner.set_desired(desired)
        self.schedules.configure(desired.tasks)
        self.sockets.keep(desired)
        self._schedule()

    def busy(self) -> bool:
        """Whether something is in flight that a re-exec would lose track of."""
        if self._helpers or self._strays or self.planner.shutting_down:
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
        pid = self._helpers.run("taskforce", 0, launch, "", what, on_exit, deadline=timeout)
        return pid is not None

    def hand_over(self) -> None:
        """End run() with Outcome.UPGRADE, leaving every process running."""
        if self._done is not None and not self._done.done():
            self._done.set_result(Outcome.UPGRADE)

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

    # ----- processes we did not start ------------------------------------------------

    def _recover(self) -> None:
        found, strays = recover(self.planner, self.records.load())
        found = [f for f in found if self.planner.owner(f.pid) is None]
        now, wall = self._now(), time.time()
        for item in found:
            what = "stopping it to start afresh" if item.leftover else "adopting it"
            log.info("%s[%d]: found pid %d still running: %s", item.task, item.slot, item.pid, what)
            self.planner.adopt(item.task, item.slot, item.pid, now, wall, item.leftover)
            self._watch_foreign(item.pid)
        for pid in strays:
            log.warning(
                "pid %d was left running by an earlier taskforce for a task no longer in "
                "scope: stopping it",
                pid,
            )
            self._terminate_stray(pid)

    def _terminate_stray(self, pid: int) -> None:
        """SIGTERM a process no task owns, SIGKILL it after the stop timeout.

        taskforce does not exit before its strays are gone: they are its to clean up.
        """
        identity = identify(pid)
        if identity is None or pid in self._strays:
            return
        process.signal_group(pid, signal.SIGTERM, or_process=True)
        timeout = self.planner.desired.policy.stop_timeout

        def kill_if_same() -> None:
            self._strays.pop(pid, None)
            again = identify(pid)
            if again is not None and again.start_ticks == identity.start_ticks:
                log.warning("pid %d ignored SIGTERM for %gs: SIGKILL", pid, timeout)
                process.signal_group(pid, signal.SIGKILL, or_process=True)
            self._schedule()

        assert self._loop is not None
        self._strays[pid] = self._loop.call_later(timeout, kill_if_same)

    def _watch_foreign(self, pid: int) -> None:
        from taskforce.runtime.foreign import parent_of

        if parent_of(pid) != os.getpid() and self._exit_watch is not None:
            self._exit_watch.watch(pid)

    def _foreign_exit(self, pid: int) -> None:
        cause = self.confinement.exit_cause(self.planner.owner(pid))
        outcome = self.planner.exited(pid, -1, self._now(), time.time(), cause=cause)
        if outcome is not None:
            self.confinement.exited(outcome, self._leaves_nothing_behind(outcome))
            self._log_exit(pid, outcome)
        self._schedule()

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
            self._execute(SendSignal(task, slot, pid, signum, reason))

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
            argv = instance.commands[command]
            log.info("%s[%d]: running command %r (%s)", task, slot, command, reason)
            self._execute(RunCommand(task, slot, pid, argv, instance.launch, reason))

    def _running(self, task: str) -> list[tuple[int, int]]:
        state = self.planner.tasks.get(task)
        if state is None:
            return []
        return [
            (slot, inst.pid)
            for slot, inst in sorted(state.instances.items())
            if inst.pid is not None and inst.phase is Phase.RUNNING
        ]

    # ----- signals and reaping --------------------------------------------------------

    def _on_usr1(self) -> None:
        # The files taskforce logs to (--log-file), reopened after a rotation.
        reopened = 0
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.FileHandler):
                with contextlib.suppress(OSError):
                    handler.close()  # the next record opens the file at its path again
                reopened += 1
        log.info("SIGUSR1 received: %d log file(s) reopened", reopened)

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> list[int]:
        handlers: dict[int, Callable[[], None]] = {
            signal.SIGCHLD: self._reap,
            signal.SIGTERM: lambda: self._on_stop_signal("SIGTERM", Outcome.STOPPED),
            signal.SIGINT: lambda: self._on_stop_signal("SIGINT", Outcome.STOPPED),
            signal.SIGHUP: lambda: self._on_stop_signal("SIGHUP", Outcome.RESET),
            signal.SIGUSR1: self._on_usr1,
            signal.SIGUSR2: self._on_usr2,
        }
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            # Started in the background by a shell: keep ignoring interrupts as it asked.
            del handlers[signal.SIGINT]
        for signum, handler in handlers.items():
            loop.add_signal_handler(signum, handler)
        return list(handlers)

    def _on_usr2(self) -> None:
        if self.on_upgrade is None:
            log.info("SIGUSR2 ignored")
        else:
            log.info("SIGUSR2 received: upgrading in place")
            self.on_upgrade()

    def _on_stop_signal(self, name: str, outcome: Outcome) -> None:
        log.info("%s received", name)
        self.stop(outcome)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            self._on_exit(pid, status)
        if self._sweep_leaders and self._sweep_timer is None and self._loop is not None:
            # Off the restart path, and one scan of /proc for a burst of exits.
            self._sweep_timer = self._loop.call_later(_SWEEP_DELAY, self._sweep)
        self._schedule()

    def _on_exit(self, pid: int, status: int) -> None:
        error = self._spawn_reports.take(pid)
        if self._helpers.exited(pid, status, error):
            self._schedule()
            return
        if self._exit_watch is not None:
            self._exit_watch.forget(pid)
        self.output.exited(pid)  # its last words, before its exit is logged
        now = self._now()
        cause = self.confinement.exit_cause(self.planner.owner(pid))
        outcome = self.planner.exited(pid, status, now, time.time(), error, cause)
        if outcome is None:
            log.debug("reaped orphan pid %d (%s)", pid, process.describe_status(status))
            timer = self._strays.pop(pid, None)
            if timer is not None:
                timer.cancel()
            return
        # The leader is gone; whatever it left in its process group goes with it.
        if process.signal_group(pid, signal.SIGKILL):
            log.info(
                "%s: killed what pid %d left in its process group", exit_log.label(outcome), pid
            )
        if self._leaves_nothing_behind(outcome):
            self._sweep_leaders.add(pid)
        self.confinement.exited(outcome, self._leaves_nothing_behind(outcome))
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
        exclude = {*self.planner.pids(), *self._helpers}
        for pid, leader in left_behind(leaders, exclude):
            log.warning(
                "pid %d, left behind by pid %d outside its process group: stopping it", pid, leader
            )
            self._terminate_stray(pid)
        self._schedule()  # shutting down may have been waiting for this scan

    # ----- the planning pass ----------------------------------------------------------

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _schedule(self) -> None:
        if self._pass_scheduled or self._loop is None:
            return
        self._pass_scheduled = True
        self._loop.call_soon(self._pass)

    def _pass(self) -> None:
        self._pass_scheduled = False
        if self._loop is None:
            return  # run() has ended (a hand-over): the next image plans
        for _ in range(100):  # each round runs what the previous round's facts allow
            plan = self.planner.plan(self._now())
            if not plan.actions:
                # A pass with nothing to do may still find an instance steady again.
                self._report_recovered(plan.recovered)
                break
            starts: list[Start] = []
            for action in plan.actions:
                if isinstance(action, Start):
                    starts.append(action)  # together, last: a burst spawns in parallel
                else:
                    self._execute(action)
            self._start_all(starts)
            self._report_recovered(plan.recovered)
        self._set_timer(plan.next_deadline)
        if plan.pid_version != self._records_version:
            self._records_version = plan.pid_version
            self.records.update(self.planner.pid_owners())
        if self.on_change is not None:
            self.on_change()
        if self.planner.shutting_down and self._idle():
            assert self._done is not None
            if not self._done.done():
                self._done.set_result(self._outcome)

    def _report_recovered(self, recovered: Sequence[tuple[str, int]]) -> None:
        for task, slot in recovered:
            log.info("%s[%d]: running steadily again", task, slot)
            self.emit("recovered", task, "running steadily again", instance=slot)

    def _idle(self) -> bool:
        busy = self._helpers or self._strays or self._sweep_timer is not None
        return not (busy or self.planner.has_processes())

    def _set_timer(self, when: float | None) -> None:
        if when == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = when
        if when is not None and self._loop is not None:
            self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self._schedule()

    # ----- carrying out actions -------------------------------------------------------

    def _execute(self, action: Action) -> None:
        if isinstance(action, Start):
            self._start(action)
        elif isinstance(action, Stop):
            self._stop(action)
        elif isinstance(action, Kill):
            log.warning(
                "%s[%d]: pid %d %s: SIGKILL", action.task, action.slot, action.pid, action.reason
            )
            process.signal_group(action.pid, signal.SIGKILL, or_process=True)
            self.confinement.kill(action.task, action.slot)
            self._helpers.kill_for(action.task, action.slot)
        elif isinstance(action, SendSignal):
            log.info(
                "%s[%d]: sending %s to pid %d (%s)",
                action.task,
                action.slot,
                signal.Signals(action.signal).name,
                action.pid,
                action.reason,
            )
            process.signal_process(action.pid, action.signal)
        elif isinstance(action, LookForPid):
            self._look_for_pid(action)
        elif isinstance(action, Check):
            self._check(action)
        elif isinstance(action, Probe):
            self._probe(action)
        elif isinstance(action, Release):
            log.info("%s[%d]: leaving pid %d running (adopt)", action.task, action.slot, action.pid)
            if self._exit_watch is not None:
                self._exit_watch.forget(action.pid)
            identity = identify(action.pid)
            if identity is not None:
                self._kept.append(
                    ProcessRecord(action.task, action.slot, action.pid, identity.start_ticks)
                )
                self.records.keep(self._kept)
        elif isinstance(action, RunCommand):
            base = action.launch
            launch = LaunchSpec(
                action.argv[0], action.argv, base.env, base.cwd, base.user, base.group
            )
            pid_value = str(action.pid) if action.pid is not None else ""
            self._helpers.run(action.task, action.slot, launch, pid_value, action.reason)

    def _start(self, action: Start) -> None:
        self._start_all([action])

    def _start_all(self, actions: Sequence[Start]) -> None:
        # In slices: each prepared start holds its output pipe open until it is spawned.
        for first in range(0, len(actions), _START_SLICE):
            prepared: list[tuple[Start, Stdio, process.Job]] = []
            for action in actions[first : first + _START_SLICE]:
                stdio = self.output.stdio(action.spec.output, self._devnull)
                launch, fds = action.spec.launch, tuple[int, ...]()
                try:
                    if launch.sockets:
                        launch, fds = self._with_sockets(action.task, launch)
                    job = process.prepare(
                        launch,
                        stdin=self._devnull,
                        stdout=stdio.stdout,
                        stderr=stdio.stderr,
                        fds=fds,
                        cgroups=self.confinement.procs_for(
                            action.task,
                            action.slot,
                            action.spec.launch.cgroup,
                            self._memory_restart_of(action.task),
                        ),
                    )
                except (SpawnError, OSError) as exc:
                    self._start_failed(action, stdio, exc)
                    continue
                prepared.append((action, stdio, job))
            results = process.run_jobs([job for _, _, job in prepared])
            for (action, stdio, _), result in zip(prepared, results, strict=True):
                if isinstance(result, SpawnError):
                    self._start_failed(action, stdio, result)
                else:
                    self._started(action, stdio, result)

    def _with_sockets(self, task: str, launch: LaunchSpec) -> tuple[LaunchSpec, tuple[int, ...]]:
        """The launch spec with the socket-activation environment, and the descriptors of
        the task's held sockets (bound now if need be: SpawnError if one cannot be)."""
        fds = tuple(self.sockets.fds(task, launch.sockets))
        env = launch.env + activation_env(launch.sockets, TASK_PID_MARKER)
        return dataclasses.replace(launch, env=env), fds

    def _memory_restart_of(self, task: str) -> int | None:
        spec = self.planner.desired.tasks.get(task)
        return spec.memory_restart if spec is not None else None

    def _start_failed(self, action: Start, stdio: Stdio, exc: Exception) -> None:
        stdio.abandon()
        outcome = self.planner.start_failed(
            action.task, action.slot, self._now(), time.time(), str(exc)
        )
        self._log_exit(None, outcome)

    def _started(self, action: Start, stdio: Stdio, spawned: process.Spawned) -> None:
        stdio.attach(action.task, action.slot, spawned.pid)
        self.planner.started(
            action.task, action.slot, spawned.pid, self._now(), time.time(), spawned.executable
        )
        self._spawn_reports.watch(spawned)
        spec = self.planner.desired.tasks.get(action.task)
        if spec is not None:
            interval = self.planner.desired.policy.memory_check_interval
            self.confinement.started(spec, action.slot, spawned.pid, interval)
        log.info(
            "%s[%d]: started pid %d (%s): %s",
            action.task,
            action.slot,
            spawned.pid,
            action.reason,
            " ".join(action.spec.launch.argv),
        )

    def _look_for_pid(self, action: LookForPid) -> None:
        state = self.planner.tasks[action.task]
        inst = state.instances[action.slot]
        found = find_daemon(action.pidfile, action.program, inst.started_at, action.argv)
        now, wall = self._now(), time.time()
        if isinstance(found, tuple):
            pid, child = found
            self.planner.found_pid(action.task, action.slot, pid, now, wall, child)
            log.info(
                "%s[%d]: daemon pid %d found through %s",
                action.task,
                action.slot,
                pid,
                action.pidfile,
            )
            if not child:
                self._watch_foreign(pid)
            return
        key = (action.task, action.slot)
        if "names pid" in found and self._pidfile_doubts.get(key) != found:
            # A pidfile naming the wrong process is worth saying at once, and once.
            self._pidfile_doubts[key] = found
            log.warning("%s[%d]: %s: not taking it for the daemon", action.task, action.slot, found)
        outcome = self.planner.pid_not_found(action.task, action.slot, now, wall)
        if outcome is not None:
            self._pidfile_doubts.pop(key, None)
            log.warning("%s[%d]: %s", action.task, action.slot, found)
            self._log_exit(None, outcome)

    def _probe(self, action: Probe) -> None:
        def report(error: str | None) -> None:
            label = f"{action.task}[{action.slot}]"
            if action.live:
                why = self.planner.live_result(
                    action.task, action.slot, action.pid, error, self._now()
                )
                if why is not None:
                    log.warning(
                        "%s: pid %d is unhealthy: %s: restarting it", label, action.pid, why
                    )
                    self.emit("unhealthy", action.task, why, instance=action.slot, pid=action.pid)
                elif error is not None:
                    log.info("%s: liveness probe of pid %d failed: %s", label, action.pid, error)
            else:
                ok = error is None
                self.planner.probe_result(action.task, action.slot, action.pid, ok, self._now())
                if ok:
                    log.info("%s: pid %d is ready", label, action.pid)
            self._schedule()

        timeout = action.timeout or readiness.ATTEMPT_TIMEOUT
        if action.kind == "pidfile":
            report(readiness.pidfile_probe(action.target))
        elif action.kind in ("tcp", "http"):
            probe = readiness.tcp_probe if action.kind == "tcp" else readiness.http_probe
            assert self._loop is not None
            task = self._loop.create_task(probe(action.target, timeout))
            self._probes.add(task)

            def done(finished: asyncio.Task[str | None]) -> None:
                self._probes.discard(finished)
                if not finished.cancelled():
                    failure = finished.exception()
                    report(f"probe failed: {failure}" if failure else finished.result())

            task.add_done_callback(done)
        elif action.command is not None:
            state = self.planner.tasks.get(action.task)
            inst = state.instances.get(action.slot) if state else None
            if inst is None or inst.spec is None:
                return
            base = inst.spec.launch
            argv = action.command
            launch = LaunchSpec(argv[0], argv, base.env, base.cwd, base.user, base.group)
            helper = self._helpers.run(
                action.task,
                action.slot,
                launch,
                str(action.pid),
                "liveness probe" if action.live else "ready probe",
                lambda s: report(None if s == 0 else f"probe command {process.describe_status(s)}"),
                # A liveness probe has its own timeout; a readiness one is given longer.
                deadline=timeout if action.live else readiness.ATTEMPT_TIMEOUT * 5,
            )
            if helper is None:
                report("probe command could not run")

    def _check(self, action: Check) -> None:
        def report(ok: bool, detail: str) -> None:
            self.planner.check_result(action.task, action.slot, action.pid, ok, self._now(), detail)
            if not ok:
                log.warning(
                    "%s[%d]: check of pid %d failed: %s",
                    action.task,
                    action.slot,
                    action.pid,
                    detail,
                )
            self._schedule()

        if action.command is None:
            alive = identify(action.pid) is not None
            report(alive, "" if alive else f"pid {action.pid} is not running")
            return
        state = self.planner.tasks.get(action.task)
        inst = state.instances.get(action.slot) if state else None
        if inst is None or inst.spec is None:
            return
        base = inst.spec.launch
        launch = LaunchSpec(
            action.command[0], action.command, base.env, base.cwd, base.user, base.group
        )

        def finished(status: int) -> None:
            ok = status == 0
            report(ok, "" if ok else f"check command {process.describe_status(status)}")

        def too_slow(pid: int) -> None:
            log.warning(
                "%s[%d]: check command took over %gs: killing it",
                action.task,
                action.slot,
                action.timeout,
            )
            process.signal_group(pid, signal.SIGKILL)

        pid = self._helpers.run(
            action.task,
            action.slot,
            launch,
            str(action.pid),
            "check",
            finished,
            deadline=action.timeout,
            on_late=too_slow,
        )
        if pid is None:
            report(False, "check command could not run")

    def _stop(self, action: Stop) -> None:
        label = f"{action.task}[{action.slot}]"
        if action.command is not None:
            state = self.planner.tasks.get(action.task)
            inst = state.instances.get(action.slot) if state else None
            if inst is not None and inst.spec is not None:
                launch = inst.spec.launch
                stopper = LaunchSpec(
                    action.command[0],
                    action.command,
                    launch.env,
                    launch.cwd,
                    launch.user,
                    launch.group,
                )
                log.info(
                    "%s: stopping pid %d with its stop command (%s)",
                    label,
                    action.pid,
                    action.reason,
                )
                helper = self._helpers.run(
                    action.task,
                    action.slot,
                    stopper,
                    str(action.pid),
                    "stop command",
                    # It may stop its task and then hang: it gets the stop timeout too.
                    deadline=self.planner.desired.policy.stop_timeout,
                    on_late=self._helpers.kill_hung,
                )
                if helper is not None:
                    return
        signum = action.signal if action.signal is not None else signal.SIGTERM
        log.info(
            "%s: stopping pid %d with %s (%s)",
            label,
            action.pid,
            signal.Signals(signum).name,
            action.reason,
        )
        if action.signal is not None:
            process.signal_process(action.pid, signum)
        else:
            process.signal_group(action.pid, signum, or_process=True)
            self.confinement.stop(action.task, action.slot, signum)

    # ----- logging --------------------------------------------------------------------

    def emit(self, event: str, task: str | None, detail: str, **extra: object) -> None:
        """Tell whoever listens (notifications) about a state change worth a person's eye."""
        if self.on_event is not None:
            data: dict[str, object] = {
                "event": event,
                "task": task,
                "detail": detail,
                "time": time.time(),
            }
            data.update(extra)
            try:
                self.on_event(data)
            except Exception:
                log.exception("event listener failed")

    def _log_exit(self, pid: int | None, outcome: ExitOutcome) -> None:
        exit_log.log_exit(pid, outcome, self.emit)
        if self.on_exit is not None:
            self.on_exit(outcome)
