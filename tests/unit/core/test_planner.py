"""The reconciler as tables of facts and expected actions: no processes, no clock.

The last part: what a pass returns and records (waiting as a state, recoveries and the pid
version in the Plan), readiness and stop decisions."""

from __future__ import annotations

import dataclasses

import pytest

from support.planning import Harness, desired, task
from taskforce.core import stopping
from taskforce.core.actions import Kill, Probe, Start, Stop
from taskforce.core.spec import (
    EventSpec,
    InstanceSpec,
    LaunchSpec,
    ReadySpec,
    TaskSpec,
)
from taskforce.core.state import Instance, Phase, Waiting
from taskforce.core.vocabulary import Control, EventType


def test_wait_task_starts_all_instances_and_restarts_the_one_that_exits() -> None:
    h = Harness(desired(task("web", count=3)))
    assert sorted(h.starts()) == [("web", 0), ("web", 1), ("web", 2)]
    assert h.starts() == []
    h.exit("web", 1, at=10.0)
    assert h.starts() == [("web", 1)]


def test_once_task_runs_once_and_is_not_restarted() -> None:
    h = Harness(desired(task("setup", control=Control.ONCE)))
    assert h.starts() == [("setup", 0)]
    h.exit("setup", at=10.0)
    assert h.starts() == []
    assert h.planner.once_done("setup")


def test_requires_once_waits_until_it_has_exited() -> None:
    h = Harness(desired(task("timeset", control=Control.ONCE), task("ntpd", requires=("timeset",))))
    assert h.starts() == [("timeset", 0)]
    assert h.starts() == []
    assert h.planner.tasks["ntpd"].waiting_for == "waiting for timeset to finish"
    h.exit("timeset", at=1.0)
    assert h.starts() == [("ntpd", 0)]


def test_requires_wait_task_honours_start_delay() -> None:
    h = Harness(desired(task("db", start_delay=2.0), task("app", requires=("db",))))
    assert h.starts(0.0) == [("db", 0)]
    assert h.starts(0.0) == []
    assert h.deadline == 2.0
    assert h.starts(1.9) == []
    assert h.starts(2.0) == [("app", 0)]


def test_suspend_lets_dependents_start_and_off_blocks_them() -> None:
    h = Harness(
        desired(
            task("a", control=Control.SUSPEND),
            task("b", control=Control.OFF),
            task("needs_a", requires=("a",)),
            task("needs_b", requires=("b",)),
        )
    )
    assert h.starts() == [("needs_a", 0)]


def test_requires_on_a_task_out_of_scope_is_void() -> None:
    h = Harness(desired(task("app", requires=("elsewhere",))))
    assert h.starts() == [("app", 0)]


def test_onexit_reruns_the_once_task_and_regates_the_dependent() -> None:
    h = Harness(
        desired(
            task("timeset", control=Control.ONCE),
            task("ntpd", requires=("timeset",), onexit=("timeset",)),
        )
    )
    h.starts()
    h.exit("timeset", at=1.0)
    assert h.starts() == [("ntpd", 0)]
    h.exit("ntpd", status=1, at=100.0)
    assert h.starts() == [("timeset", 0)]
    assert h.starts() == []  # ntpd waits for the new timeset run
    h.exit("timeset", at=101.0)
    assert h.starts() == [("ntpd", 0)]


