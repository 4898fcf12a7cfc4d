"""Carrying out the planner's actions: start, stop, kill, check, probe, run a command, send
a signal, look for a daemon's pid, leave a process running. Each result goes back to the
planner as a fact."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import signal
from collections.abc import Callable, Sequence

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
from taskforce.core.sockets import activation_env
from taskforce.core.spec import TASK_PID_MARKER, LaunchSpec
from taskforce.runtime.loop import readiness
from taskforce.runtime.loop.collaborators import Collaborators, LoopPart
from taskforce.runtime.loop.exit_log import Emit
from taskforce.runtime.loop.reaper import Reaper
from taskforce.runtime.output.capture import Stdio
from taskforce.runtime.processes.daemons import find_daemon
from taskforce.runtime.processes.identity import identify
from taskforce.runtime.processes.records import ProcessRecord, Records
from taskforce.runtime.processes.runner import StartRequest
from taskforce.runtime.processes.sockets import SocketHolder
from taskforce.runtime.processes.spawn import Spawned, SpawnError, describe_status
from taskforce.runtime.processes.task_commands import command_launch

log = logging.getLogger("taskforce")

# Starts prepared at once at most (each holds its output pipe until spawned).
_START_SLICE = 128
# A slice of starts being spawned, and what waits for their outcomes.
# A slice being spawned: its starts, the wait for their outcomes, and the time read
# before any of its forks (what a nowait/adopt daemon is judged against).
Spawning = tuple[list[tuple[Start, Stdio]], Callable[[], list[Spawned | Exception]], float]


class Executor(LoopPart):
    """Does what the planner decided; `emit` tells of an unhealthy process."""

    def __init__(
        self,
        shared: Collaborators,
        records: Records,
        reaper: Reaper,
        sockets: SocketHolder,
        emit: Emit,
    ) -> None:
        super().__init__(shared)
        self._records = records
        self._reaper = reaper
        self._sockets = sockets
        self._emit = emit
        self.devnull = -1  # opened by the supervisor as it runs
        # Processes left running on purpose (adopt tasks at exit), recorded for the next one.
        self.kept: list[ProcessRecord] = []
        self._probes: set[asyncio.Task[str | None]] = set()
        # Why a nowait/adopt pidfile was last doubted, per instance (logged once).
        self._pidfile_doubts: dict[tuple[str, int], str] = {}

    def execute(self, action: Action) -> None:
        if isinstance(action, Start):
            self.start_all([action])
        elif isinstance(action, Stop):
            self.stop_all([action])
        elif isinstance(action, Kill):
            log.warning(
                "%s[%d]: pid %d %s: SIGKILL", action.task, action.slot, action.pid, action.reason
            )
            self._runner.signal_group(action.pid, signal.SIGKILL, or_process=True)
            self._confinement.kill(action.task, action.slot)
            self._commands.kill_for(action.task, action.slot)
        elif isinstance(action, SendSignal):
            log.info(
                "%s[%d]: sending %s to pid %d (%s)",
                action.task,
                action.slot,
                signal.Signals(action.signal).name,
                action.pid,
                action.reason,
            )
            self._runner.signal_process(action.pid, action.signal)
        elif isinstance(action, LookForPid):
            self._look_for_pid(action)
        elif isinstance(action, Check):
            self._check(action)
        elif isinstance(action, Probe):
            self._probe(action)
        elif isinstance(action, Release):
            self._release(action)
        elif isinstance(action, RunCommand):
            launch = command_launch(action.launch, action.argv)
            pid_value = str(action.pid) if action.pid is not None else ""
            self._commands.run(action.task, action.slot, launch, pid_value, action.reason)

    # ----- starting -------------------------------------------------------------------

    def start_all(self, actions: Sequence[Start]) -> None:
        # A burst allocates objects that stay (each instance's state, its output and
        # records): the cyclic collector would walk them again and again as the heap grows
        # (a tenth of the CPU time of ten thousand starts). They go to the oldest
        # generation at once (freeze and unfreeze: a splice of lists, not a walk).
        collecting = len(actions) > _START_SLICE and gc.isenabled()
        if collecting:
            gc.disable()
        try:
            self._start_slices(actions)
        finally:
            if collecting:
                gc.freeze()
                gc.unfreeze()
                gc.enable()

    def _start_slices(self, actions: Sequence[Start]) -> None:
        """In slices: each prepared start holds its output pipe open until it is spawned.
        A slice spawns (on threads: spawn.begin_jobs) while this thread prepares the next
        one and takes in the last one's outcomes, rather than waiting meanwhile for the
        children's execs."""
        nothing: Spawning = ([], list, 0.0)
        spawning = nothing
        try:
            for first in range(0, len(actions), _START_SLICE):
                batch, requests = self._prepare_starts(actions[first : first + _START_SLICE])
                done, spawning = spawning, nothing
                results = done[1]()
                try:
                    launched_at = self._clock.monotonic()  # before any fork of the slice
                    spawning = (batch, self._runner.begin(requests), launched_at)
                finally:
                    self._outcomes(done[0], results, done[2])
        finally:
            results = spawning[1]()
            self._exits_due()  # the exits these starts replace, held back until now
            self._outcomes(spawning[0], results, spawning[2])

    def _prepare_starts(
        self, actions: Sequence[Start]
    ) -> tuple[list[tuple[Start, Stdio]], list[StartRequest]]:
        batch: list[tuple[Start, Stdio]] = []
        requests: list[StartRequest] = []
        for action in actions:
            stdio = self._output.stdio(action.spec.output, self.devnull)
            try:
                request = self._request(action, stdio)
            except (SpawnError, OSError) as exc:
                self._start_failed(action, stdio, exc)
                continue
            batch.append((action, stdio))
            requests.append(request)
        return batch, requests

    def _outcomes(
        self,
        batch: list[tuple[Start, Stdio]],
        results: list[Spawned | Exception],
        launched_at: float,
    ) -> None:
        for (action, stdio), result in zip(batch, results, strict=True):
            if isinstance(result, Exception):
                self._start_failed(action, stdio, result)
            else:
                self._started(action, stdio, result, launched_at)

    def _request(self, action: Start, stdio: Stdio) -> StartRequest:
        """What starting the instance's process takes: its held sockets (bound now if need
        be: SpawnError if one cannot be) and its cgroups (made now)."""
        launch, fds = action.spec.launch, tuple[int, ...]()
        if launch.sockets:
            fds = tuple(self._sockets.fds(action.task, launch.sockets))
            env = launch.env + activation_env(launch.sockets, TASK_PID_MARKER)
            launch = dataclasses.replace(launch, env=env)
        spec = self.planner.desired.tasks.get(action.task)
        cgroups = self._confinement.procs_for(
            action.task,
            action.slot,
            action.spec.launch.cgroup,
            spec.memory_restart if spec is not None else None,
        )
        return StartRequest(launch, self.devnull, stdio.stdout, stdio.stderr, fds, cgroups)

    def _start_failed(self, action: Start, stdio: Stdio, exc: Exception) -> None:
        stdio.abandon()
        now, wall = self._clock.monotonic(), self._clock.wall()
        outcome = self.planner.start_failed(action.task, action.slot, now, wall, str(exc))
        self._log_exit(None, outcome)

    def _started(self, action: Start, stdio: Stdio, spawned: Spawned, launched_at: float) -> None:
        stdio.attach(action.task, action.slot, spawned.pid)
        now, wall = self._clock.monotonic(), self._clock.wall()
        self.planner.started(
            action.task, action.slot, spawned.pid, now, wall, spawned.executable, launched_at
        )
        self._reports.watch(spawned)
        spec = self.planner.desired.tasks.get(action.task)
        if spec is not None:
            interval = self.planner.desired.policy.memory_check_interval
            self._confinement.started(spec, action.slot, spawned.pid, interval)
        log.info(
            "%s[%d]: started pid %d (%s): %s",
            action.task,
            action.slot,
            spawned.pid,
            action.reason,
            " ".join(action.spec.launch.argv),
        )

    # ----- stopping and leaving -------------------------------------------------------

    def stop_all(self, actions: Sequence[Stop]) -> None:
        """Every process group first, then the other members of each instance's cgroup:
        reading a cgroup's members takes a while, and no instance waits for another's."""
        self._runner.expect_exits([action.pid for action in actions])
        cgroups = [(action, signum) for action in actions if (signum := self._stop(action))]
        for action, signum in cgroups:
            self._confinement.stop(action.task, action.slot, signum, action.pid)

    def _stop(self, action: Stop) -> int | None:
        """Stop the instance's process (its group); the signal its cgroup is to get too."""
        label = f"{action.task}[{action.slot}]"
        launch = None if action.command is None else self._task_launch(action.task, action.slot)
        if action.command is not None and launch is not None:
            log.info(
                "%s: stopping pid %d with its stop command (%s)", label, action.pid, action.reason
            )
            helper = self._run_instance_command(
                action,
                launch,
                action.command,
                "stop command",
                # It may stop its task and then hang: it gets the stop timeout too.
                deadline=self.planner.desired.policy.stop_timeout,
                on_late=self._commands.kill_hung,
            )
            if helper is not None:
                return None
        signum = action.signal if action.signal is not None else signal.SIGTERM
        log.info(
            "%s: stopping pid %d with %s (%s)",
            label,
            action.pid,
            signal.Signals(signum).name,
            action.reason,
        )
        if action.signal is not None:
            self._runner.signal_process(action.pid, signum)
            return None
        self._runner.signal_group(action.pid, signum, or_process=True)
        return signum

    def _release(self, action: Release) -> None:
        log.info("%s[%d]: leaving pid %d running (adopt)", action.task, action.slot, action.pid)
        self._reaper.forget(action.pid)
        identity = identify(action.pid)
        if identity is not None:
            self.kept.append(
                ProcessRecord(action.task, action.slot, action.pid, identity.start_ticks)
            )
            self._records.keep(self.kept)

    # ----- daemons, checks and probes -------------------------------------------------

    def _look_for_pid(self, action: LookForPid) -> None:
        state = self.planner.tasks[action.task]
        inst = state.instances[action.slot]
        found = find_daemon(action.pidfile, action.program, inst.launched_at, action.argv)
        now, wall = self._clock.monotonic(), self._clock.wall()
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
                self._reaper.watch_foreign(pid)
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
        """A readiness probe, or a liveness probe (`action.live`) whose failures in a row
        may restart the process."""

        def report(error: str | None) -> None:
            label = f"{action.task}[{action.slot}]"
            now = self._clock.monotonic()
            if action.live:
                why = self.planner.live_result(action.task, action.slot, action.pid, error, now)
                if why is not None:
                    log.warning(
                        "%s: pid %d is unhealthy: %s: restarting it", label, action.pid, why
                    )
                    self._emit("unhealthy", action.task, why, instance=action.slot, pid=action.pid)
                elif error is not None:
                    log.info("%s: liveness probe of pid %d failed: %s", label, action.pid, error)
            else:
                ok = error is None
                self.planner.probe_result(action.task, action.slot, action.pid, ok, now)
                if ok:
                    log.info("%s: pid %d is ready", label, action.pid)
            self._schedule()

        timeout = action.timeout or readiness.ATTEMPT_TIMEOUT
        if action.kind == "pidfile":
            report(readiness.pidfile_probe(action.target))
        elif action.kind in ("tcp", "http"):
            probe = readiness.tcp_probe if action.kind == "tcp" else readiness.http_probe
            task = asyncio.get_running_loop().create_task(probe(action.target, timeout))
            self._probes.add(task)

            def done(finished: asyncio.Task[str | None]) -> None:
                self._probes.discard(finished)
                if not finished.cancelled():
                    failure = finished.exception()
                    report(f"probe failed: {failure}" if failure else finished.result())

            task.add_done_callback(done)
        elif action.command is not None:
            launch = self._task_launch(action.task, action.slot)
            if launch is None:
                return
            helper = self._run_instance_command(
                action,
                launch,
                action.command,
                "liveness probe" if action.live else "ready probe",
                lambda s: report(None if s == 0 else f"probe command {describe_status(s)}"),
                # A liveness probe has its own timeout; a readiness one is given longer.
                deadline=timeout if action.live else readiness.ATTEMPT_TIMEOUT * 5,
            )
            if helper is None:
                report("probe command could not run")

    def _check(self, action: Check) -> None:
        def report(ok: bool, detail: str) -> None:
            now = self._clock.monotonic()
            self.planner.check_result(action.task, action.slot, action.pid, ok, now, detail)
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
        launch = self._task_launch(action.task, action.slot)
        if launch is None:
            return

        def finished(status: int) -> None:
            ok = status == 0
            report(ok, "" if ok else f"check command {describe_status(status)}")

        def too_slow(pid: int) -> None:
            log.warning(
                "%s[%d]: check command took over %gs: killing it",
                action.task,
                action.slot,
                action.timeout,
            )
            self._runner.signal_group(pid, signal.SIGKILL)

        pid = self._run_instance_command(
            action,
            launch,
            action.command,
            "check",
            finished,
            deadline=action.timeout,
            on_late=too_slow,
        )
        if pid is None:
            report(False, "check command could not run")

    def _run_instance_command(
        self,
        action: Stop | Probe | Check,
        launch: LaunchSpec,
        command: tuple[str, ...],
        what: str,
        on_exit: Callable[[int], None] | None = None,
        *,
        deadline: float,
        on_late: Callable[[int], None] | None = None,
    ) -> int | None:
        """Run `command` for the action's instance as its task runs (`launch`), with
        Task_pid the instance's process: the helper's pid, or None if it could not run."""
        return self._commands.run(
            action.task,
            action.slot,
            command_launch(launch, command),
            str(action.pid),
            what,
            on_exit,
            deadline=deadline,
            on_late=on_late,
        )

    def _task_launch(self, task: str, slot: int) -> LaunchSpec | None:
        """How the instance's process was started (its commands run alike), if it still runs."""
        state = self.planner.tasks.get(task)
        inst = state.instances.get(slot) if state else None
        if inst is None or inst.spec is None:
            return None
        return inst.spec.launch
