"""Whether a task is in the state it is wanted in: running, done, stopped on purpose...

One rule for the server (/status/summary, ?state=wanted) and the client (`taskforce
status` exits 3 otherwise), so that the two always agree.
"""

from __future__ import annotations

from collections.abc import Iterable

# The states that are what was asked for; any other (starting, backing off, failed...)
# is not.
WANTED_STATES = frozenset({"running", "off", "suspend", "done", "pending", "removed"})


def is_wanted(state: object, statuses: Iterable[object]) -> bool:
    """Whether a task in `state`, whose processes last exited with `statuses` (their
    `status` in /status/tasks, None while running), is as wanted."""
    if state not in WANTED_STATES:
        return False
    # A run-to-completion task that failed is done, but not as wanted.
    return state != "done" or all(status in (0, None) for status in statuses)
