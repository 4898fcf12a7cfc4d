"""Watching a directory's entries (`listing`): what include patterns need to see new files."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from support.watching import watching
from taskforce.watch import is_listing, listing

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="inotify is Linux only")


def test_a_listing_is_a_path_no_file_can_have() -> None:
    assert listing("/etc/tf/conf.d/") == "/etc/tf/conf.d/\0"
    assert is_listing(listing("/etc/tf/conf.d")) and not is_listing("/etc/tf/conf.d")


def test_entries_coming_going_and_renamed_are_reported(tmp_path: Path) -> None:
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    sentinel = tmp_path / "sentinel"
    watched = listing(str(conf_d))

    async def main() -> None:
        async with watching() as (watcher, rec):
            watcher.set_paths([watched, sentinel])
            steps: list[Callable[[], object]] = [
                lambda: (conf_d / "a.conf").write_text("a"),
                lambda: os.rename(conf_d / "a.conf", conf_d / "b.conf"),
                lambda: (conf_d / "b.conf").unlink(),
            ]
            for step in steps:
                start = len(rec.calls)
                step()
                await rec.expect(watched, start=start)
            start = len(rec.calls)
            (conf_d / "c.conf").write_text("c")
            await rec.expect(watched, start=start)
            # Writing an existing file is no change of the listing: a later change of the
            # sentinel arrives with nothing before it (inotify keeps events in order).
            start = len(rec.calls)
            (conf_d / "c.conf").write_text("changed")
            sentinel.write_text("x")
            await rec.expect(sentinel, start=start)
            assert watched not in rec.seen(start)

    asyncio.run(main())


def test_a_directory_that_appears_later_and_polling(tmp_path: Path) -> None:
    conf_d = tmp_path / "conf.d"
    watched = listing(str(conf_d))

    async def main(force_polling: bool) -> None:
        async with watching(force_polling=force_polling, poll_interval=0.05) as (watcher, rec):
            watcher.set_paths([watched])
            conf_d.mkdir()
            await rec.expect(watched)
            start = len(rec.calls)
            # Polled: the directory's times change with its entries.
            (conf_d / "new.conf").write_text("x")
            await rec.expect(watched, start=start)

    asyncio.run(main(False))
    (conf_d / "new.conf").unlink()
    conf_d.rmdir()
    asyncio.run(main(True))
