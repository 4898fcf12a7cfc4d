"""nowait and adopt: daemons found through pidfiles, checks, adoption and release."""

from __future__ import annotations

from taskforce.core.actions import Check, LookForPid, Release, Start, Stop
from taskforce.core.planner import Planner
from taskforce.core.spec import DesiredState, InstanceSpec, LaunchSpec, Policy, TaskSpec
from taskforce.core.state import Phase
from taskforce.core.vocabulary import Control


def daemon(name: str = "d", control: Control = Control.NOWAIT, check: bool = False) -> TaskSpec:
    commands = {"check": ("probe",)} if check else {}
    instance = InstanceSpec(LaunchSpec("daemon", ("daemon",), ()), commands, pidfile="/run/d.pid")
    return TaskSpec(name, control, (instance,))


def planner(*tasks: TaskSpec) -> Planner:
    policy = Policy(check_interval=10.0, check_timeout=2.0, start_timeout=5.0)
    return Planner(DesiredState({t.name: t for t in tasks}, policy))


def launch(p: Planner, now: float = 0.0) -> None:
    (start,) = p.plan(now).actions
    assert isinstance(start, Start)
    p.started("d", 0, 100, now, now, "/usr/sbin/daemon")


def test_start_command_exiting_zero_leads_to_looking_for_the_pidfile() -> None:
    p = planner(daemon())
    launch(p)
    assert p.exited(100, 0, 0.1, 0.1) is None
    inst = p.tasks["d"].instances[0]
    assert inst.phase is Phase.DAEMONIZING
    (look,) = p.plan(0.1).actions
    assert look == LookForPid("d", 0, "/run/d.pid", "/usr/sbin/daemon", ("daemon",))
    assert p.pid_not_found("d", 0, 0.1, 0.1) is None
    plan = p.plan(0.1)
    assert plan.actions == () and plan.next_deadline is not None
    (again,) = p.plan(plan.next_deadline).actions
    assert isinstance(again, LookForPid)
    p.found_pid("d", 0, 200, 0.2, 0.2, child=False)
    inst = p.tasks["d"].instances[0]  # read again: mypy keeps the narrowing above
    assert inst.phase is Phase.RUNNING and inst.pid == 200 and inst.foreign
    assert p.owner(200) == ("d", 0)


def test_no_pid_within_the_start_timeout_is_a_failure_with_backoff() -> None:
    p = planner(daemon())
    launch(p)
    p.exited(100, 0, 0.1, 0.1)
    p.plan(0.1)
    outcome = p.pid_not_found("d", 0, 5.2, 5.2)
    assert outcome is not None and outcome.restarting and outcome.record.error
    assert p.tasks["d"].instances[0].phase is Phase.IDLE


def test_a_start_command_that_fails_is_an_ordinary_failure() -> None:
    p = planner(daemon())
    launch(p)
    outcome = p.exited(100, 256, 0.1, 0.1)
    assert outcome is not None and outcome.failures == 1


def test_checks_run_every_interval_and_a_failed_check_restarts() -> None:
    p = planner(daemon(check=True))
    launch(p)
    p.exited(100, 0, 0.1, 0.1)
    p.plan(0.1)
    p.found_pid("d", 0, 200, 0.2, 0.2, child=True)
    plan = p.plan(0.2)
    assert plan.actions == () and plan.next_deadline == 10.2
    (check,) = p.plan(10.2).actions
    assert check == Check("d", 0, 200, ("probe",), 2.0)
    assert p.plan(10.3).actions == ()  # one check at a time
    p.check_result("d", 0, 200, True, 10.4, "")
    assert p.plan(10.4).next_deadline == 20.4
    (check,) = p.plan(20.4).actions
    p.check_result("d", 0, 200, False, 20.5, "exit 1")
    (stop,) = p.plan(20.5).actions
    assert isinstance(stop, Stop) and stop.reason == "check failed: exit 1"


def test_adopted_process_is_kept_and_released_at_shutdown() -> None:
    p = planner(daemon(control=Control.ADOPT))
    p.adopt("d", 0, 300, 0.0, 0.0)
    assert p.plan(0.0).actions == (Check("d", 0, 300, None, 2.0),)
    p.check_result("d", 0, 300, True, 0.1, "")
    p.shutdown()
    assert p.plan(1.0).actions == (Release("d", 0, 300),)
    assert not p.has_processes()


def test_leftover_of_a_wait_task_is_stopped_then_started_afresh() -> None:
    spec = TaskSpec("w", Control.WAIT, (InstanceSpec(LaunchSpec("x", ("x",), ())),))
    p = planner(spec)
    p.adopt("w", 0, 400, 0.0, 0.0, leftover="left running by an earlier taskforce")
    (stop,) = p.plan(0.0).actions
    assert isinstance(stop, Stop) and stop.pid == 400
    p.exited(400, -1, 0.5, 0.5)
    (start,) = p.plan(0.5).actions
    assert isinstance(start, Start)


def test_adopted_once_task_counts_as_its_run() -> None:
    spec = TaskSpec("o", Control.ONCE, (InstanceSpec(LaunchSpec("x", ("x",), ())),))
    p = planner(spec)
    p.adopt("o", 0, 500, 0.0, 0.0)
    assert p.plan(0.0).actions == ()
    p.exited(500, -1, 1.0, 1.0)
    assert p.plan(1.0).actions == ()
    assert p.once_done("o")
