"""FileWatcher with force_polling: every kind of change is seen, the timer runs only when needed."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from support.watching import watching

INTERVAL = 0.02


def test_polling_sees_each_kind_of_change(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    conf = tmp_path / "app.conf"
    conf.write_text("a")
    later = tmp_path / "later" / "new.conf"

    async def test() -> None:
        async with watching(force_polling=True, poll_interval=INTERVAL) as (w, rec):
            assert w.backend == "polling"
            w.set_paths([conf, later])
            assert w.watch_count == 0

            async def step(change: Callable[[], object], path: Path = conf) -> None:
                start = len(rec.calls)
                change()
                await rec.expect(path, start=start)

            await step(lambda: conf.write_text("longer content"))  # in-place write

            def replace() -> None:
                staged = tmp_path / "staged"
                staged.write_text("same size.....")
                os.replace(staged, conf)

            await step(replace)
            await step(lambda: conf.chmod(0o700))
            await step(conf.unlink)
            await step(lambda: conf.write_text("back"))

            def create_later() -> None:
                later.parent.mkdir()
                later.write_text("x")

            await step(create_later, later)

    with caplog.at_level(logging.WARNING, logger="taskforce.watch"):
        asyncio.run(test())
    warnings = [r for r in caplog.records if "polling" in r.getMessage()]
    assert len(warnings) == 1


def test_polling_timer_runs_only_while_there_are_paths(tmp_path: Path) -> None:
    async def test() -> None:
        async with watching(force_polling=True, poll_interval=INTERVAL) as (w, _):
            w.set_paths([])
            assert w._poller is None
            w.set_paths([tmp_path / "a"])
            assert w._poller is not None and w._poller._timer is not None
            w.set_paths([])
            assert w._poller._timer is None
            w.set_paths([tmp_path / "a"])
            assert w._poller._timer is not None
        assert w._poller is not None and w._poller._timer is None

    asyncio.run(test())


def test_polling_with_debounce_coalesces(tmp_path: Path) -> None:
    paths = [tmp_path / f"f{i}" for i in range(5)]

    async def test() -> None:
        async with watching(force_polling=True, poll_interval=INTERVAL, debounce=0.5) as (w, rec):
            w.set_paths(paths)
            for p in paths:
                p.write_text("x")
            await rec.expect(*paths)
            assert rec.calls[0] == {str(p) for p in paths}

    asyncio.run(test())
