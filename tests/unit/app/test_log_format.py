"""taskforce's own log lines: the time formatted once a second reads as logging's own."""

from __future__ import annotations

import logging
import time

from taskforce.app.logs import _Formatter


def test_the_cached_time_reads_as_the_standard_formatter_writes_it() -> None:
    standard = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    cached = _Formatter("%(asctime)s %(levelname)s %(message)s")
    now = time.time()
    # Within a second, across a second and a minute, and back to an earlier second.
    for created in (now, now + 0.0004, now + 0.9996, now + 1.5, now + 61.25, now - 3600.75):
        record = logging.LogRecord("taskforce", logging.INFO, __file__, 1, "m %s", ("x",), None)
        record.created = created
        record.msecs = (created - int(created)) * 1000
        assert cached.format(record) == standard.format(record)


def test_a_date_format_given_is_used() -> None:
    record = logging.LogRecord("taskforce", logging.INFO, __file__, 1, "m", (), None)
    cached = _Formatter("%(asctime)s %(message)s", datefmt="%H:%M")
    assert cached.format(record) == logging.Formatter("%(asctime)s %(message)s", "%H:%M").format(
        record
    )
