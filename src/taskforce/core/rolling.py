"""Rolling restarts: a task's instances replaced a few at a time, each new process started
beside the one it replaces, which is stopped only once the new one is ready.

A task rolls (:attr:`TaskSpec.rolls`) when it runs several instances, or one that may run
twice at once (`overlap`). Then a restart request (`taskforce restart`, a file-change
event) marks its running instances for replacement, and a changed launch spec (a reload)
makes them outdated; neither stops them. Each pass, for up to `rolling` instances at a
time, this module starts a *surge* instance: an extra slot, numbered from `count` up,
running the instance spec of the slot it replaces (``Instance.replaces``). Once the surge
is ready the old process is stopped (with held sockets it drains while the new one already
accepts); once the old process is gone the surge takes its slot. A surge that fails, or is
not ready in time, is dropped and the old process keeps running; the replacement is tried
again after the restart policy's backoff.

Level-triggered like the rest of the planner: which slots want replacing, and where each
surge stands, is read from the instances on every pass.
"""

from __future__ import annotations

from collections.abc import Callable

from taskforce.core import restart, stopping
from taskforce.core.actions import Action, Start
from taskforce.core.deadline import earliest
from taskforce.core.spec import Policy, TaskSpec
from taskforce.core.state import Instance, Phase, Rolling, TaskState

# Moves a surge instance into the slot it replaced (the planner's pid index follows it).
Promote = Callable[[TaskState, Instance, int], None]


def wants_replacing(inst: Instance, spec: TaskSpec) -> str | None:
    """Why the running process of a slot is to be replaced; None if it is not."""
    if inst.phase is not Phase.RUNNING or inst.replaces is not None or inst.slot >= spec.count:
        return None
    if inst.replace_request is not None:
        return inst.replace_request
    if inst.spec is not None and inst.spec.launch != spec.instances[inst.slot].launch:
        return "configuration changed"
    return None


def request(state: TaskState, spec: TaskSpec, reason: str) -> int:
    """Mark the task's running processes for replacement; returns how many were marked.

    A process already marked, or being stopped, is left be: a burst of events during one
    rolling restart results in that one.
    """
    asked = 0
    for inst in state.instances.values():
        if wants_replacing(inst, spec) is None and _replaceable(inst, spec):
            inst.replace_request = reason
            asked += 1
    return asked


def _replaceable(inst: Instance, spec: TaskSpec) -> bool:
    """A running process of one of the task's slots, not asked to stop."""
    running = inst.phase is Phase.RUNNING and inst.stop_request is None
    return running and inst.replaces is None and inst.slot < spec.count


def plan(
    state: TaskState,
    spec: TaskSpec,
    policy: Policy,
    now: float,
    actions: list[Action],
    promote: Promote,
) -> float | None:
    """Move the task's rolling restart on; returns when to look again (None: no need).

    Surges of a task that no longer rolls are stopped by the stop policy
    (:func:`taskforce.core.stopping.stop_reason`), not here.
    """
    if not spec.rolls:
        state.rolling = None
        return None
    deadline: float | None = None
    surges = _settle_surges(state, spec, policy, now, actions, promote)
    for surge in surges.values():
        deadline = earliest(deadline, surge.kill_at)
    for slot in surges:
        old = state.instances.get(slot)
        if old is not None and old.phase is Phase.STOPPING:
            deadline = earliest(deadline, old.kill_at)
    wanted = [
        slot
        for slot in range(spec.count)
        if slot not in surges
        and (inst := state.instances.get(slot)) is not None
        and wants_replacing(inst, spec) is not None
    ]
    pending = len(wanted) + len(surges)
    if pending == 0:
        state.rolling = None
        return deadline
    rolling = state.rolling
    if rolling is None:
        rolling = state.rolling = Rolling(started_at=now, total=pending)
    rolling.total = max(rolling.total, rolling.done + pending)
    if rolling.not_before > now:
        return earliest(deadline, rolling.not_before)
    room = spec.at_a_time - len(surges)
    for slot in wanted[: max(0, room)]:
        _start_surge(state, spec, state.instances[slot], actions)
    return deadline


def _settle_surges(
    state: TaskState,
    spec: TaskSpec,
    policy: Policy,
    now: float,
    actions: list[Action],
    promote: Promote,
) -> dict[int, Instance]:
    """Take each surge a step on; returns those still under way, by the slot they replace."""
    surges: dict[int, Instance] = {}
    for surge in sorted(
        (i for i in state.instances.values() if i.replaces is not None), key=lambda i: i.slot
    ):
        target = surge.replaces
        assert target is not None
        old = state.instances.get(target)
        if surge.phase is Phase.IDLE:
            # It could not start, exited, or was stopped before it took over: the old
            # process stays, and the replacement is tried again after a backoff.
            del state.instances[surge.slot]
            if old is not None and wants_replacing(old, spec) is not None:
                _failed(state, policy, now)
            continue
        surges[target] = surge
        if surge.phase is not Phase.RUNNING:
            continue  # starting or stopping: its outcome comes later
        if old is None or old.phase is Phase.IDLE:
            promote(state, surge, target)
            del surges[target]
            if state.rolling is not None:
                state.rolling.done += 1
                state.rolling.failures = 0
            continue
        if old.phase is not Phase.RUNNING:
            continue  # the old process is stopping: the surge takes over once it is gone
        why = wants_replacing(old, spec)
        if why is None:
            reason = "no longer needed: the process it was to replace is up to date"
            actions.append(stopping.begin(state, spec, surge, reason, policy, now))
        elif surge.ready:
            reason = f"replaced by pid {surge.pid} (rolling restart: {why})"
            actions.append(stopping.begin(state, spec, old, reason, policy, now))
    return surges


def _start_surge(state: TaskState, spec: TaskSpec, old: Instance, actions: list[Action]) -> None:
    key = spec.count
    while key in state.instances:  # a surge slot, or one still stopping after a scale-down
        key += 1
    place = spec.instances[old.slot]
    surge = Instance(key, phase=Phase.STARTING, spec=place)
    surge.replaces = old.slot
    state.instances[key] = surge
    why = wants_replacing(old, spec)
    reason = f"rolling restart ({why}): replacing pid {old.pid} of instance {old.slot}"
    actions.append(Start(spec.name, key, place, reason))


def _failed(state: TaskState, policy: Policy, now: float) -> None:
    rolling = state.rolling
    if rolling is None:
        return
    rolling.failures += 1
    rolling.not_before = now + restart.backoff_delay(policy.restart, rolling.failures)
