# Over 450 lines: the reconciler's one state machine; the policies it consults are beside it.
"""The reconciler: compare what should run with what runs, and say what to do.

Level-triggered: facts reported by the runtime (started, exited, could not start) and a
new desired state only update records; :meth:`Planner.plan` then works out, from the whole
state of the tasks concerned, which actions bring the host closer to the desired state
and when it next needs to look again. Nothing here touches the OS or reads a clock: the
runtime passes ``now`` (monotonic seconds) in.

Only tasks marked dirty are planned in a pass, so a single exit among thousands of tasks
costs a pass over that task and the tasks that require it.

This module holds the per-instance state machine (the facts it takes in, the pass that
plans each task) and composes the rest: starting idle slots (:mod:`~taskforce.core.starting`)
and stopping running ones (:mod:`~taskforce.core.stopping`), the restart policy
(:mod:`~taskforce.core.restart`), `requires` and `onexit` (:mod:`~taskforce.core.ordering`),
nowait/adopt daemons (:mod:`~taskforce.core.daemons`) and readiness probes
(:mod:`~taskforce.core.readiness`). Everything a pass decides is in the :class:`Plan` it
returns.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace

from taskforce.core import (
    daemons,
    liveness,
    ordering,
    readiness,
    restart,
    rolling,
    starting,
    stopping,
)
from taskforce.core.actions import Action, Release
from taskforce.core.deadline import earliest
from taskforce.core.spec import DesiredState, InstanceSpec, TaskSpec, differing, restart_policy
from taskforce.core.state import ExitRecord, HistoryEntry, Instance, Phase, TaskState
from taskforce.core.vocabulary import (
    DAEMON,
    KEEP_RUNNING,
    RUN_TO_COMPLETION,
    Control,
    Overlap,
    RestartPolicy,
)

# Tasks looked at in one pass beyond which their set is made anew after it (see plan()).
_MANY = 1000


@dataclass(frozen=True, slots=True)
class Plan:
    actions: tuple[Action, ...]
    # Monotonic time at which plan() must run again even if nothing happens; None: never.
    next_deadline: float | None
    # Instances that ran past min_uptime after failing, found in this pass: (task, slot).
    recovered: tuple[tuple[str, int], ...] = ()
    # Changes whenever the set of task pids does (for whoever mirrors pid_owners()).
    pid_version: int = 0


@dataclass(frozen=True, slots=True)
class ExitOutcome:
    """What an exit meant, for the runtime's log."""

    task: str
    slot: int
    record: ExitRecord
    failures: int
    retry_in: float  # seconds until the slot may start again (0: at once)
    failed: bool  # a failure for the restart policy (it counts towards the backoff)
    restarting: bool  # the slot will be started again
    gave_up: bool = False  # restart.max_failures reached: the task is failed


