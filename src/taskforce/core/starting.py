"""Starting idle slots: which may start now, and why the others wait.

A slot waits out its restart backoff (see :mod:`~taskforce.core.restart`), and stays down
once it has given up (restart.max_failures) until it is revived; it waits for the tasks it
requires (see :mod:`~taskforce.core.ordering`); a run-to-completion slot starts once per
run asked of its task.
"""

from __future__ import annotations

from collections.abc import Mapping

from taskforce.core import ordering
from taskforce.core.actions import Action, Start
from taskforce.core.deadline import earliest
from taskforce.core.spec import DesiredState, TaskSpec
from taskforce.core.state import Instance, Phase, TaskState, Waiting
from taskforce.core.vocabulary import RUN_TO_COMPLETION


def plan_starts(
    state: TaskState,
    spec: TaskSpec,
    desired: DesiredState,
    tasks: Mapping[str, TaskState],
    now: float,
    actions: list[Action],
) -> float | None:
    """Start the idle slots of `spec` that may start; returns when one may start next.

    Sets the task's `waiting` (and its words, `waiting_for`) when a slot must wait.
    """
    deadline: float | None = None
    backing_off = failed = False
    once = spec.control in RUN_TO_COMPLETION
    for slot in range(spec.count):
        inst = state.instances.get(slot)
        if inst is None:
            inst = state.instances[slot] = Instance(slot)
        if inst.phase is not Phase.IDLE:
            continue
        if inst.gave_up:
            failed = True
            continue
        if once and inst.ran_generation >= state.generation:
            continue
        if inst.not_before > now:
            deadline = earliest(deadline, inst.not_before)
            backing_off = True
            continue
        waiting, when = ordering.requires_blocker(spec, desired, tasks, now)
        if waiting is not None:
            state.waiting, state.waiting_for = Waiting.REQUIRES, waiting
            return earliest(deadline, when)
        inst.phase = Phase.STARTING
        inst.spec = spec.instances[slot]
        if once:
            inst.ran_generation = state.generation
        actions.append(Start(spec.name, slot, spec.instances[slot], _start_reason(inst)))
    if failed:
        state.waiting = Waiting.FAILED
        state.waiting_for = "gave up after restart.max_failures failures"
    elif backing_off:
        state.waiting, state.waiting_for = Waiting.BACKOFF, "backing off after failures"
    else:
        state.waiting = state.waiting_for = None
    return deadline


def _start_reason(inst: Instance) -> str:
    if inst.last_exit is None:
        return "starting"
    if inst.last_exit.expected:
        return "restarting after stop"
    return "restarting after exit"
