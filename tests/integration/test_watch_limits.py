"""inotify limits and failures degrade to polling, or to a full recheck, without failing."""

from __future__ import annotations

import asyncio
import errno
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support.watching import watching
from taskforce.watch import FileWatcher

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="inotify is Linux only")


def refuse_watches(w: FileWatcher, refused: Callable[[str], bool]) -> None:
    """Make inotify_add_watch fail with ENOSPC (the watch limit) for some directories."""
    ino: Any = w._kernel._ino  # type: ignore[union-attr]
    real = ino.add_watch

    def add_watch(path: str, mask: int) -> int:
        if refused(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return int(real(path, mask))

    ino.add_watch = add_watch


def test_watch_limit_falls_back_to_polling(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "fine").mkdir()
    polled = [tmp_path / "full" / f"f{i}" for i in range(3)]
    watched = tmp_path / "fine" / "app.conf"

    async def test() -> None:
        async with watching(poll_interval=0.02) as (w, rec):
            refuse_watches(w, lambda path: path.endswith("full"))
            w.set_paths([*polled, watched])
            assert w.backend == "inotify"
            assert w.polled_paths == {str(p) for p in polled}
            # Below the root (never renamed), "fine" but not "full".
            assert w.watch_count == len(tmp_path.resolve().parts)
            polled[1].write_text("seen by polling")
            watched.write_text("seen by inotify")
            await rec.expect(polled[1], watched)
            w.set_paths([watched])
            assert not w.polled_paths

    with caplog.at_level(logging.WARNING, logger="taskforce.watch"):
        asyncio.run(test())
    limit = [r for r in caplog.records if "fs.inotify.max_user_watches" in r.getMessage()]
    assert len(limit) == 1


def test_watch_limit_while_rearming(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    conf = tmp_path / "later" / "app.conf"

    async def test() -> None:
        async with watching(poll_interval=0.02) as (w, rec):
            refuse_watches(w, lambda path: path.endswith("later"))
            w.set_paths([conf])
            assert not w.polled_paths
            conf.parent.mkdir()
            conf.write_text("x")
            await rec.expect(conf)
            assert w.polled_paths == {str(conf)}
            start = len(rec.calls)
            conf.write_text("longer")
            await rec.expect(conf, start=start)

    with caplog.at_level(logging.WARNING, logger="taskforce.watch"):
        asyncio.run(test())
    assert any("fs.inotify.max_user_watches" in r.getMessage() for r in caplog.records)


def test_no_inotify_instance_falls_back_to_polling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from taskforce.watch import inotify

    def too_many(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(inotify, "_open_inotify", too_many)
    conf = tmp_path / "app.conf"

    async def test() -> None:
        async with watching(poll_interval=0.02) as (w, rec):
            assert w.backend == "polling"
            w.set_paths([conf])
            conf.write_text("x")
            await rec.expect(conf)

    with caplog.at_level(logging.WARNING, logger="taskforce.watch"):
        asyncio.run(test())
    assert any("max_user_instances" in r.getMessage() for r in caplog.records)


def test_queue_overflow_reports_everything_and_rebuilds(tmp_path: Path) -> None:
    a, b = tmp_path / "a" / "x", tmp_path / "b" / "y"
    a.parent.mkdir()

    async def test() -> None:
        async with watching() as (w, rec):
            w.set_paths([a, b])
            ino: Any = w._kernel._ino  # type: ignore[union-attr]
            real = ino.read
            overflow_once = [(-1, 0x4000, 0, "")]

            def read(timeout: int | None = None) -> Any:
                events = real(timeout)
                if overflow_once:
                    # Lost events: b's directory appeared unseen.
                    b.parent.mkdir()
                    return [overflow_once.pop(), *events]
                return events

            ino.read = read
            a.write_text("1")
            await rec.expect(a, b)
            assert rec.calls[0] == {str(a), str(b)}
            # The rebuild found b's new directory (the root is not watched).
            assert w.watch_count == len(tmp_path.resolve().parts) - 1 + 2
            start = len(rec.calls)
            b.write_text("2")
            await rec.expect(b, start=start)

    asyncio.run(test())