class Planner:
    def __init__(self, desired: DesiredState | None = None) -> None:
        self.tasks: dict[str, TaskState] = {}
        self._desired = DesiredState()
        self._by_pid: dict[int, tuple[str, int]] = {}
        self._dirty: set[str] = set()
        self._deadlines: dict[str, float] = {}
        self._dependents: dict[str, set[str]] = {}
        self.shutting_down = False
        # Instances found steady again during the current pass (returned in its Plan).
        self._recovered: list[tuple[str, int]] = []
        self._pid_version = 0
        if desired is not None:
            self.set_desired(desired)

    # ----- inputs ---------------------------------------------------------------------

    @property
    def desired(self) -> DesiredState:
        return self._desired

    def set_desired(self, desired: DesiredState) -> None:
        """Adopt a new desired state; the next plan() reconciles every task it changes.

        A task whose spec is the very object it had (a reload reuses the specs of tasks
        that did not change) is looked at again only if a task it requires changed; when
        the policy or the tasks in scope change, every task is. Only the tasks that differ
        from the previous desired state are gone through (see :func:`differing`).
        """
        previous = self._desired
        self._desired = desired
        differ = differing(previous, desired)
        if _links_change(previous, desired, differ):
            self._dependents = ordering.dependents(desired)
        every = desired.policy != previous.policy or desired.out_of_scope != previous.out_of_scope
        changed: list[str] = []
        tasks = desired.tasks
        for name in self._in_order(differ, tasks):
            spec = tasks[name]
            state = self.tasks.get(name)
            if state is None:
                state = TaskState(name, generation=_first_generation(spec))
                self.tasks[name] = state
            elif state.spec is spec:
                continue
            elif state.spec != spec:
                self._revive(state)  # a changed task is given another chance
            state.spec = spec
            changed.append(name)
        if every:
            self._dirty.update(self.tasks)
            return
        changed.extend(name for name in self.tasks.keys() - tasks.keys())  # removed
        for name in changed:
            self._touch(name)

    def _in_order(self, names: Collection[str], tasks: Mapping[str, TaskSpec]) -> list[str]:
        """Those of `names` in `tasks`, the new ones in the order of `tasks` (which the
        states of tasks are listed in)."""
        found = [name for name in names if name in tasks]
        new = [name for name in found if name not in self.tasks]
        if len(new) < 2:
            return found
        wanted = set(new)
        return [*(name for name in found if name in self.tasks), *(n for n in tasks if n in wanted)]

    def shutdown(self) -> None:
        """Stop everything: the desired state becomes empty and stays so."""
        self.shutting_down = True
        self.set_desired(DesiredState(policy=self._desired.policy))

    def started(
        self,
        task: str,
        slot: int,
        pid: int,
        now: float,
        wall: float,
        executable: str | None = None,
        launched_at: float | None = None,
    ) -> None:
        """Process `pid` runs for the slot, forked after `launched_at` (None: `now`)."""
        state = self.tasks[task]
        inst = state.instances[slot]
        inst.phase = Phase.RUNNING
        inst.pid = pid
        inst.executable = executable
        inst.control = state.spec.control if state.spec is not None else None
        inst.launcher = inst.control in DAEMON
        inst.foreign = False
        inst.started_at = now
        inst.launched_at = now if launched_at is None else launched_at
        inst.started_wall = wall
        inst.starts += 1
        self._by_pid[pid] = (task, slot)
        self._pid_version += 1
        if state.up_since is None:
            state.up_since = now
        readiness.arm(state, inst, state.spec.ready if state.spec is not None else None, now)
        liveness.arm(inst, state.spec.live if state.spec is not None else None, now)
        state.waiting = state.waiting_for = None
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
        if state.spec is not None and state.spec.control in RUN_TO_COMPLETION:
            inst.ran_generation = state.generation
        state.history[-1] = HistoryEntry(wall, slot, "adopt", pid, leftover or "")

    def take_over(self, task: str, inst: Instance) -> None:
        """Track an instance restored from a snapshot (after a re-exec)."""
        assert inst.pid is not None
        self._by_pid[inst.pid] = (task, inst.slot)
        self._pid_version += 1
        self._touch(task)

    def found_pid(
        self, task: str, slot: int, pid: int, now: float, wall: float, child: bool
    ) -> None:
        """The daemon of a nowait/adopt task was found (`child`: it was reparented to us)."""
        inst = self.tasks[task].instances[slot]
        if inst.phase is not Phase.DAEMONIZING:
            return
        started_at = inst.started_at
        self.started(task, slot, pid, now, wall, inst.executable, inst.launched_at)
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
        error = daemons.look_failed(inst, self._desired.policy, now)
        if error is not None:
            record = ExitRecord(-1, now, wall, now - inst.started_at, False, error)
            return self._settle(task, inst, record, now)
        self._touch(task)
        return None

    def check_result(
        self, task: str, slot: int, pid: int, ok: bool, now: float, detail: str
    ) -> None:
        state = self.tasks.get(task)
        inst = state.instances.get(slot) if state else None
        if inst is None or inst.pid != pid:
            return
        daemons.check_done(inst, ok, detail, self._desired.policy, now)
        self._touch(task)

    def probe_result(self, task: str, slot: int, pid: int, ok: bool, now: float) -> None:
        state = self.tasks.get(task)
        inst = state.instances.get(slot) if state else None
        if state is None or inst is None or inst.pid != pid:
            return
        readiness.probe_done(state, inst, ok, now)
        self._touch(task)

    def live_result(
        self, task: str, slot: int, pid: int, error: str | None, now: float
    ) -> str | None:
        """A liveness probe answered (`error`: why it failed). Returns why the process is
        now unhealthy when that failure is the last one allowed: it is then restarted."""
        state = self.tasks.get(task)
        inst = state.instances.get(slot) if state else None
        if state is None or inst is None or inst.pid != pid:
            return None
        self._touch(task)
        return liveness.probe_done(state, inst, error, now)

    def request_stop(self, task: str, reason: str, slot: int | None = None) -> int:
        """An event asks for the task's processes (or the one in `slot`) to stop (wait
        tasks then restart).

        Returns how many processes were asked. Processes already stopping are left be: a
        burst of events during one restart results in that one restart.
        """
        state = self.tasks.get(task)
        if state is None:
            return 0
        revived = 1 if self._revive(state) else 0
        spec = self._desired.tasks.get(task)
        if spec is not None and spec.rolls and slot is None:
            asked = rolling.request(state, spec, reason)
            if asked:
                self._touch(task)
            return asked + revived
        asked = revived
        for inst in state.instances.values():
            if slot is not None and inst.slot != slot:
                continue
            if inst.phase is Phase.RUNNING and inst.stop_request is None:
                inst.stop_request = reason
                asked += 1
        if asked:
            self._touch(task)
        return asked

    def request_run(self, task: str, overlap: Overlap = Overlap.SKIP) -> bool:
        """An event asks a once/event task to run again, or a failed task to start again.

        A run asked while one is going is dropped, or with Overlap.QUEUE kept for when it
        ends (one at most).
        """
        state = self.tasks.get(task)
        spec = self._desired.tasks.get(task)
        if state is None or spec is None:
            return False
        revived = self._revive(state)
        if spec.control not in RUN_TO_COMPLETION:
            return revived
        if not self.once_done(task) and state.generation > 0:
            running = max((i.ran_generation for i in state.instances.values()), default=0)
            if overlap is not Overlap.QUEUE or state.generation > running:
                return revived
        state.generation += 1
        self._touch(task)
        return True

    def _revive(self, state: TaskState) -> bool:
        """Give a failed task (restart.max_failures reached) another start."""
        revived = False
        for inst in state.instances.values():
            if inst.gave_up:
                inst.gave_up = False
                inst.failures = 0
                inst.failure_times = ()
                inst.not_before = 0.0
                revived = True
        if revived:
            self._touch(state.name)
        return revived

    def start_failed(
        self, task: str, slot: int, now: float, wall: float, error: str
    ) -> ExitOutcome:
        """The process could not be created at all (no such program, unknown user...)."""
        inst = self.tasks[task].instances[slot]
        record = ExitRecord(status=-1, at=now, wall=wall, uptime=0.0, expected=False, error=error)
        return self._settle(task, inst, record, now)

    def exited(
        self,
        pid: int,
        status: int,
        now: float,
        wall: float,
        error: str | None = None,
        cause: str | None = None,
    ) -> ExitOutcome | None:
        """A process exited (reaped). Returns None for a pid that is not a task process.
        `cause`: what its status does not tell (the OOM killer at work, say)."""
        where = self._by_pid.pop(pid, None)
        if where is None:
            return None
        self._pid_version += 1
        task, slot = where
        inst = self.tasks[task].instances[slot]
        if inst.launcher and inst.phase is Phase.RUNNING and status == 0:
            # A nowait/adopt start command that daemonized: its daemon is found next.
            daemons.daemonizing(inst, self._desired.policy, now)
            self._touch(task)
            return None
        record = ExitRecord(
            status=status,
            at=now,
            wall=wall,
            uptime=max(0.0, now - inst.started_at),
            expected=inst.phase is Phase.STOPPING,
            error=error,
            cause=cause,
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
        return ordering.once_done(self.tasks.get(name), self._desired.tasks.get(name))

    # ----- planning -------------------------------------------------------------------

    def plan(self, now: float) -> Plan:
        self._recovered = []
        for name, due in list(self._deadlines.items()):
            if due <= now:
                self._dirty.add(name)
        actions: list[Action] = []
        many = len(self._dirty) > _MANY
        while self._dirty:
            name = self._dirty.pop()
            deadline = self._plan_task(name, now, actions)
            if deadline is None:
                self._deadlines.pop(name, None)
            else:
                self._deadlines[name] = deadline
        if many:
            self._dirty = set()  # emptied, a set keeps its table: 512 KB after 10,000 tasks
        next_deadline = min(self._deadlines.values(), default=None)
        return Plan(tuple(actions), next_deadline, tuple(self._recovered), self._pid_version)

    def _plan_task(self, name: str, now: float, actions: list[Action]) -> float | None:
        state = self.tasks.get(name)
        if state is None:
            return None
        spec = self._desired.tasks.get(name)
        deadline: float | None = None
        for inst in list(state.instances.values()):
            deadline = earliest(deadline, self._plan_process(state, spec, inst, now, actions))
        if spec is None:
            self._forget_idle(state, keep=0)
            if not state.instances:
                del self.tasks[name]
            return deadline
        policy = self._desired.policy
        deadline = earliest(
            deadline, rolling.plan(state, spec, policy, now, actions, self._promote)
        )
        self._forget_idle(state, keep=spec.count)
        if spec.control in KEEP_RUNNING or spec.control in RUN_TO_COMPLETION:
            starts = starting.plan_starts(state, spec, self._desired, self.tasks, now, actions)
            deadline = earliest(deadline, starts)
        else:
            state.waiting = state.waiting_for = None
        return deadline

    def _plan_process(
        self,
        state: TaskState,
        spec: TaskSpec | None,
        inst: Instance,
        now: float,
        actions: list[Action],
    ) -> float | None:
        policy = self._desired.policy
        if inst.phase is Phase.DAEMONIZING:
            return daemons.plan_look(state.name, spec, inst, policy, now, actions)
        if inst.phase is Phase.RUNNING:
            assert inst.pid is not None
            if spec is None and self.shutting_down and inst.control is Control.ADOPT:
                # Adopted processes outlive taskforce.
                actions.append(Release(state.name, inst.slot, inst.pid))
                self._by_pid.pop(inst.pid, None)
                self._pid_version += 1
                del state.instances[inst.slot]
                return None
            reason = stopping.stop_reason(spec, inst, now, self.shutting_down)
            if reason is None:
                deadline: float | None = None
                if inst.failures:
                    steady_at = restart.steady_at(restart_policy(policy, spec), inst.started_at)
                    if now >= steady_at:
                        inst.failures = 0
                        self._recovered.append((state.name, inst.slot))
                    else:
                        deadline = steady_at
                if spec is not None:
                    # Changes that do not need a restart (stop command, pidfile) apply now.
                    inst.spec = _applied(inst, spec)
                    if spec.time_limit is not None:
                        deadline = earliest(deadline, inst.started_at + spec.time_limit)
                    if spec.control in DAEMON and not inst.launcher:
                        check = daemons.plan_check(state.name, inst, policy, now, actions)
                        deadline = earliest(deadline, check)
                    if not inst.ready:
                        probe = readiness.plan_probe(state, inst, now, actions)
                        deadline = earliest(deadline, probe)
                        if inst.stop_request is not None:
                            self._touch(state.name)  # not ready in time: stopped this pass
                    elif spec.control is Control.WAIT:
                        deadline = earliest(
                            deadline, liveness.plan_probe(state, inst, now, actions)
                        )
                return deadline
            actions.append(stopping.begin(state, spec, inst, reason, policy, now))
            return inst.kill_at
        if inst.phase is Phase.STOPPING:
            return stopping.plan_kill(state.name, inst, policy, now, actions)
        return None

    # ----- bookkeeping ----------------------------------------------------------------

    def _settle(self, task: str, inst: Instance, record: ExitRecord, now: float) -> ExitOutcome:
        """Record the end of a process (or of a failed start) and its restart policy."""
        state = self.tasks[task]
        spec = self._desired.tasks.get(task)
        policy = restart_policy(self._desired.policy, spec)
        verdict = restart.judge(policy, inst.failures, spec, record)
        inst.failures = verdict.failures
        inst.failure_times = restart.recent_failures(
            policy, inst.failure_times, verdict.failed, now
        )
        restarting = restart.restarts(spec, inst.slot, record)
        gave_up = (
            restarting
            and verdict.failed
            and not self.shutting_down
            and restart.gives_up(policy, inst.failures, inst.failure_times)
        )
        if record.error is not None and inst.ran_generation > 0:
            # A run that never happened does not count as the once run.
            inst.ran_generation -= 1
        inst.not_before = now + verdict.delay
        if record.error is not None:
            entry = HistoryEntry(record.wall, inst.slot, "failed", None, record.error)
        else:
            entry = HistoryEntry(record.wall, inst.slot, "exit", inst.pid, str(record.status))
        state.history.append(entry)
        if gave_up:
            inst.gave_up = True
            restarting = False
            state.history.append(
                HistoryEntry(record.wall, inst.slot, "gave up", None, _gave_up(policy))
            )
        inst.ended(record)
        if state.running() == 0 and state.up_since is not None:
            state.up_since = None
            state.ready_since = None
            if not self.shutting_down:
                for target in ordering.onexit_runs(state, self._desired, self.tasks):
                    self._touch(target)
        self._touch(task)
        return ExitOutcome(
            task,
            inst.slot,
            record,
            inst.failures,
            verdict.delay,
            verdict.failed,
            restarting,
            gave_up,
        )

    def _promote(self, state: TaskState, surge: Instance, slot: int) -> None:
        """A surge instance takes the slot it replaced (see core/rolling.py)."""
        old = state.instances.get(slot)
        del state.instances[surge.slot]
        if old is not None:
            surge.starts += old.starts
            surge.last_exit = old.last_exit
        surge.slot, surge.replaces = slot, None
        state.instances[slot] = surge
        if surge.pid is not None:
            self._by_pid[surge.pid] = (state.name, slot)
            self._pid_version += 1

    def _forget_idle(self, state: TaskState, keep: int) -> None:
        for slot in [s for s, i in state.instances.items() if s >= keep and i.phase is Phase.IDLE]:
            del state.instances[slot]

    def _touch(self, task: str) -> None:
        self._dirty.add(task)
        self._dirty.update(self._dependents.get(task, ()))


def _links_change(old: DesiredState, new: DesiredState, names: Collection[str]) -> bool:
    """Whether the tasks `names` (those that differ) may change who requires whom."""
    if len(names) > len(new.tasks) // 2:
        return True  # most of them: as quick to find the dependents again
    for name in names:
        for spec in (old.tasks.get(name), new.tasks.get(name)):
            if spec is not None and spec.requires:
                return True
    return False


def _first_generation(spec: TaskSpec) -> int:
    """Runs asked of a new task: one for a once task, none for an event task; a scheduled
    one runs at start only with run_on_start."""
    if spec.schedule is not None:
        return 1 if spec.schedule.run_on_start else 0
    return 0 if spec.control is Control.EVENT else 1


def _gave_up(policy: RestartPolicy) -> str:
    """Why a slot gave up, in words (the history entry's detail)."""
    within = f" within {policy.window:g}s" if policy.window is not None else " in a row"
    return f"{policy.max_failures} failures{within} (restart.max_failures)"


def _applied(inst: Instance, spec: TaskSpec) -> InstanceSpec:
    """The instance spec a running process goes on with: the new one, but for the launch
    it was started with (a rolling task replaces an outdated process rather than stopping
    it: it must stay outdated until then)."""
    new = spec.instances[inst.place]
    if inst.spec is None or inst.spec.launch == new.launch:
        return new
    return replace(new, launch=inst.spec.launch)
