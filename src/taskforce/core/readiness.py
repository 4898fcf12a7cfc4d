"""Readiness: a started process of a task with a `ready` probe is probed until it answers.

Probes back off from the task's interval; a process not ready within the probe's timeout
is stopped (and, for a wait task, started again). Tasks that require it wait until it is
ready (see :mod:`taskforce.core.ordering`).
"""

from __future__ import annotations

from taskforce.core.actions import Action, Probe
from taskforce.core.deadline import earliest
from taskforce.core.spec import ReadySpec
from taskforce.core.state import Instance, TaskState

# Readiness probes back off from the task's interval up to this many seconds.
_PROBE_MAX = 2.0


def arm(state: TaskState, inst: Instance, ready: ReadySpec | None, now: float) -> None:
    """A process started: ready at once without a probe, else probed after the interval."""
    inst.ready = ready is None
    inst.probes = 0
    inst.probing = False
    if ready is not None:  # read only with a probe (set, it takes room: see state.Rare)
        inst.next_probe = now + ready.interval
    if inst.ready and state.ready_since is None:
        state.ready_since = now


def plan_probe(state: TaskState, inst: Instance, now: float, actions: list[Action]) -> float | None:
    """Probe a process not yet ready when due; returns when to look again.

    A process past the probe's timeout gets a stop request instead (the caller replans it).
    """
    spec = state.spec
    if spec is None or spec.ready is None or inst.pid is None or inst.launcher:
        return None
    ready = spec.ready
    timeout_at = inst.started_at + ready.timeout if ready.timeout is not None else None
    if timeout_at is not None and now >= timeout_at and inst.stop_request is None:
        inst.stop_request = f"not ready {ready.timeout:g}s after it started"
        return None
    if inst.probing:
        return timeout_at
    if now < inst.next_probe:
        return earliest(inst.next_probe, timeout_at)
    inst.probing = True
    target = ready.target
    if ready.kind == "pidfile":
        target = (inst.spec.pidfile if inst.spec is not None else None) or ""
    command = inst.spec.ready_command if inst.spec is not None else None
    actions.append(Probe(state.name, inst.slot, inst.pid, ready.kind, target, command))
    return timeout_at


def probe_done(state: TaskState, inst: Instance, ok: bool, now: float) -> None:
    """A probe answered: ready, or probed again after a longer pause."""
    inst.probing = False
    if ok:
        inst.ready = True
        if state.ready_since is None:
            state.ready_since = now
        return
    inst.probes += 1
    interval = state.spec.ready.interval if state.spec and state.spec.ready else 0.1
    inst.next_probe = now + min(_PROBE_MAX, interval * 2**inst.probes)
