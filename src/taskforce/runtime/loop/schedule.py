"""Scheduled runs: one event-loop timer per task with a `schedule`, none without.

An `interval` schedule counts on the monotonic clock from when it is armed; a `cron`
schedule is due at a wall time (:func:`taskforce.config.schedule.next_cron` computes it in
the schedule's time zone, so daylight saving changes are cron's business), but the loop's
timers run on the monotonic clock, which does not follow a change of the wall clock. So a
cron timer sleeps at most ``recheck`` seconds (a minute, cron's own resolution) and, when
it fires, looks at the wall clock again: if the clock was set back it sleeps on, if it was
set forward past the due time the task runs once (missed runs are not caught up) and the
next time is computed from the new wall time.

(A CLOCK_REALTIME timerfd with TFD_TIMER_CANCEL_ON_SET would hear of a clock change at
once without the periodic look, but Python 3.11 has no timerfd; the look costs one
wake-up a minute, and only while a cron schedule is configured.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import tzinfo

from taskforce.core.spec import ScheduleSpec, TaskSpec
from taskforce.core.vocabulary import Overlap

log = logging.getLogger("taskforce")

# Seconds a cron timer sleeps at most before it looks at the wall clock again.
RECHECK = 60.0


@dataclass(slots=True)
class _Entry:
    schedule: ScheduleSpec
    zone: tzinfo | None = None  # cron: where its expression is read
    due: float = 0.0  # cron: wall time; interval: loop (monotonic) time
    timer: asyncio.TimerHandle | None = None


class Scheduler:
    """Calls `fire(task, overlap)` whenever a scheduled task's run comes due."""

    def __init__(
        self,
        fire: Callable[[str, Overlap], None],
        wall: Callable[[], float] = time.time,
        recheck: float = RECHECK,
    ) -> None:
        self._fire = fire
        self._wall = wall
        self._recheck = recheck
        self._loop: asyncio.AbstractEventLoop | None = None
        self._entries: dict[str, _Entry] = {}

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Arm the timers of the schedules configured so far."""
        self._loop = loop
        for name, entry in self._entries.items():
            self._arm(name, entry)

    def close(self) -> None:
        for entry in self._entries.values():
            if entry.timer is not None:
                entry.timer.cancel()
                entry.timer = None
        self._loop = None

    def configure(self, tasks: Mapping[str, TaskSpec], names: Iterable[str] | None = None) -> None:
        """Follow the schedules of a new desired state (an unchanged one keeps its timer).
        `names`, when known, are the tasks whose spec may have changed since the last call:
        the others are not looked at."""
        for name in [n for n in self._entries if _schedule(tasks.get(n)) is None]:
            self._drop(name)
        for name in tasks if names is None else names:
            spec = tasks.get(name)
            if spec is None:
                continue
            schedule = spec.schedule
            entry = self._entries.get(name)
            if schedule is None or (entry is not None and entry.schedule == schedule):
                continue
            if entry is not None:
                self._drop(name)
            entry = self._entries[name] = _Entry(schedule)
            if schedule.cron is not None:
                from taskforce.config.schedule import zone

                entry.zone = zone(schedule.timezone)
            if self._loop is not None:
                self._arm(name, entry)

    def next_run(self, task: str) -> float | None:
        """When the task next runs by its schedule (Unix time), or None."""
        entry = self._entries.get(task)
        if entry is None or entry.timer is None:
            return None
        if entry.schedule.cron is not None:
            return entry.due
        assert self._loop is not None
        return self._wall() + max(0.0, entry.due - self._loop.time())

    def _drop(self, name: str) -> None:
        entry = self._entries.pop(name)
        if entry.timer is not None:
            entry.timer.cancel()

    def _arm(self, name: str, entry: _Entry) -> None:
        assert self._loop is not None
        schedule = entry.schedule
        if schedule.interval is not None:
            entry.due = self._loop.time() + schedule.interval
            entry.timer = self._loop.call_at(entry.due, self._interval_due, name, entry)
        else:
            entry.due = self._next_cron(entry, self._wall())
            self._sleep(name, entry)

    def _interval_due(self, name: str, entry: _Entry) -> None:
        assert self._loop is not None and entry.schedule.interval is not None
        interval, now = entry.schedule.interval, self._loop.time()
        # A loop held up past several runs runs once, and keeps to its beat.
        missed = max(0, int((now - entry.due) // interval))
        entry.due += (missed + 1) * interval
        entry.timer = self._loop.call_at(entry.due, self._interval_due, name, entry)
        self._fire(name, entry.schedule.overlap)

    def _next_cron(self, entry: _Entry, after: float) -> float:
        from taskforce.config.schedule import next_cron

        assert entry.schedule.cron is not None and entry.zone is not None
        return next_cron(entry.schedule.cron, entry.zone, after)

    def _sleep(self, name: str, entry: _Entry) -> None:
        assert self._loop is not None
        delay = min(self._recheck, max(0.0, entry.due - self._wall()))
        entry.timer = self._loop.call_later(delay, self._cron_look, name, entry)

    def _cron_look(self, name: str, entry: _Entry) -> None:
        now = self._wall()
        if now < entry.due:
            self._sleep(name, entry)  # not yet (or the clock was set back)
            return
        late = now - entry.due
        if late > self._recheck + 1:
            log.info("%s: scheduled run %.0fs late (the clock moved forward?)", name, late)
        # From the due time as well as now: a clock set back cannot give this run twice.
        entry.due = self._next_cron(entry, max(now, entry.due))
        self._sleep(name, entry)
        self._fire(name, entry.schedule.overlap)


def _schedule(spec: TaskSpec | None) -> ScheduleSpec | None:
    return spec.schedule if spec is not None else None
