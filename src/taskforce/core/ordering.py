"""Ordering between tasks: `requires` gates a start, `onexit` asks for one more run.

Pure functions over the desired state and the tasks' observed states; the planner calls
them and replans the tasks they name.
"""

from __future__ import annotations

from collections.abc import Mapping

from taskforce.core.spec import DesiredState, TaskSpec
from taskforce.core.state import Phase, TaskState
from taskforce.core.vocabulary import RUN_TO_COMPLETION, Control


def dependents(desired: DesiredState) -> dict[str, set[str]]:
    """Task name -> the tasks that require it (to replan them when it changes)."""
    out: dict[str, set[str]] = {}
    for spec in desired.tasks.values():
        for required in spec.requires:
            out.setdefault(required, set()).add(spec.name)
    return out


def once_done(state: TaskState | None, spec: TaskSpec | None) -> bool:
    """A run-to-completion task has finished every run asked of it."""
    if state is None or spec is None:
        return False
    for slot in range(spec.count):
        inst = state.instances.get(slot)
        if inst is None or inst.phase is not Phase.IDLE:
            return False
        if inst.ran_generation < state.generation:
            return False
    return True


def requires_blocker(
    spec: TaskSpec, desired: DesiredState, tasks: Mapping[str, TaskState], now: float
) -> tuple[str | None, float | None]:
    """Why `spec` may not start yet, and when that could change by itself."""
    for required in spec.requires:
        other = desired.tasks.get(required)
        if other is None:
            # Out of scope on this host (or not resolvable): nothing to wait for.
            continue
        if other.control is Control.SUSPEND:
            continue
        if other.control is Control.OFF:
            return f"requires {required}, whose control is off", None
        if other.control in RUN_TO_COMPLETION:
            if not once_done(tasks.get(required), other):
                return f"waiting for {required} to finish", None
            continue
        required_state = tasks[required]
        if required_state.up_since is None:
            return f"waiting for {required} to start", None
        if required_state.ready_since is None:
            return f"waiting for {required} to be ready", None
        ready_at = required_state.ready_since + other.start_delay
        if now < ready_at:
            return f"waiting for {required}'s start_delay", ready_at
    return None, None


def onexit_runs(
    state: TaskState, desired: DesiredState, tasks: Mapping[str, TaskState]
) -> list[str]:
    """The last process of `state` ended: ask each of its onexit targets for one more run.

    Returns the targets to replan (a target still running keeps its one pending run).
    """
    spec = desired.tasks.get(state.name)
    if spec is None:
        return []
    touched = []
    for target in spec.onexit_start:
        target_state = tasks.get(target)
        if target_state is None or target not in desired.tasks:
            continue
        if once_done(target_state, desired.tasks[target]):
            target_state.generation += 1
        touched.append(target)
    return touched
