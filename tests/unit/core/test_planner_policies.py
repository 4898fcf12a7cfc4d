"""Runtime policies in the planner, with the clock faked: giving up (restart.max_failures,
in a row or within a window) and what revives a failed task, liveness probes that get a
process restarted, and the runs a schedule asks for (run_on_start, overlap)."""

from __future__ import annotations

import dataclasses
import json

from support.planning import Harness, desired, task
from taskforce.core import snapshot
from taskforce.core.actions import Probe, Start, Stop
from taskforce.core.planner import Planner
from taskforce.core.spec import LiveSpec, ScheduleSpec, restart_policy
from taskforce.core.state import Waiting
from taskforce.core.vocabulary import Control, Overlap


def crashing(max_failures: int, window: float | None = None) -> Harness:
    spec = dataclasses.replace(
        task("crash"), restart=(("max_failures", max_failures), ("window", window))
    )
    return Harness(desired(spec))


def crash_now(h: Harness) -> None:
    """The running process fails at once; the harness moves to its next start."""
    h.exit("crash", status=1)
    h.step()
    if h.deadline is not None and h.planner.tasks["crash"].waiting is Waiting.BACKOFF:
        h.step(h.deadline)


def test_a_task_gives_up_after_max_failures_in_a_row() -> None:
    h = crashing(3)
    h.starts(0.0)
    crash_now(h)
    crash_now(h)
    assert h.planner.tasks["crash"].waiting is Waiting.BACKOFF or h.pid("crash")
    h.exit("crash", status=1)
    assert h.starts(h.now + 100) == []
    state = h.planner.tasks["crash"]
    assert state.waiting is Waiting.FAILED
    assert state.instances[0].gave_up
    assert state.history[-1].kind == "gave up"
    assert h.deadline is None  # a failed task costs no wake-up


def test_failures_in_a_row_are_reset_by_a_steady_run() -> None:
    h = crashing(2)
    h.starts(0.0)
    crash_now(h)  # one failure
    h.step(h.now + 5)  # ran past min_uptime: steady again
    h.exit("crash", status=1)
    assert h.starts(h.now + 100) == [("crash", 0)]  # one failure in a row, not two


def test_with_a_window_failures_count_across_steady_runs_within_it() -> None:
    h = crashing(3, window=10.0)
    h.starts(0.0)
    h.exit("crash", status=1, at=0.5)
    h.starts(1.0)
    h.exit("crash", status=1, at=1.5)
    h.starts(2.5)
    h.step(5.0)  # ran past min_uptime: no longer failing in a row
    h.exit("crash", status=1, at=5.0)  # not a failure (it ran 2.5 s)
    assert h.starts() == [("crash", 0)]
    h.exit("crash", status=1, at=5.2)  # the third failure within 10 s
    assert h.starts(100.0) == []
    assert h.planner.tasks["crash"].waiting is Waiting.FAILED


def test_with_a_window_failures_before_it_no_longer_count() -> None:
    h = crashing(2, window=10.0)
    h.starts(0.0)
    h.exit("crash", status=1, at=0.5)
    h.starts(1.0)
    h.exit("crash", status=1, at=20.0)  # not a failure
    h.starts()
    h.exit("crash", status=1, at=20.3)  # a failure, the only one within the window
    assert h.starts(30.0) == [("crash", 0)]


def test_a_failed_task_starts_again_on_request_and_counts_afresh() -> None:
    h = crashing(1)
    h.starts(0.0)
    h.exit("crash", status=1)
    assert h.starts(5.0) == []
    assert h.planner.request_run("crash")  # `taskforce start`
    assert h.starts() == [("crash", 0)]
    assert h.planner.tasks["crash"].waiting is None
    h.exit("crash", status=1)
    assert h.starts(10.0) == []  # gave up again at its first failure


def test_a_restart_event_or_a_changed_spec_revives_a_failed_task() -> None:
    h = crashing(1)
    h.starts(0.0)
    h.exit("crash", status=1)
    h.step(1.0)
    assert h.planner.request_stop("crash", "file changed") == 1
    assert h.starts() == [("crash", 0)]
    h.exit("crash", status=1)
    h.step(2.0)
    same = h.planner.desired
    h.planner.set_desired(same)
    assert h.starts() == []  # a reload that changes nothing leaves it failed
    spec = dataclasses.replace(same.tasks["crash"], restart=(("max_failures", 5),))
    h.planner.set_desired(dataclasses.replace(same, tasks={"crash": spec}))
    assert h.starts() == [("crash", 0)]


