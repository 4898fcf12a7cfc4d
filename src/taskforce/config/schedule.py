"""Schedules: the `schedule` key of a task, and when a cron expression next comes due.

:func:`next_cron` is a pure function of the expression, the time zone and the wall time
now: the runtime's timer (:mod:`taskforce.runtime.loop.schedule`) asks it for the next run and
sleeps on the monotonic clock until then. Cron expressions are read by cronsim, which
follows cron on daylight saving changes: a time skipped by the change runs when the clock
goes past it, a daily time repeated by it runs once.

cronsim and zoneinfo are imported only when a schedule is configured (memory).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING

from taskforce.config.shapes import Parsed

if TYPE_CHECKING:
    from cronsim import CronSim

# The @names of cron (cronsim reads only the five fields).
_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

# Where the system's local time zone is described when TZ does not say.
_LOCALTIME = "/etc/localtime"


def zone(name: str | None) -> tzinfo:
    """The time zone called `name` (an IANA name such as Europe/Paris); None: local time
    (TZ, else /etc/localtime, else UTC). Raises ValueError for an unknown name."""
    import zoneinfo

    try:
        if name is not None:
            return zoneinfo.ZoneInfo(name)
        local = os.environ.get("TZ", "").removeprefix(":")
        if local:
            return zoneinfo.ZoneInfo(local)
        with open(_LOCALTIME, "rb") as file:
            return zoneinfo.ZoneInfo.from_file(file, key="localtime")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as err:
        if name is None:
            return UTC
        raise ValueError(f"unknown time zone {name!r}") from err
    except OSError:
        return UTC


def cron(expression: str, start: datetime) -> CronSim:
    """The times `expression` names after `start` (raises ValueError when it is not a
    cron expression)."""
    from cronsim import CronSim, CronSimError

    try:
        return CronSim(_ALIASES.get(expression.strip().lower(), expression), start)
    except CronSimError as err:
        raise ValueError(f"not a cron expression ({err}): {expression!r}") from err


def next_cron(expression: str, where: tzinfo, after: float) -> float:
    """The first time (Unix seconds) strictly after `after` that `expression` names, in
    the wall time of `where`."""
    return next(cron(expression, datetime.fromtimestamp(after, where))).timestamp()


# A five-field cron expression (minute hour day month weekday), or @hourly and its kin.
CRON_EXPRESSION = Parsed(
    "a cron expression such as '*/5 * * * *'",
    lambda text: cron(text, datetime.now(UTC)),
    strip=True,
)
# An IANA time zone name, such as Europe/Paris or UTC.
TIME_ZONE = Parsed("a time zone name such as 'Europe/Paris'", zone)
