"""How a task process's exit is told: the log line, and the event for notifications."""

from __future__ import annotations

import logging
from typing import Protocol

from taskforce.core.planner import ExitOutcome
from taskforce.runtime.processes import spawn

log = logging.getLogger("taskforce")

# Log every one of the first few failures in a row, then one in this many.
_FAILURE_LOG_FIRST = 3
_FAILURE_LOG_EVERY = 10


class Emit(Protocol):
    def __call__(self, event: str, task: str | None, detail: str, **extra: object) -> None: ...


def log_exit(pid: int | None, outcome: ExitOutcome, emit: Emit) -> None:
    """Log a task process's exit (or failed start) at the level it deserves, and tell
    `emit` of the unexpected ones; a crash loop is logged in full only at first."""
    record = outcome.record
    name = label(outcome)
    if record.error is not None:
        what = f"could not start: {record.error}"
    else:
        what = f"pid {pid} {spawn.describe_status(record.status)} after {record.uptime:.3g}s"
        if record.cause is not None:
            what += f" ({record.cause})"
    if record.expected:
        log.info("%s: %s", name, what)
        return
    if outcome.gave_up:
        # Said once: the task stays down until started again.
        log.error(
            "%s: %s: giving up, restart.max_failures reached ('taskforce start %s' starts "
            "it again)",
            name,
            what,
            outcome.task,
        )
        emit(
            "failed", outcome.task, what, instance=outcome.slot, pid=pid, failures=outcome.failures
        )
        return
    if not outcome.restarting:
        log.info("%s: %s", name, what)
        return
    cause = {} if record.cause is None else {"cause": record.cause}
    if not outcome.failed:
        log.warning("%s: %s, restarting", name, what)
        emit("exited", outcome.task, what, instance=outcome.slot, pid=pid, **cause)
        return
    if outcome.failures <= _FAILURE_LOG_FIRST or outcome.failures % _FAILURE_LOG_EVERY == 0:
        event = "exited" if outcome.failures == 1 else "flapping"
        emit(
            event,
            outcome.task,
            what,
            instance=outcome.slot,
            pid=pid,
            failures=outcome.failures,
            retry_in=outcome.retry_in,
            **cause,
        )
        quiet = ""
        if outcome.failures == _FAILURE_LOG_FIRST:
            quiet = f"; further failures are logged one in {_FAILURE_LOG_EVERY}"
        log.warning(
            "%s: %s, failure %d in a row, retrying in %.3gs%s",
            name,
            what,
            outcome.failures,
            outcome.retry_in,
            quiet,
        )


def label(outcome: ExitOutcome) -> str:
    """task[slot], as log lines name an instance."""
    return f"{outcome.task}[{outcome.slot}]"
