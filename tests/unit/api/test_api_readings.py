"""api/readings.py on a real event loop, with a fake reader: the reading runs in a worker
thread while the loop goes on, requests under way share it, and the figures serve for
USAGE_MAX_AGE seconds."""

from __future__ import annotations

import asyncio
import threading

import pytest

from support.wait import DEADLINE
from taskforce.api import readings as readings_module
from taskforce.api.readings import USAGE_MAX_AGE, Readings
from taskforce.runtime.processes.usage import Reading


class Reader:
    """Reads a key `k` as (k's number, None, None); held until let go when `hold`."""

    def __init__(self, hold: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.threads: set[int] = set()  # where it read
        self.targeted: set[int] = set()  # where the targets were taken
        self.started = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.clock = 0.0
        self.advance = 0.0  # the clock moves by this during a reading
        self.fail = False

    def targets(self, keys: list[str]) -> list[str]:
        self.targeted.add(threading.get_ident())
        return [f"/{key}" for key in keys]

    def read(self, targets: list[str]) -> list[Reading]:
        self.threads.add(threading.get_ident())
        self.calls.append([t[1:] for t in targets])
        self.started.set()
        assert self.release.wait(DEADLINE), "the test never let the reading go"
        self.clock += self.advance
        if self.fail:
            raise OSError("no /proc")
        return [(float(t[1:]), None, None) for t in targets]

    def readings(self) -> Readings[str, str]:
        return Readings(self.targets, self.read, lambda: self.clock)


def test_the_loop_goes_on_and_requests_under_way_share_the_reading() -> None:
    reader = Reader(hold=True)

    async def main() -> None:
        readings = reader.readings()
        asked = [asyncio.ensure_future(readings.of(["1", "2"])) for _ in range(3)]
        assert await asyncio.to_thread(reader.started.wait, DEADLINE)
        # The reading is held in its thread: the loop still runs its callbacks.
        ticks = 0
        for _ in range(10):
            await asyncio.sleep(0)
            ticks += 1
        assert ticks == 10 and not any(a.done() for a in asked)
        reader.release.set()
        found = await asyncio.gather(*asked)
        assert found[0] == {"1": (1.0, None, None), "2": (2.0, None, None)}
        assert found[1] is found[0] and found[2] is found[0]

    asyncio.run(main())
    assert reader.calls == [["1", "2"]]
    # Targets taken on the loop's thread; the files read in one other thread.
    assert reader.targeted == {threading.get_ident()}
    assert len(reader.threads) == 1 and threading.get_ident() not in reader.threads


def test_a_request_for_more_waits_then_reads_only_what_is_missing() -> None:
    reader = Reader(hold=True)

    async def main() -> None:
        readings = reader.readings()
        few = asyncio.ensure_future(readings.of(["1"]))
        assert await asyncio.to_thread(reader.started.wait, DEADLINE)
        more = asyncio.ensure_future(readings.of(["1", "2", "3"]))
        await asyncio.sleep(0)
        reader.release.set()
        assert await few == {"1": (1.0, None, None)}
        assert set(await more) == {"1", "2", "3"}

    asyncio.run(main())
    assert reader.calls == [["1"], ["2", "3"]]


def test_readings_serve_for_their_age_then_are_read_anew() -> None:
    reader = Reader()

    async def main() -> None:
        readings = reader.readings()
        await readings.of(["1"])
        reader.clock += USAGE_MAX_AGE / 2
        await readings.of(["1"])  # served again
        await readings.of(["1", "2"])  # "2" added; the whole still dated by "1"
        reader.clock += USAGE_MAX_AGE
        await readings.of(["2"])  # too old: a new whole

    asyncio.run(main())
    assert reader.calls == [["1"], ["2"], ["2"]]


def test_readings_are_dropped_once_too_old_without_a_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """10,000 processes' figures are megabytes: not held until the next request. The
    drop runs by the loop's clock, once a reading (an idle taskforce has none to run)."""
    monkeypatch.setattr(readings_module, "USAGE_MAX_AGE", 0.05)
    reader = Reader()

    async def main() -> None:
        readings = reader.readings()
        assert await readings.of(["1", "2"]) == {"1": (1.0, None, None), "2": (2.0, None, None)}
        end = asyncio.get_running_loop().time() + DEADLINE
        while readings._kept:  # the fake clock stands still: only the drop empties it
            assert asyncio.get_running_loop().time() < end, "the readings were kept"
            await asyncio.sleep(0.01)  # polling interval of a deadline-bounded wait
        await readings.of(["1"])  # read anew, though the fake clock says fresh

    asyncio.run(main())
    assert reader.calls == [["1", "2"], ["1"]]


def test_a_slow_reading_serves_its_requests_however_long_it_took() -> None:
    """Dated when it began, a reading may be old when it ends: the requests that waited
    for it take it anyway (reading again would never end on a slow enough machine)."""
    reader = Reader()
    reader.advance = 3 * USAGE_MAX_AGE

    async def main() -> None:
        readings = reader.readings()
        found = await asyncio.gather(readings.of(["1"]), readings.of(["1"]))
        assert found[0] == found[1] == {"1": (1.0, None, None)}

    asyncio.run(main())
    assert reader.calls == [["1"]]


def test_a_failed_reading_fails_its_requests_and_the_next_one_reads_again() -> None:
    reader = Reader()
    reader.fail = True

    async def main() -> None:
        readings = reader.readings()
        failed = await asyncio.gather(
            readings.of(["1"]), readings.of(["1"]), return_exceptions=True
        )
        assert [type(f) for f in failed] == [OSError, OSError]
        reader.fail = False
        assert await readings.of(["1"]) == {"1": (1.0, None, None)}

    asyncio.run(main())
    assert reader.calls == [["1"], ["1"]]


def test_a_request_that_goes_away_leaves_the_reading_to_the_others() -> None:
    reader = Reader(hold=True)

    async def main() -> None:
        readings = reader.readings()
        gone = asyncio.ensure_future(readings.of(["1"]))
        stays = asyncio.ensure_future(readings.of(["1"]))
        assert await asyncio.to_thread(reader.started.wait, DEADLINE)
        gone.cancel()
        reader.release.set()
        assert await stays == {"1": (1.0, None, None)}
        with pytest.raises(asyncio.CancelledError):
            await gone

    asyncio.run(main())
    assert reader.calls == [["1"]]
