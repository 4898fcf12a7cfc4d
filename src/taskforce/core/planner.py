"""The reconciler: compare what should run with what runs, and say what to do.

Level-triggered: facts reported by the runtime (started, exited, could not start) and a
new desired state only update records; :meth:`Planner.plan` then works out, from the whole
state of the tasks concerned, which actions bring the host closer to the desired state
and when it next needs to look again. Nothing here touches the OS or reads a clock: the
runtime passes ``now`` (monotonic seconds) in.

Only tasks marked dirty are planned in a pass, so a single exit among thousands of tasks
costs a pass over that task and the tasks that require it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from taskforce.config.model import DAEMON_CONTROLS, Control, EventType
from taskforce.core.actions import Action, Check, Kill, LookForPid, Probe, Release, Start, Stop
from taskforce.core.spec import DesiredState, TaskSpec
from taskforce.core.state import ExitRecord, HistoryEntry, Instance, Phase, TaskState

# Controls whose processes are kept running and restarted when they exit.
_KEEP_RUNNING = frozenset({Control.WAIT, Control.NOWAIT, Control.ADOPT})
# The pidfile is looked at again after these many seconds, doubling up to the last.
_LOOK_FIRST, _LOOK_MAX = 0.01, 0.5
# Readiness probes back off from the task's interval up to this many seconds.
_PROBE_MAX = 2.0
# Controls whose processes run to completion once per requested run.
_RUN_TO_COMPLETION = frozenset({Control.ONCE, Control.EVENT})


@dataclass(frozen=True, slots=True)
class Plan:
    actions: tuple[Action, ...]
    # Monotonic time at which plan() must run again even if nothing happens; None: never.
    next_deadline: float | None


@dataclass(frozen=True, slots=True)
class ExitOutcome:
    """What an exit meant, for the runtime's log."""

    task: str
    slot: int
    record: ExitRecord
    failures: int
    retry_in: float  # seconds until the slot may start again (0: at once)
    restarting: bool  # the slot will be started again


