"""The restart policy as tables: which ends are failures, how long the backoff is."""

from __future__ import annotations

import pytest

from taskforce.core import restart
from taskforce.core.spec import InstanceSpec, LaunchSpec, TaskSpec
from taskforce.core.state import ExitRecord
from taskforce.core.vocabulary import Control, RestartPolicy

POLICY = RestartPolicy(min_uptime=1.0, initial_delay=0.5, factor=2.0, max_delay=4.0)


def ended(
    uptime: float, *, expected: bool = False, error: str | None = None, status: int = 256
) -> ExitRecord:
    return ExitRecord(
        status=status, at=100.0, wall=0.0, uptime=uptime, expected=expected, error=error
    )


@pytest.mark.parametrize(
    ("record", "failures_before", "verdict"),
    [
        # Ran long enough: not a failure, the count starts over.
        (ended(1.0), 0, restart.Verdict(False, 0, 0.0)),
        (ended(5.0), 3, restart.Verdict(False, 0, 0.0)),
        # Ended by itself too soon: the n-th failure waits initial * factor ** (n - 1).
        (ended(0.2), 0, restart.Verdict(True, 1, 0.5)),
        (ended(0.2), 1, restart.Verdict(True, 2, 1.0)),
        (ended(0.999), 2, restart.Verdict(True, 3, 2.0)),
        # Capped at max_delay.
        (ended(0.2), 3, restart.Verdict(True, 4, 4.0)),
        (ended(0.2), 40, restart.Verdict(True, 41, 4.0)),
        # Asked to stop: never a failure, however short.
        (ended(0.0, expected=True), 2, restart.Verdict(False, 0, 0.0)),
        # Could not start at all: always a failure, even if it was asked to stop.
        (ended(0.0, error="no such file"), 0, restart.Verdict(True, 1, 0.5)),
        (ended(0.0, expected=True, error="unknown user"), 1, restart.Verdict(True, 2, 1.0)),
    ],
)
def test_judge(record: ExitRecord, failures_before: int, verdict: restart.Verdict) -> None:
    assert restart.judge(POLICY, failures_before, spec(Control.WAIT), record) == verdict


@pytest.mark.parametrize("control", [Control.ONCE, Control.EVENT])
def test_a_run_to_completion_that_exits_0_is_done_however_quickly(control: Control) -> None:
    done = restart.judge(POLICY, 2, spec(control), ended(0.01, status=0))
    assert done == restart.Verdict(False, 0, 0.0)
    # Exiting non-zero too soon is still a failure; a wait task exiting 0 too soon too.
    assert restart.judge(POLICY, 0, spec(control), ended(0.01)).failed
    assert restart.judge(POLICY, 0, spec(Control.WAIT), ended(0.01, status=0)).failed


@pytest.mark.parametrize(
    ("failures", "delay"),
    [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0)],
)
def test_backoff_delay_doubles_up_to_the_cap(failures: int, delay: float) -> None:
    assert restart.backoff_delay(POLICY, failures) == delay


def test_steady_after_min_uptime() -> None:
    assert restart.steady_at(POLICY, started_at=10.0) == 11.0


def spec(control: Control, count: int = 2) -> TaskSpec:
    instance = InstanceSpec(LaunchSpec("prog", ("prog",), ()))
    return TaskSpec("t", control, (instance,) * count)


@pytest.mark.parametrize(
    ("task", "slot", "record", "restarts"),
    [
        (spec(Control.WAIT), 0, ended(5.0), True),
        (spec(Control.NOWAIT), 1, ended(0.1), True),
        (spec(Control.ADOPT), 0, ended(5.0, expected=True), True),
        # Run to completion: only a start that did not happen is tried again.
        (spec(Control.ONCE), 0, ended(5.0), False),
        (spec(Control.EVENT), 0, ended(0.0, error="no such file"), True),
        # A slot beyond the count, or a task no longer wanted, is not started again.
        (spec(Control.WAIT), 2, ended(5.0), False),
        (None, 0, ended(0.0, error="no such file"), False),
    ],
)
def test_restarts(task: TaskSpec | None, slot: int, record: ExitRecord, restarts: bool) -> None:
    assert restart.restarts(task, slot, record) is restarts
