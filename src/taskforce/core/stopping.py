"""Stopping a running process: why it must stop, how it is asked, and SIGKILL after the
stop timeout.

A stop cannot be abandoned half-way: once asked, the process is STOPPING until it exits,
and killed if it outlives the stop timeout.
"""

from __future__ import annotations

from taskforce.core.actions import Action, Kill, Stop
from taskforce.core.spec import Policy, TaskSpec
from taskforce.core.state import Instance, Phase, TaskState
from taskforce.core.vocabulary import KEEP_RUNNING, Control, EventType


def stop_reason(
    spec: TaskSpec | None, inst: Instance, now: float, shutting_down: bool
) -> str | None:
    """Why the running process of `inst` must stop under `spec`; None: it may run on."""
    if spec is None:
        return "taskforce is shutting down" if shutting_down else "no longer in scope"
    if spec.control in (Control.OFF, Control.SUSPEND):
        return f"control is {spec.control}"
    if inst.place >= spec.count:
        return f"count reduced to {spec.count}"
    if inst.replaces is not None and not spec.rolls:
        return "rolling restart called off"
    if inst.stop_request is not None:
        return inst.stop_request
    if spec.time_limit is not None and now - inst.started_at >= spec.time_limit:
        return f"time limit of {spec.time_limit:g}s reached"
    if inst.control is not None and _category(inst.control) != _category(spec.control):
        return f"control changed from {inst.control} to {spec.control}"
    changed = inst.spec is not None and inst.spec.launch != spec.instances[inst.place].launch
    # A task that rolls replaces its outdated processes instead (see core/rolling.py).
    rolled = spec.rolls and inst.replaces is None
    if changed and spec.control in KEEP_RUNNING and not rolled:
        return "configuration changed"
    return None


def begin(
    state: TaskState, spec: TaskSpec | None, inst: Instance, reason: str, policy: Policy, now: float
) -> Stop:
    """Ask the running process of `inst` to stop (SIGKILL at its `kill_at`)."""
    assert inst.pid is not None
    restarting = spec is not None and spec.control in KEEP_RUNNING
    action = _stop_action(state, inst, inst.pid, reason, restarting)
    inst.phase = Phase.STOPPING
    inst.stop_reason = reason
    inst.kill_at = now + policy.stop_timeout
    return action


def plan_kill(
    task: str, inst: Instance, policy: Policy, now: float, actions: list[Action]
) -> float | None:
    """SIGKILL a STOPPING process that outlived the stop timeout; returns when it is due."""
    if inst.killed:
        return None
    assert inst.pid is not None and inst.kill_at is not None
    if now >= inst.kill_at:
        inst.killed = True
        timeout = policy.stop_timeout
        actions.append(Kill(task, inst.slot, inst.pid, f"still running {timeout:g}s after stop"))
        return None
    return inst.kill_at


def _stop_action(state: TaskState, inst: Instance, pid: int, reason: str, restarting: bool) -> Stop:
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


def _category(control: str) -> bool:
    """True for controls that keep processes running, False for run-to-completion ones."""
    return control in KEEP_RUNNING
