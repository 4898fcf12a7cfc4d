"""The words the core plans with: how a task is controlled, placed and restarted, and what
its events are.

The configuration is written in these words (:mod:`taskforce.config.model` uses them), but
they belong to the core, which must not depend on how a configuration is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Control(StrEnum):
    WAIT = "wait"  # keep `count` processes running, restart on exit
    ONCE = "once"  # run at start-up (or when onexit asks), never restarted
    OFF = "off"  # configured but not run; tasks requiring it wait
    SUSPEND = "suspend"  # not run; tasks requiring it proceed as if it had run
    NOWAIT = "nowait"  # background process found through its pidfile (planned)
    ADOPT = "adopt"  # like nowait, left running when taskforce stops (planned)
    EVENT = "event"  # like once, but only run when an event starts it (planned)


# Controls whose processes are kept running and restarted when they exit.
KEEP_RUNNING = frozenset({Control.WAIT, Control.NOWAIT, Control.ADOPT})
# Controls whose process is a daemon found through its pidfile, and checked by probes.
DAEMON = frozenset({Control.NOWAIT, Control.ADOPT})
# Controls whose processes run to completion once per requested run.
RUN_TO_COMPLETION = frozenset({Control.ONCE, Control.EVENT})


class Placement(StrEnum):
    HOST = "host"  # on every host where the task is in scope
    CLUSTER = "cluster"  # on one host of those (the fleet elects it through etcd)


class EventType(StrEnum):
    FILE_CHANGE = "file_change"
    PYTHON = "python"
    RESTART = "restart"
    SELF = "self"


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """How quickly a process that keeps failing is restarted.

    A process that ran for at least `min_uptime` seconds is restarted at once. One
    that exits sooner counts as a failure: the n-th failure in a row waits
    ``initial_delay * factor ** (n - 1)`` seconds, capped at `max_delay`.

    With `max_failures`, a slot gives up (the task is `failed`, no longer restarted) at
    that many failures: in a row, or with `window`, within the last `window` seconds.
    """

    min_uptime: float = 1.0
    initial_delay: float = 0.5
    factor: float = 2.0
    max_delay: float = 30.0
    max_failures: int | None = None  # None: never give up
    window: float | None = None  # None: failures in a row


class Overlap(StrEnum):
    """What a schedule does when a run is due while the previous one is still going."""

    SKIP = "skip"  # the due run is dropped
    QUEUE = "queue"  # it runs when the current one ends (one pending run at most)
