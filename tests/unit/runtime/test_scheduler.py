"""The scheduler's timers on a real event loop, with the wall clock faked: cron runs come
due at wall times, and a wall clock set forward or back is followed (the loop's own timers
run on the monotonic clock)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

from support.wait import until
from taskforce.core.spec import InstanceSpec, LaunchSpec, ScheduleSpec, TaskSpec
from taskforce.core.vocabulary import Control, Overlap
from taskforce.runtime.loop.schedule import Scheduler

# Wall-clock looks a few times a second, instead of once a minute.
RECHECK = 0.02


class Clock:
    """The faked wall clock; counts how often the scheduler has looked at it."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now

    async def looked_again(self) -> None:
        """Until the scheduler has looked at the clock a few times more (each look
        reads it about twice): what it saw by then, it has acted on."""
        enough = self.reads + 10
        await until(lambda: self.reads >= enough, "the scheduler to look at the clock")


def job(schedule: ScheduleSpec, name: str = "job") -> dict[str, TaskSpec]:
    launch = LaunchSpec("true", ("true",), ())
    return {name: TaskSpec(name, Control.ONCE, (InstanceSpec(launch),), schedule=schedule)}


def minute(hh: int, mm: int, ss: float = 0.0) -> float:
    return datetime(2024, 5, 1, hh, mm, tzinfo=UTC).timestamp() + ss


@contextlib.asynccontextmanager
async def scheduler(
    clock: Clock, schedule: ScheduleSpec, **more: ScheduleSpec
) -> AsyncIterator[tuple[Scheduler, list[str]]]:
    """A scheduler on the running loop for "job" (and a job for each of `more`), with the
    runs it fired; closed on the way out."""
    fired: list[str] = []
    s = Scheduler(lambda task, overlap: fired.append(task), wall=clock, recheck=RECHECK)
    jobs = job(schedule)
    for name, other in more.items():
        jobs.update(job(other, name))
    s.configure(jobs)
    s.start(asyncio.get_running_loop())
    try:
        yield s, fired
    finally:
        s.close()


def on_loop(case: Callable[[], Awaitable[None]]) -> Callable[[], None]:
    """Run an async test on a loop of its own (bounded in time)."""

    @functools.wraps(case)
    def run() -> None:
        asyncio.run(asyncio.wait_for(case(), 30))

    return run


EVERY_MINUTE = ScheduleSpec(cron="* * * * *", timezone="UTC")


@on_loop
async def test_a_cron_run_comes_due_when_the_wall_clock_reaches_it() -> None:
    clock = Clock(minute(10, 0, 30))
    async with scheduler(clock, EVERY_MINUTE) as (s, fired):
        assert s.next_run("job") == minute(10, 1)
        await clock.looked_again()
        assert fired == []
        clock.now = minute(10, 1, 0.001)
        await until(lambda: fired == ["job"], "the run at 10:01")
        assert s.next_run("job") == minute(10, 2)


@on_loop
async def test_a_clock_set_forward_runs_once_not_once_per_missed_time() -> None:
    clock = Clock(minute(10, 0, 30))
    async with scheduler(clock, EVERY_MINUTE) as (s, fired):
        clock.now = minute(13, 0, 10)  # three hours later in a blink
        await until(lambda: fired, "the run the jump made due")
        await clock.looked_again()
        assert fired == ["job"]
        assert s.next_run("job") == minute(13, 1)


@on_loop
async def test_a_clock_set_back_waits_for_the_due_time_again_and_never_repeats_a_run() -> None:
    clock = Clock(minute(10, 0, 59.99))
    async with scheduler(clock, EVERY_MINUTE) as (s, fired):
        clock.now = minute(10, 1, 0.5)
        await until(lambda: fired == ["job"], "the run at 10:01")
        clock.now = minute(10, 0, 50)  # set back before the run just made
        await clock.looked_again()
        assert fired == ["job"]
        assert s.next_run("job") == minute(10, 2)


@on_loop
async def test_interval_schedules_run_on_the_monotonic_clock() -> None:
    clock = Clock(minute(10, 0))
    async with scheduler(clock, ScheduleSpec(interval=0.05, overlap=Overlap.QUEUE)) as (_, fired):
        clock.now = minute(5, 0)  # the wall clock does not matter to an interval
        await until(lambda: len(fired) >= 3, "three runs")


@on_loop
async def test_a_schedule_removed_by_a_reload_stops_its_timer() -> None:
    every = ScheduleSpec(interval=0.05)
    async with scheduler(Clock(minute(10, 0)), every, kept=every) as (s, fired):
        s.configure(job(every, "kept"))
        assert s.next_run("job") is None
        # Three runs of the job kept, on the same beat: the removed one would have run too.
        await until(lambda: fired.count("kept") >= 3, "three runs of the job kept")
        assert "job" not in fired
