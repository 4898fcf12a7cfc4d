"""Liveness: a running process of a wait task with a `live` probe is probed for as long as
it runs; `failures` failed probes in a row get it restarted.

Unlike readiness (:mod:`~taskforce.core.readiness`), which gates the start of the tasks
that require it and ends at the first success, liveness starts once the process is ready
and never ends. Probes go out as :class:`~taskforce.core.actions.Probe` actions like
readiness probes, marked ``live``.
"""

from __future__ import annotations

from taskforce.core.actions import Action, Probe
from taskforce.core.spec import LiveSpec
from taskforce.core.state import Instance, TaskState


def arm(inst: Instance, live: LiveSpec | None, now: float) -> None:
    """A process started: its first probe is due `initial_delay` (else `interval`) later."""
    inst.live_failures = 0
    inst.live_probing = False
    inst.live_error = None
    if live is not None:
        first = live.interval if live.initial_delay is None else live.initial_delay
        inst.next_live = now + first


def plan_probe(state: TaskState, inst: Instance, now: float, actions: list[Action]) -> float | None:
    """Probe a ready process when due; returns when to look again (None: not probed)."""
    spec = state.spec
    live = spec.live if spec is not None else None
    if live is None or inst.pid is None or not inst.ready or inst.stop_request is not None:
        return None
    if inst.live_probing:
        return None  # the probe's answer replans the task
    if now < inst.next_live:
        return inst.next_live
    inst.live_probing = True
    command = inst.spec.live_command if inst.spec is not None else None
    actions.append(
        Probe(state.name, inst.slot, inst.pid, live.kind, live.target, command, live.timeout, True)
    )
    return None


def probe_done(state: TaskState, inst: Instance, error: str | None, now: float) -> str | None:
    """A probe answered (`error`: why it failed, None: it succeeded).

    Returns why the process is now unhealthy when this failure is the `failures`-th in a
    row: it then has a stop request (a wait task is started again).
    """
    inst.live_probing = False
    live = state.spec.live if state.spec is not None else None
    if live is None:
        return None
    inst.next_live = now + live.interval
    if error is None:
        inst.live_failures = 0
        inst.live_error = None
        return None
    inst.live_failures += 1
    inst.live_error = error
    if inst.live_failures < live.failures or inst.stop_request is not None:
        return None
    why = f"liveness probe failed {inst.live_failures} times in a row: {error}"
    inst.stop_request = why
    return why