class Planner:
    def __init__(self, desired: DesiredState | None = None) -> None:
        self.tasks: dict[str, TaskState] = {}
        self._desired = DesiredState()
        self._by_pid: dict[int, tuple[str, int]] = {}
        self._dirty: set[str] = set()
        self._deadlines: dict[str, float] = {}
        self._dependents: dict[str, set[str]] = {}
        self.shutting_down = False
        # Instances that ran past min_uptime after failing: (task, slot), for the runtime
        # to report; it empties the list.
        self.recovered: list[tuple[str, int]] = []
        # Changes whenever the set of task pids does (for whoever mirrors it).
        self.pid_version = 0
        if desired is not None:
            self.set_desired(desired)

    # ----- inputs ---------------------------------------------------------------------

    @property
    def desired(self) -> DesiredState:
        return self._desired

    def set_desired(self, desired: DesiredState) -> None:
        """Adopt a new desired state; the next plan() reconciles every task."""
        self._desired = desired
        self._dependents = {}
        for spec in desired.tasks.values():
            for required in spec.requires:
                self._dependents.setdefault(required, set()).add(spec.name)
        for name, spec in desired.tasks.items():
            state = self.tasks.get(name)
            if state is None:
                state = TaskState(name, generation=0 if spec.control is Control.EVENT else 1)
                self.tasks[name] = state
            state.spec = spec
        self._dirty.update(self.tasks)

    def shutdown(self) -> None:
        """Stop everything: the desired state becomes empty and stays so."""
        self.shutting_down = True
        self.set_desired(DesiredState(policy=self._desired.policy))

    def started(
        self, task: str, slot: int, pid: int, now: float, wall: float, executable: str | None = None
    ) -> None:
        state = self.tasks[task]
        inst = state.instances[slot]
        inst.phase = Phase.RUNNING
        inst.pid = pid
        inst.executable = executable
        inst.control = state.spec.control if state.spec is not None else None
        inst.launcher = inst.control in DAEMON_CONTROLS
        inst.foreign = False
        inst.started_at = now
        inst.started_wall = wall
        inst.starts += 1
        self._by_pid[pid] = (task, slot)
        self.pid_version += 1
        if state.up_since is None:
            state.up_since = now
        spec = state.spec
        inst.ready = spec is None or spec.ready is None
        inst.probes = 0
        inst.probing = False
        inst.next_probe = now + (spec.ready.interval if spec and spec.ready else 0.0)
        if inst.ready and state.ready_since is None:
            state.ready_since = now
        state.waiting_for = None
        state.history.append(HistoryEntry(wall, slot, "start", pid, ""))
        self._touch(task)

    def adopt(
        self, task: str, slot: int, pid: int, now: float, wall: float, leftover: str | None = None
    ) -> None:
        """Take charge of a live process found at start-up (from a pidfile or a record).

        With `leftover` (why), it is stopped at once and a fresh process started.
        """
        state = self.tasks[task]
        inst = state.instances.get(slot) or state.instances.setdefault(slot, Instance(slot))
        self.started(task, slot, pid, now, wall)
        inst.starts -= 1  # not started by us
        inst.launcher = False
        inst.foreign = True
        inst.spec = state.spec.instances[slot] if state.spec and slot < state.spec.count else None
        inst.next_check = now
        inst.stop_request = leftover
        if state.spec is not None and state.spec.control in _RUN_TO_COMPLETION:
            inst.ran_generation = state.generation
        state.history[-1] = HistoryEntry(wall, slot, "adopt", pid, leftover or "")

    def take_over(self, task: str, inst: Instance) -> None:
        """Track an instance restored from a snapshot (after a re-exec)."""
        assert inst.pid is not None
        self._by_pid[inst.pid] = (task, inst.slot)
        self.pid_version += 1
        self._touch(task)

    def found_pid(
        self, task: str, slot: int, pid: int, now: float, wall: float, child: bool
    ) -> None:
        """The daemon of a nowait/adopt task was found (`child`: it was reparented to us)."""
        inst = self.tasks[task].instances[slot]
        if inst.phase is not Phase.DAEMONIZING:
            return
        started_at = inst.started_at
        self.started(task, slot, pid, now, wall, inst.executable)
        inst.starts -= 1  # the start command was counted
        inst.started_at = started_at
        inst.launcher = False
        inst.foreign = not child
        inst.next_check = now + self._desired.policy.check_interval

    def pid_not_found(self, task: str, slot: int, now: float, wall: float) -> ExitOutcome | None:
        """The pidfile does not (yet) name a live daemon: look again, or give up."""
        inst = self.tasks[task].instances[slot]
        if inst.phase is not Phase.DAEMONIZING:
            return None
        if now >= inst.look_deadline:
            timeout = self._desired.policy.start_timeout
            error = f"no live process in its pidfile {timeout:g}s after the start command exited"
            record = ExitRecord(-1, now, wall, now - inst.started_at, False, error)
            return self._settle(task, inst, record, now)
        inst.looks += 1
        inst.next_look = now + min(_LOOK_MAX, _LOOK_FIRST * 2 ** (inst.looks - 1))
        self._touch(task)
        return None

    def check_result(
        self, task: str, slot: int, pid: int, ok: bool, now: float, detail: str
    ) -> None:
        state = self.tasks.get(task)
        inst = state.instances.get(slot) if state else None
        if inst is None or inst.pid != pid:
            return
        inst.checking = False
        inst.next_check = now + self._desired.policy.check_interval
        if not ok and inst.phase is Phase.RUNNING and inst.stop_request is None:
            inst.stop_request = f"check failed: {detail}"
        self._touch(task)

    def probe_result(self, task: str, slot: int, pid: int, ok: bool, now: float) -> None:
        state = self.tasks.get(task)
        inst = state.instances.get(slot) if state else None
        if state is None or inst is None or inst.pid != pid:
            return
        inst.probing = False
        if ok:
            inst.ready = True
            if state.ready_since is None:
                state.ready_since = now
            self._touch(task)
            return
        inst.probes += 1
        interval = state.spec.ready.interval if state.spec and state.spec.ready else 0.1
        inst.next_probe = now + min(_PROBE_MAX, interval * 2**inst.probes)
        self._touch(task)

    def request_stop(self, task: str, reason: str) -> int:
        """An event asks for the task's processes to stop (wait tasks then restart).

        Returns how many processes were asked. Processes already stopping are left be: a
        burst of events during one restart results in that one restart.
        """
        state = self.tasks.get(task)
        if state is None:
            return 0
        asked = 0
        for inst in state.instances.values():
            if inst.phase is Phase.RUNNING and inst.stop_request is None:
                inst.stop_request = reason
                asked += 1
        if asked:
            self._touch(task)
        return asked

    def request_run(self, task: str) -> bool:
        """An event asks a once/event task to run again (ignored while it is running)."""
        state = self.tasks.get(task)
        spec = self._desired.tasks.get(task)
        if state is None or spec is None or spec.control not in _RUN_TO_COMPLETION:
            return False
        if not self.once_done(task) and state.generation > 0:
            return False
        state.generation += 1
        self._touch(task)
        return True

    def start_failed(
        self, task: str, slot: int, now: float, wall: float, error: str
    ) -> ExitOutcome:
        """The process could not be created at all (no such program, unknown user...)."""
        inst = self.tasks[task].instances[slot]
        record = ExitRecord(status=-1, at=now, wall=wall, uptime=0.0, expected=False, error=error)
        return self._settle(task, inst, record, now)

    def exited(
        self, pid: int, status: int, now: float, wall: float, error: str | None = None
    ) -> ExitOutcome | None:
        """A process exited (reaped). Returns None for a pid that is not a task process."""
        where = self._by_pid.pop(pid, None)
        if where is None:
            return None
        self.pid_version += 1
        task, slot = where
        inst = self.tasks[task].instances[slot]
        if inst.launcher and inst.phase is Phase.RUNNING and status == 0:
            # A nowait/adopt start command that daemonized: its daemon is found next.
            inst.phase = Phase.DAEMONIZING
            inst.pid = None
            inst.launcher = False
            inst.looks = 0
            inst.next_look = now
            inst.look_deadline = now + self._desired.policy.start_timeout
            self._touch(task)
            return None
        record = ExitRecord(
            status=status,
            at=now,
            wall=wall,
            uptime=max(0.0, now - inst.started_at),
            expected=inst.phase is Phase.STOPPING,
            error=error,
        )
        return self._settle(task, inst, record, now)

    # ----- queries --------------------------------------------------------------------

    def has_processes(self) -> bool:
        """Whether any process is tracked, or about to be (a daemon being looked for)."""
        if self._by_pid:
            return True
        return any(
            inst.phase is Phase.DAEMONIZING
            for state in self.tasks.values()
            for inst in state.instances.values()
        )

    def pids(self) -> Iterable[int]:
        return self._by_pid.keys()

    def pid_owners(self) -> dict[int, tuple[str, int]]:
        return dict(self._by_pid)

    def owner(self, pid: int) -> tuple[str, int] | None:
        return self._by_pid.get(pid)

    def once_done(self, name: str) -> bool:
        """A run-to-completion task has finished every run asked of it."""
        state = self.tasks.get(name)
        spec = self._desired.tasks.get(name)
        if state is None or spec is None:
            return False
        for slot in range(spec.count):
            inst = state.instances.get(slot)
            if inst is None or inst.phase is not Phase.IDLE:
                return False
            if inst.ran_generation < state.generation:
                return False
        return True

    # ----- planning -------------------------------------------------------------------

    def plan(self, now: float) -> Plan:
        for name, due in list(self._deadlines.items()):
            if due <= now:
                self._dirty.add(name)
        actions: list[Action] = []
        while self._dirty:
            name = self._dirty.pop()
            deadline = self._plan_task(name, now, actions)
            if deadline is None:
                self._deadlines.pop(name, None)
            else:
                self._deadlines[name] = deadline
        next_deadline = min(self._deadlines.values(), default=None)
        return Plan(tuple(actions), next_deadline)

    def _plan_task(self, name: str, now: float, actions: list[Action]) -> float | None:
        state = self.tasks.get(name)
        if state is None:
            return None
        spec = self._desired.tasks.get(name)
        deadline: float | None = None
        for inst in list(state.instances.values()):
            deadline = _earliest(deadline, self._plan_process(state, spec, inst, now, actions))
        if spec is None:
            self._forget_idle(state, keep=0)
            if not state.instances:
                del self.tasks[name]
            return deadline
        self._forget_idle(state, keep=spec.count)
        if spec.control in _KEEP_RUNNING or spec.control in _RUN_TO_COMPLETION:
            deadline = _earliest(deadline, self._plan_starts(state, spec, now, actions))
        else:
            state.waiting_for = None
        return deadline

    def _plan_process(
        self,
        state: TaskState,
        spec: TaskSpec | None,
        inst: Instance,
        now: float,
        actions: list[Action],
    ) -> float | None:
        if inst.phase is Phase.DAEMONIZING:
            # Even when the task is going away, the daemon must be found: to be stopped.
            # But not for longer than a stop may take.
            if spec is None or inst.slot >= spec.count or spec.control not in DAEMON_CONTROLS:
                inst.look_deadline = min(
                    inst.look_deadline, now + self._desired.policy.stop_timeout
                )
            if now >= inst.next_look:
                pidfile = inst.spec.pidfile if inst.spec is not None else None
                program = inst.executable or (inst.spec.launch.program if inst.spec else "")
                argv = inst.spec.launch.argv if inst.spec is not None else ()
                actions.append(LookForPid(state.name, inst.slot, pidfile, program, argv))
                inst.next_look = inst.look_deadline + 1.0  # until the runtime reports
                return None
            return inst.next_look
        if inst.phase is Phase.RUNNING:
            assert inst.pid is not None
            if spec is None and self.shutting_down and inst.control is Control.ADOPT:
                # Adopted processes outlive taskforce.
                actions.append(Release(state.name, inst.slot, inst.pid))
                self._by_pid.pop(inst.pid, None)
                self.pid_version += 1
                del state.instances[inst.slot]
                return None
            reason = self._stop_reason(spec, inst, now)
            if reason is None:
                deadline: float | None = None
                if inst.failures:
                    steady_at = inst.started_at + self._desired.policy.restart.min_uptime
                    if now >= steady_at:
                        inst.failures = 0
                        self.recovered.append((state.name, inst.slot))
                    else:
                        deadline = steady_at
                if spec is not None:
                    # Changes that do not need a restart (stop command, pidfile) apply now.
                    inst.spec = spec.instances[inst.slot]
                    if spec.time_limit is not None:
                        deadline = _earliest(deadline, inst.started_at + spec.time_limit)
                    if spec.control in DAEMON_CONTROLS and not inst.launcher:
                        deadline = _earliest(deadline, self._plan_check(state, inst, now, actions))
                    if not inst.ready:
                        deadline = _earliest(deadline, self._plan_probe(state, inst, now, actions))
                return deadline
            restarting = spec is not None and spec.control in _KEEP_RUNNING
            actions.append(self._stop_action(state, inst, inst.pid, reason, restarting))
            inst.phase = Phase.STOPPING
            inst.stop_reason = reason
            inst.kill_at = now + self._desired.policy.stop_timeout
            return inst.kill_at
        if inst.phase is Phase.STOPPING and not inst.killed:
            assert inst.pid is not None and inst.kill_at is not None
            if now >= inst.kill_at:
                inst.killed = True
                timeout = self._desired.policy.stop_timeout
                actions.append(
                    Kill(state.name, inst.slot, inst.pid, f"still running {timeout:g}s after stop")
                )
                return None
            return inst.kill_at
        return None

    def _plan_check(
        self, state: TaskState, inst: Instance, now: float, actions: list[Action]
    ) -> float | None:
        if inst.checking or inst.pid is None:
            return None
        if inst.next_check is None:
            inst.next_check = now + self._desired.policy.check_interval
        if now < inst.next_check:
            return inst.next_check
        inst.checking = True
        command = inst.spec.commands.get("check") if inst.spec is not None else None
        timeout = self._desired.policy.check_timeout
        actions.append(Check(state.name, inst.slot, inst.pid, command, timeout))
        return None

    def _plan_probe(
        self, state: TaskState, inst: Instance, now: float, actions: list[Action]
    ) -> float | None:
        spec = state.spec
        if spec is None or spec.ready is None or inst.pid is None or inst.launcher:
            return None
        ready = spec.ready
        timeout_at = inst.started_at + ready.timeout if ready.timeout is not None else None
        if timeout_at is not None and now >= timeout_at and inst.stop_request is None:
            inst.stop_request = f"not ready {ready.timeout:g}s after it started"
            self._touch(state.name)
            return None
        if inst.probing:
            return timeout_at
        if now < inst.next_probe:
            return _earliest(inst.next_probe, timeout_at)
        inst.probing = True
        target = ready.target
        if ready.kind == "pidfile":
            target = (inst.spec.pidfile if inst.spec is not None else None) or ""
        command = inst.spec.ready_command if inst.spec is not None else None
        actions.append(Probe(state.name, inst.slot, inst.pid, ready.kind, target, command))
        return timeout_at

    def _stop_reason(self, spec: TaskSpec | None, inst: Instance, now: float) -> str | None:
        if spec is None:
            return "taskforce is shutting down" if self.shutting_down else "no longer in scope"
        if spec.control in (Control.OFF, Control.SUSPEND):
            return f"control is {spec.control}"
        if inst.slot >= spec.count:
            return f"count reduced to {spec.count}"
        if inst.stop_request is not None:
            return inst.stop_request
        if spec.time_limit is not None and now - inst.started_at >= spec.time_limit:
            return f"time limit of {spec.time_limit:g}s reached"
        if inst.control is not None and _category(inst.control) != _category(spec.control):
            return f"control changed from {inst.control} to {spec.control}"
        changed = inst.spec is not None and inst.spec.launch != spec.instances[inst.slot].launch
        if changed and spec.control in _KEEP_RUNNING:
            return "configuration changed"
        return None

    def _stop_action(
        self, state: TaskState, inst: Instance, pid: int, reason: str, restarting: bool
    ) -> Stop:
        spec = state.spec
        if restarting and spec is not None:
            for event in spec.events:
                if event.type is not EventType.RESTART:
                    continue
                if event.signal is not None:
                    return Stop(state.name, inst.slot, pid, reason, signal=event.signal)
                if event.command is not None and inst.spec is not None:
                    command = inst.spec.commands.get(event.command)
                    if command is not None:
                        return Stop(state.name, inst.slot, pid, reason, command=command)
        command = inst.spec.commands.get("stop") if inst.spec is not None else None
        return Stop(state.name, inst.slot, pid, reason, command=command)

    def _plan_starts(
        self, state: TaskState, spec: TaskSpec, now: float, actions: list[Action]
    ) -> float | None:
        deadline: float | None = None
        blocked: str | None = None
        once = spec.control in _RUN_TO_COMPLETION
        for slot in range(spec.count):
            inst = state.instances.get(slot)
            if inst is None:
                inst = state.instances[slot] = Instance(slot)
            if inst.phase is not Phase.IDLE:
                continue
            if once and inst.ran_generation >= state.generation:
                continue
            if inst.not_before > now:
                deadline = _earliest(deadline, inst.not_before)
                blocked = blocked or "backing off after failures"
                continue
            waiting, when = self._requires_blocker(spec, now)
            if waiting is not None:
                state.waiting_for = waiting
                return _earliest(deadline, when)
            inst.phase = Phase.STARTING
            inst.spec = spec.instances[slot]
            if once:
                inst.ran_generation = state.generation
            actions.append(Start(spec.name, slot, spec.instances[slot], self._start_reason(inst)))
        state.waiting_for = blocked
        return deadline

    @staticmethod
    def _start_reason(inst: Instance) -> str:
        if inst.last_exit is None:
            return "starting"
        if inst.last_exit.expected:
            return "restarting after stop"
        return "restarting after exit"

    def _requires_blocker(self, spec: TaskSpec, now: float) -> tuple[str | None, float | None]:
        """Why `spec` may not start yet, and when that could change by itself."""
        for required in spec.requires:
            other = self._desired.tasks.get(required)
            if other is None:
                # Out of scope on this host (or not resolvable): nothing to wait for.
                continue
            if other.control is Control.SUSPEND:
                continue
            if other.control is Control.OFF:
                return f"requires {required}, whose control is off", None
            if other.control in _RUN_TO_COMPLETION:
                if not self.once_done(required):
                    return f"waiting for {required} to finish", None
                continue
            required_state = self.tasks[required]
            if required_state.up_since is None:
                return f"waiting for {required} to start", None
            if required_state.ready_since is None:
                return f"waiting for {required} to be ready", None
            ready_at = required_state.ready_since + other.start_delay
            if now < ready_at:
                return f"waiting for {required}'s start_delay", ready_at
        return None, None

    # ----- bookkeeping ----------------------------------------------------------------

    def _settle(self, task: str, inst: Instance, record: ExitRecord, now: float) -> ExitOutcome:
        """Record the end of a process (or of a failed start) and its restart policy."""
        state = self.tasks[task]
        policy = self._desired.policy.restart
        failed = record.error is not None or (
            not record.expected and record.uptime < policy.min_uptime
        )
        if failed:
            inst.failures += 1
            delay = min(
                policy.max_delay, policy.initial_delay * policy.factor ** (inst.failures - 1)
            )
        else:
            inst.failures = 0
            delay = 0.0
        if record.error is not None and inst.ran_generation > 0:
            # A run that never happened does not count as the once run.
            inst.ran_generation -= 1
        inst.not_before = now + delay
        if record.error is not None:
            entry = HistoryEntry(record.wall, inst.slot, "failed", None, record.error)
        else:
            entry = HistoryEntry(record.wall, inst.slot, "exit", inst.pid, str(record.status))
        state.history.append(entry)
        inst.last_exit = record
        inst.phase = Phase.IDLE
        inst.pid = None
        inst.kill_at = None
        inst.killed = False
        inst.stop_reason = None
        inst.stop_request = None
        inst.executable = None
        inst.control = None
        inst.launcher = False
        inst.foreign = False
        inst.next_check = None
        inst.checking = False
        inst.ready = False
        inst.probing = False
        if state.running() == 0 and state.up_since is not None:
            state.up_since = None
            state.ready_since = None
            self._fire_onexit(state)
        self._touch(task)
        spec = self._desired.tasks.get(task)
        restarting = (
            spec is not None
            and inst.slot < spec.count
            and (spec.control in _KEEP_RUNNING or record.error is not None)
        )
        return ExitOutcome(task, inst.slot, record, inst.failures, delay, restarting)

    def _fire_onexit(self, state: TaskState) -> None:
        spec = self._desired.tasks.get(state.name)
        if spec is None or self.shutting_down:
            return
        for target in spec.onexit_start:
            target_state = self.tasks.get(target)
            if target_state is None or target not in self._desired.tasks:
                continue
            if self.once_done(target):
                target_state.generation += 1
            self._touch(target)

    def _forget_idle(self, state: TaskState, keep: int) -> None:
        for slot in [s for s, i in state.instances.items() if s >= keep and i.phase is Phase.IDLE]:
            del state.instances[slot]

    def _touch(self, task: str) -> None:
        self._dirty.add(task)
        self._dirty.update(self._dependents.get(task, ()))


def _category(control: str) -> bool:
    """True for controls that keep processes running, False for run-to-completion ones."""
    return control in _KEEP_RUNNING


def _earliest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