def test_fast_failures_back_off_exponentially_up_to_the_cap() -> None:
    h = Harness(desired(task("crash")))
    h.starts(0.0)
    delays = []
    for _ in range(6):
        h.exit("crash", status=1)
        assert h.starts() == []
        assert h.deadline is not None
        delays.append(round(h.deadline - h.now, 3))
        assert h.starts(h.deadline) == [("crash", 0)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_a_process_that_ran_long_enough_restarts_at_once_and_resets_backoff() -> None:
    h = Harness(desired(task("svc")))
    h.starts(0.0)
    h.exit("svc", status=1, at=0.1)
    h.starts(0.6)
    h.exit("svc", status=1, at=10.0)
    assert h.starts() == [("svc", 0)]
    assert h.planner.tasks["svc"].instances[0].failures == 0


def test_stop_escalates_to_kill_after_the_stop_timeout() -> None:
    h = Harness(desired(task("svc")))
    h.starts(0.0)
    pid = h.pid("svc")
    h.planner.shutdown()
    actions = h.step(1.0)
    assert actions == [Stop("svc", 0, pid, "taskforce is shutting down")]
    assert h.deadline == 6.0
    assert h.step(5.9) == []
    actions = h.step(6.0)
    assert len(actions) == 1 and isinstance(actions[0], Kill)
    assert h.step(100.0) == []
    h.exit("svc", status=9)
    assert not h.planner.has_processes()
    assert h.step() == []


def test_custom_stop_command_replaces_the_signal() -> None:
    h = Harness(desired(task("svc", stop=("svcctl", "stop"))))
    h.starts(0.0)
    h.planner.shutdown()
    (action,) = h.step(1.0)
    assert isinstance(action, Stop) and action.command == ("svcctl", "stop")


def test_restart_event_action_is_used_when_restarting() -> None:
    restart = EventSpec(EventType.RESTART, signal=10)
    h = Harness(desired(task("svc", events=(restart,))))
    h.starts(0.0)
    h.planner.set_desired(desired(task("svc", argv=("prog", "-x"), events=(restart,))))
    (action,) = h.step(1.0)
    assert (
        isinstance(action, Stop)
        and action.signal == 10
        and action.reason == "configuration changed"
    )


def test_changed_launch_restarts_and_unchanged_task_is_left_alone() -> None:
    h = Harness(desired(task("a"), task("b")))
    h.starts(0.0)
    pid_b = h.pid("b")
    h.planner.set_desired(desired(task("a", argv=("prog", "--new")), task("b")))
    actions = h.step(1.0)
    assert [(type(a).__name__, a.task) for a in actions] == [("Stop", "a")]
    h.exit("a", status=15, at=1.1)
    assert h.starts() == [("a", 0)]
    assert h.pid("b") == pid_b


def test_count_change_touches_only_the_instances_concerned() -> None:
    h = Harness(desired(task("w", count=3)))
    h.starts(0.0)
    before = [h.pid("w", i) for i in range(3)]
    h.planner.set_desired(desired(task("w", count=5)))
    assert sorted(h.starts(1.0)) == [("w", 3), ("w", 4)]
    h.planner.set_desired(desired(task("w", count=2)))
    actions = h.step(2.0)
    assert sorted((a.task, a.slot) for a in actions if isinstance(a, Stop)) == [
        ("w", 2),
        ("w", 3),
        ("w", 4),
    ]
    assert [h.pid("w", i) for i in range(2)] == before[:2]


def test_time_limit_stops_a_hung_once_task_so_dependents_proceed() -> None:
    h = Harness(
        desired(task("init", control=Control.ONCE, time_limit=5.0), task("app", requires=("init",)))
    )
    h.starts(0.0)
    assert h.step(0.0) == []
    assert h.deadline == 5.0
    (stop,) = h.step(5.0)
    assert isinstance(stop, Stop) and "time limit" in stop.reason
    h.exit("init", status=15, at=5.1)
    assert h.starts() == [("app", 0)]


def test_a_once_task_that_succeeds_quickly_is_not_a_failure() -> None:
    h = Harness(desired(task("setup", control=Control.ONCE), min_uptime=1.0))
    assert h.starts(0.0) == [("setup", 0)]
    pid = h.pid("setup")
    outcome = h.planner.exited(pid, 0, 0.2, 0.2)  # exit 0 well before min_uptime
    assert outcome is not None
    assert (outcome.failures, outcome.retry_in, outcome.restarting) == (0, 0.0, False)
    assert h.planner.tasks["setup"].instances[0].failures == 0
    assert h.planner.once_done("setup")


def test_a_once_task_that_fails_quickly_is_still_a_failure() -> None:
    h = Harness(desired(task("setup", control=Control.ONCE), min_uptime=1.0))
    h.starts(0.0)
    outcome = h.planner.exited(h.pid("setup"), 1 << 8, 0.2, 0.2)  # exit status 1
    assert outcome is not None and outcome.failures == 1


def test_a_wait_task_that_exits_0_quickly_is_a_failure() -> None:
    h = Harness(desired(task("web"), min_uptime=1.0))
    h.starts(0.0)
    outcome = h.planner.exited(h.pid("web"), 0, 0.2, 0.2)
    assert outcome is not None and (outcome.failures, outcome.retry_in) == (1, 0.5)


def test_failed_start_is_retried_with_backoff_even_for_once_tasks() -> None:
    h = Harness(desired(task("init", control=Control.ONCE)))
    (start,) = h.planner.plan(0.0).actions
    assert isinstance(start, Start)
    outcome = h.planner.start_failed("init", 0, 0.0, 0.0, "program not found")
    assert outcome.restarting and outcome.retry_in == 0.5
    assert h.planner.plan(0.1).actions == ()
    assert [type(a).__name__ for a in h.planner.plan(0.5).actions] == ["Start"]


def test_removed_task_is_stopped_and_forgotten_after_exit() -> None:
    h = Harness(desired(task("a"), task("b")))
    h.starts(0.0)
    h.planner.set_desired(desired(task("a")))
    actions = h.step(1.0)
    assert [(type(a).__name__, a.task) for a in actions] == [("Stop", "b")]
    assert isinstance(actions[0], Stop) and actions[0].reason == "no longer in scope"
    h.exit("b", at=1.5)
    h.step()
    assert "b" not in h.planner.tasks


def test_event_control_is_not_run_at_start_up() -> None:
    h = Harness(desired(task("ev", control=Control.EVENT)))
    assert h.starts() == []


# ----- what a pass returns and records ------------------------------------------------


def test_backing_off_is_a_state_and_ends_with_the_next_start() -> None:
    h = Harness(desired(task("crash")))
    h.starts(0.0)
    h.exit("crash", status=1, at=0.1)
    assert h.starts() == []
    state = h.planner.tasks["crash"]
    assert state.waiting is Waiting.BACKOFF
    assert state.waiting_for == "backing off after failures"
    assert h.starts(0.6) == [("crash", 0)]
    assert state.waiting is None and state.waiting_for is None


def test_waiting_for_requires_is_a_state_of_its_own() -> None:
    h = Harness(desired(task("db", control=Control.OFF), task("app", requires=("db",))))
    assert h.starts() == []
    assert h.planner.tasks["app"].waiting is Waiting.REQUIRES
    assert h.planner.tasks["db"].waiting is None


def test_recovery_is_returned_in_the_plan_of_the_pass_that_found_it() -> None:
    h = Harness(desired(task("svc"), min_uptime=1.0))
    h.starts(0.0)
    h.exit("svc", status=1, at=0.1)
    h.starts(0.6)  # started again at 0.6: steady from 1.6
    plan = h.planner.plan(1.0)
    assert plan.recovered == () and plan.next_deadline == 1.6
    plan = h.planner.plan(1.6)
    assert plan.recovered == (("svc", 0),)
    assert h.planner.plan(2.0).recovered == ()  # told once


def test_the_plan_carries_a_pid_version_that_moves_with_the_pids() -> None:
    h = Harness(desired(task("svc")))
    before = h.planner.plan(0.0)  # asks for the start
    h.planner.started("svc", 0, 100, 0.0, 0.0)
    started = h.planner.plan(0.0)
    assert started.pid_version != before.pid_version
    assert h.planner.plan(0.5).pid_version == started.pid_version  # nothing changed
    h.exit("svc", status=0, at=5.0)
    assert h.planner.plan(5.0).pid_version != started.pid_version


def test_a_process_not_ready_in_time_is_stopped_in_the_same_pass() -> None:
    ready = ReadySpec("tcp", "127.0.0.1:1", interval=0.1, timeout=1.0)
    web = dataclasses.replace(task("web"), ready=ready)
    h = Harness(desired(web))
    h.starts(0.0)
    pid = h.pid("web")
    (probe,) = h.step(0.1)
    assert isinstance(probe, Probe) and probe.target == "127.0.0.1:1"
    h.planner.probe_result("web", 0, pid, False, 0.2)
    assert h.step(0.3) == []  # the next probe waits 0.1 * 2
    assert isinstance(h.step(0.4)[0], Probe)
    h.planner.probe_result("web", 0, pid, False, 0.5)
    (stop,) = h.step(1.0)
    assert stop == Stop("web", 0, pid, "not ready 1s after it started")


RUNNING = Instance(0, phase=Phase.RUNNING, pid=100, started_at=0.0, control=Control.WAIT)
LAUNCH = InstanceSpec(LaunchSpec("prog", ("prog",), ()))
WAIT = TaskSpec("t", Control.WAIT, (LAUNCH,))


@pytest.mark.parametrize(
    ("spec", "inst", "shutting_down", "reason"),
    [
        (WAIT, RUNNING, False, None),
        (None, RUNNING, False, "no longer in scope"),
        (None, RUNNING, True, "taskforce is shutting down"),
        (dataclasses.replace(WAIT, control=Control.OFF), RUNNING, False, "control is off"),
        (dataclasses.replace(WAIT, instances=()), RUNNING, False, "count reduced to 0"),
        (WAIT, dataclasses.replace(RUNNING, stop_request="file changed"), False, "file changed"),
        (dataclasses.replace(WAIT, time_limit=5.0), RUNNING, False, "time limit of 5s reached"),
        (
            dataclasses.replace(WAIT, control=Control.ONCE),
            RUNNING,
            False,
            "control changed from wait to once",
        ),
        (  # between controls that keep running, the process stays
            dataclasses.replace(WAIT, control=Control.NOWAIT),
            RUNNING,
            False,
            None,
        ),
        (
            WAIT,
            dataclasses.replace(RUNNING, spec=InstanceSpec(LaunchSpec("old", ("old",), ()))),
            False,
            "configuration changed",
        ),
    ],
)
def test_stop_reason(
    spec: TaskSpec | None, inst: Instance, shutting_down: bool, reason: str | None
) -> None:
    assert stopping.stop_reason(spec, inst, 10.0, shutting_down) == reason


def test_a_plain_task_s_instances_keep_no_rare_part() -> None:
    """The fields of daemons, probes and rolling restarts are made only when used
    (state.Rare): a plain task's instance never leaves their defaults, through starts,
    exits and restarts; one with a probe gets them."""
    db = dataclasses.replace(task("db"), ready=ReadySpec("tcp", "127.0.0.1:1"))
    h = Harness(desired(task("web", count=2), db))
    h.step()
    h.exit("web", 1, status=256, at=10.0)
    h.step(20.0)
    web = h.planner.tasks["web"].instances
    assert [web[slot].rare for slot in (0, 1)] == [None, None]
    assert web[1].pid is not None and web[1].replaces is None and web[1].next_check is None
    assert h.planner.tasks["db"].instances[0].rare is not None