def test_never_giving_up_is_the_default() -> None:
    h = Harness(desired(task("crash")))
    h.starts(0.0)
    for _ in range(50):
        crash_now(h)
    assert not h.planner.tasks["crash"].instances[0].gave_up


def test_a_task_restart_key_overrides_the_settings_one_by_one() -> None:
    state = desired(dataclasses.replace(task("t"), restart=(("max_failures", 4),)))
    policy = restart_policy(state.policy, state.tasks["t"])
    assert policy.max_failures == 4
    assert policy.min_uptime == state.policy.restart.min_uptime


def live_task(failures: int = 3) -> Harness:
    live = LiveSpec("tcp", "127.0.0.1:1", interval=5.0, timeout=1.0, failures=failures)
    return Harness(desired(dataclasses.replace(task("svc"), live=live)))


def test_liveness_probes_every_interval_once_started() -> None:
    h = live_task()
    h.starts(0.0)
    h.step()
    assert h.deadline == 5.0  # first probe after the interval (no initial_delay)
    (probe,) = h.step(5.0)
    assert isinstance(probe, Probe) and probe.live and probe.timeout == 1.0
    assert h.step() == []  # one probe at a time
    assert h.planner.live_result("svc", 0, h.pid("svc"), None, 5.1) is None
    h.step()
    assert h.deadline == 10.1


def test_failures_in_a_row_restart_the_process_with_the_last_error() -> None:
    h = live_task(failures=2)
    h.starts(0.0)
    pid = h.pid("svc")
    h.step(5.0)
    assert h.planner.live_result("svc", 0, pid, "refused", 5.0) is None
    h.step(10.0)
    assert h.planner.live_result("svc", 0, pid, None, 10.0) is None  # the count starts over
    h.step(15.0)
    assert h.planner.live_result("svc", 0, pid, "refused", 15.0) is None
    h.step(20.0)
    why = h.planner.live_result("svc", 0, pid, "timed out", 20.0)
    assert why == "liveness probe failed 2 times in a row: timed out"
    (stop,) = h.step()
    assert isinstance(stop, Stop) and stop.reason == why
    h.exit("svc", status=-15)
    assert h.starts() == [("svc", 0)]  # a wait task comes back
    assert h.planner.tasks["svc"].instances[0].live_failures == 0


def test_an_answer_for_a_process_since_gone_is_ignored() -> None:
    h = live_task(failures=1)
    h.starts(0.0)
    assert h.planner.live_result("svc", 0, 9999, "refused", 5.0) is None


def scheduled(control: Control, run_on_start: bool, overlap: Overlap = Overlap.SKIP) -> Harness:
    schedule = ScheduleSpec(interval=60.0, run_on_start=run_on_start, overlap=overlap)
    return Harness(desired(dataclasses.replace(task("job", control=control), schedule=schedule)))


def test_a_scheduled_task_runs_at_start_only_with_run_on_start() -> None:
    assert scheduled(Control.ONCE, run_on_start=False).starts(0.0) == []
    assert scheduled(Control.EVENT, run_on_start=True).starts(0.0) == [("job", 0)]


def test_overlap_skip_drops_a_run_due_while_one_is_going() -> None:
    h = scheduled(Control.ONCE, run_on_start=True)
    h.starts(0.0)
    assert not h.planner.request_run("job", Overlap.SKIP)
    h.exit("job", status=0, at=1.5)
    assert h.starts() == []
    assert h.planner.request_run("job", Overlap.SKIP)
    assert h.starts() == [("job", 0)]


def test_overlap_queue_keeps_one_run_for_when_the_current_one_ends() -> None:
    h = scheduled(Control.ONCE, run_on_start=True, overlap=Overlap.QUEUE)
    h.starts(0.0)
    assert h.planner.request_run("job", Overlap.QUEUE)
    assert not h.planner.request_run("job", Overlap.QUEUE)  # one pending at most
    assert h.starts() == []
    h.exit("job", status=0, at=1.5)
    assert h.starts() == [("job", 0)]
    h.exit("job", status=0, at=2.0)
    assert h.starts() == []


def test_a_failed_task_stays_failed_across_a_hitless_upgrade() -> None:
    h = crashing(1)
    h.starts(0.0)
    h.exit("crash", status=1)
    h.step(1.0)
    saved = json.loads(json.dumps(snapshot.take(h.planner)))
    after = Planner(h.planner.desired)
    snapshot.restore(after, saved)
    assert after.plan(5.0).actions == ()
    assert after.tasks["crash"].waiting is Waiting.FAILED
    assert after.request_run("crash")
    assert [type(a) for a in after.plan(5.0).actions] == [Start]
