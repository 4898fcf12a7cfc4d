"""When a cron schedule comes due: a pure function of the expression, the time zone and
the wall time, checked around daylight saving changes; and the checks of `schedule`."""

from __future__ import annotations

import itertools
import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from taskforce.config.errors import ConfigError
from taskforce.config.load import parse_config
from taskforce.config.schedule import next_cron

PARIS = ZoneInfo("Europe/Paris")


def at(text: str, fold: int = 0) -> float:
    """Unix time of a Paris wall time."""
    return datetime.fromisoformat(text).replace(tzinfo=PARIS, fold=fold).timestamp()


def paris(t: float) -> str:
    return datetime.fromtimestamp(t, PARIS).isoformat()


def runs(expression: str, start: str, n: int = 3) -> list[str]:
    out, t = [], at(start)
    for _ in range(n):
        t = next_cron(expression, PARIS, t)
        out.append(paris(t))
    return out


def test_every_five_minutes_strictly_after_now() -> None:
    assert runs("*/5 * * * *", "2024-01-15T10:00:00") == [
        "2024-01-15T10:05:00+01:00",
        "2024-01-15T10:10:00+01:00",
        "2024-01-15T10:15:00+01:00",
    ]
    assert runs("*/5 * * * *", "2024-01-15T10:04:59.9", 1) == ["2024-01-15T10:05:00+01:00"]


def test_a_daily_time_skipped_by_spring_forward_runs_when_the_clock_passes_it() -> None:
    # 2024-03-31 in Paris: 02:00 CET becomes 03:00 CEST; 02:30 does not exist that night.
    assert runs("30 2 * * *", "2024-03-30T12:00:00") == [
        "2024-03-31T03:00:00+02:00",
        "2024-04-01T02:30:00+02:00",
        "2024-04-02T02:30:00+02:00",
    ]


def test_a_daily_time_repeated_by_fall_back_runs_once() -> None:
    # 2024-10-27 in Paris: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
    first, second = runs("30 2 * * *", "2024-10-26T12:00:00", 2)
    assert (first, second) == ("2024-10-27T02:30:00+02:00", "2024-10-28T02:30:00+01:00")
    # Asked from within the repeated hour, after its first 02:30: not again that night.
    assert paris(next_cron("30 2 * * *", PARIS, at("2024-10-27T02:40:00", fold=1))) == (
        "2024-10-28T02:30:00+01:00"
    )


def test_interval_like_expressions_keep_their_pace_across_the_change() -> None:
    # Real time between the runs: 30 minutes whatever the wall clock does.
    start = at("2024-10-27T01:50:00")
    times = []
    t = start
    for _ in range(5):
        t = next_cron("*/30 * * * *", PARIS, t)
        times.append(t)
    gaps = {round(b - a) for a, b in itertools.pairwise(times)}
    assert gaps == {1800}


def test_cron_names_stand_for_their_expressions() -> None:
    assert runs("@hourly", "2024-01-15T10:20:00", 1) == ["2024-01-15T11:00:00+01:00"]
    assert runs("@daily", "2024-01-15T10:20:00", 1) == ["2024-01-16T00:00:00+01:00"]


def test_the_time_zone_decides_the_wall_time() -> None:
    t = datetime(2024, 6, 1, 12, 0, tzinfo=ZoneInfo("UTC")).timestamp()
    tokyo = next_cron("0 9 * * *", ZoneInfo("Asia/Tokyo"), t)
    assert datetime.fromtimestamp(tokyo, ZoneInfo("Asia/Tokyo")).isoformat() == (
        "2024-06-02T09:00:00+09:00"
    )


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ({"cron": "61 * * * *"}, "tasks.job.schedule.cron: not a cron expression"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"interval": 0}, "tasks.job.schedule.interval: must be greater than 0"),
        ({"run_on_start": True}, "tasks.job.schedule: needs one of 'cron' or 'interval'"),
        ({"interval": 5, "overlap": "later"}, "tasks.job.schedule.overlap"),
        ({"interval": 5, "timezone": "UTC"}, "timezone"),
    ],
)
def test_bad_schedules_are_refused_with_where_and_what(
    schedule: dict[str, object], message: str
) -> None:
    task = {"commands": {"start": ["true"]}, "control": "once", "schedule": schedule}
    with pytest.raises(ConfigError) as err:
        parse_config(json.dumps({"tasks": {"job": task}}))
    assert message in "\n".join(str(p) for p in err.value.problems)
