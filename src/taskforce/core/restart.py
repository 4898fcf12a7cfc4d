"""The restart policy: which ends of a process are failures, how long a slot that keeps
failing waits before it is started again, and when it gives up (max_failures).

Pure functions of the policy, the count of failures so far and the exit record; the
planner keeps the count on each instance and passes ``now`` in.
"""

from __future__ import annotations

from dataclasses import dataclass

from taskforce.core.spec import TaskSpec
from taskforce.core.state import ExitRecord
from taskforce.core.vocabulary import KEEP_RUNNING, RUN_TO_COMPLETION, RestartPolicy


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one end of a process means for its slot's restarts."""

    failed: bool
    # Failures in a row, this one included (0 after a run that was not a failure).
    failures: int
    # Seconds before the slot may start again (0: at once).
    delay: float


def is_failure(policy: RestartPolicy, spec: TaskSpec | None, record: ExitRecord) -> bool:
    """A start that did not happen, or a run that ended by itself before min_uptime.

    A task run to completion (once, event) that exits 0 has done its job, however quickly.
    """
    if record.error is not None:
        return True
    if record.status == 0 and spec is not None and spec.control in RUN_TO_COMPLETION:
        return False
    return not record.expected and record.uptime < policy.min_uptime


def backoff_delay(policy: RestartPolicy, failures: int) -> float:
    """Seconds the `failures`-th failure in a row waits before the next start."""
    return min(policy.max_delay, policy.initial_delay * policy.factor ** (failures - 1))


def judge(
    policy: RestartPolicy, failures: int, spec: TaskSpec | None, record: ExitRecord
) -> Verdict:
    """The verdict on an end of a process of `spec`, after `failures` failures in a row."""
    if is_failure(policy, spec, record):
        return Verdict(True, failures + 1, backoff_delay(policy, failures + 1))
    return Verdict(False, 0, 0.0)


def recent_failures(
    policy: RestartPolicy, times: tuple[float, ...], failed: bool, now: float
) -> tuple[float, ...]:
    """The failure times to keep for restart.window after an end (`failed`: a failure):
    those within the window, at most max_failures of them; none without a window."""
    if policy.max_failures is None or policy.window is None:
        return ()
    kept = (*times, now) if failed else times
    return tuple(t for t in kept if t > now - policy.window)[-policy.max_failures :]


def gives_up(policy: RestartPolicy, failures: int, times: tuple[float, ...]) -> bool:
    """Whether a slot has failed max_failures times: in a row (`failures`), or with a
    window, within it (`times`, from recent_failures)."""
    if policy.max_failures is None:
        return False
    count = failures if policy.window is None else len(times)
    return count >= policy.max_failures


def steady_at(policy: RestartPolicy, started_at: float) -> float:
    """When a process started at `started_at` has run long enough to end its failures."""
    return started_at + policy.min_uptime


def restarts(spec: TaskSpec | None, slot: int, record: ExitRecord) -> bool:
    """Whether the slot is started again after this end (a failed start is retried)."""
    return (
        spec is not None
        and slot < spec.count
        and (spec.control in KEEP_RUNNING or record.error is not None)
    )
