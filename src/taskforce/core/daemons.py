"""nowait and adopt tasks: the daemon found through its pidfile, then checked now and then.

Their start command is only a launcher: once it exits 0 the daemon is looked for (the
pidfile must name a live process within the start timeout), and a found daemon is checked
every check interval. These functions change one instance's records and add the actions
the runtime carries out; the planner decides when to call them.
"""

from __future__ import annotations

from taskforce.core.actions import Action, Check, LookForPid
from taskforce.core.spec import Policy, TaskSpec
from taskforce.core.state import Instance, Phase
from taskforce.core.vocabulary import DAEMON

# The pidfile is looked at again after these many seconds, doubling up to the last.
_LOOK_FIRST, _LOOK_MAX = 0.01, 0.5


def daemonizing(inst: Instance, policy: Policy, now: float) -> None:
    """The start command exited 0: its daemon is looked for next."""
    inst.phase = Phase.DAEMONIZING
    inst.pid = None
    inst.launcher = False
    inst.looks = 0
    inst.next_look = now
    inst.look_deadline = now + policy.start_timeout


def plan_look(
    task: str,
    spec: TaskSpec | None,
    inst: Instance,
    policy: Policy,
    now: float,
    actions: list[Action],
) -> float | None:
    """Look for the daemon of a DAEMONIZING instance when due; returns when to look again."""
    # Even when the task is going away, the daemon must be found: to be stopped.
    # But not for longer than a stop may take.
    if spec is None or inst.slot >= spec.count or spec.control not in DAEMON:
        inst.look_deadline = min(inst.look_deadline, now + policy.stop_timeout)
    if now >= inst.next_look:
        pidfile = inst.spec.pidfile if inst.spec is not None else None
        program = inst.executable or (inst.spec.launch.program if inst.spec else "")
        argv = inst.spec.launch.argv if inst.spec is not None else ()
        actions.append(LookForPid(task, inst.slot, pidfile, program, argv))
        inst.next_look = inst.look_deadline + 1.0  # until the runtime reports
        return None
    return inst.next_look


def look_failed(inst: Instance, policy: Policy, now: float) -> str | None:
    """The pidfile named no live daemon: schedule another look, or say why it is given up."""
    if now >= inst.look_deadline:
        timeout = policy.start_timeout
        return f"no live process in its pidfile {timeout:g}s after the start command exited"
    inst.looks += 1
    inst.next_look = now + min(_LOOK_MAX, _LOOK_FIRST * 2 ** (inst.looks - 1))
    return None


def plan_check(
    task: str, inst: Instance, policy: Policy, now: float, actions: list[Action]
) -> float | None:
    """Check a running daemon when due; returns when the next check is due."""
    if inst.checking or inst.pid is None:
        return None
    if inst.next_check is None:
        inst.next_check = now + policy.check_interval
    if now < inst.next_check:
        return inst.next_check
    inst.checking = True
    command = inst.spec.commands.get("check") if inst.spec is not None else None
    actions.append(Check(task, inst.slot, inst.pid, command, policy.check_timeout))
    return None


def check_done(inst: Instance, ok: bool, detail: str, policy: Policy, now: float) -> None:
    """A check ended: a failed one stops the daemon (and a wait-like task restarts it)."""
    inst.checking = False
    inst.next_check = now + policy.check_interval
    if not ok and inst.phase is Phase.RUNNING and inst.stop_request is None:
        inst.stop_request = f"check failed: {detail}"
