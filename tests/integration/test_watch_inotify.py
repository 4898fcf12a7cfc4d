"""FileWatcher on the real inotify backend: each kind of change, bursts, scale, cleanup.

Waits are on the callback (an asyncio.Event) with a generous deadline, never on sleeps. To show
that something was *not* reported, a sentinel file is changed afterwards and awaited: inotify
delivers events in order, so anything reported earlier would already be recorded.
"""

from __future__ import annotations

import asyncio
import os
import select
import sys
from pathlib import Path

import pytest

from support.watching import Recorder, watching
from taskforce.watch import FileWatcher

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="inotify is Linux only")


@pytest.fixture(autouse=True, params=["syscalls", "inotify_simple"])
def inotify_calls(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test twice: through taskforce._syscalls, and through inotify_simple (the
    fallback where the C extension could not be built)."""
    from taskforce.watch import inotify

    if request.param == "inotify_simple":
        monkeypatch.setattr(inotify, "_syscalls", None)
    # The C extension as inotify.py imported it (not re-exported: a private name).
    elif inotify._syscalls is None:  # type: ignore[attr-defined]
        pytest.skip("taskforce._syscalls was not built")
    return str(request.param)


def watches_to(directory: Path) -> int:
    """Watches on the way to ``directory`` included: one per directory below the root (the
    root cannot be renamed)."""
    return len(directory.resolve().parts) - 1


def inotify_fds() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify":
                count += 1
        except OSError:
            continue
    return count


async def barrier(rec: Recorder, sentinel: Path) -> None:
    """Change a watched sentinel and wait for it: earlier events have been delivered."""
    start = len(rec.calls)
    sentinel.write_text(str(start))
    await rec.expect(sentinel, start=start)


def test_in_place_write_is_reported_and_neighbours_are_not(tmp_path: Path) -> None:
    conf, other, sentinel = tmp_path / "app.conf", tmp_path / "other", tmp_path / "sentinel"
    conf.write_text("a")
    other.write_text("a")

    async def test() -> None:
        async with watching() as (w, rec):
            assert w.backend == "inotify"
            w.set_paths([conf, sentinel])
            other.write_text("b")
            with conf.open("a") as f:
                f.write("more")
            await rec.expect(conf)
            await barrier(rec, sentinel)
            assert str(other) not in rec.seen()
            assert rec.calls[0] == {str(conf)}

    asyncio.run(test())


def test_atomic_rename_over_is_reported(tmp_path: Path) -> None:
    conf = tmp_path / "app.conf"
    conf.write_text("old")

    async def test() -> None:
        async with watching() as (w, rec):
            w.set_paths([conf])
            new = tmp_path / ".app.conf.tmp"
            new.write_text("new")
            os.replace(new, conf)
            await rec.expect(conf)
            assert str(new) not in rec.seen()
            # The watch is on the directory, so the new file is watched as well.
            start = len(rec.calls)
            conf.write_text("newer")
            await rec.expect(conf, start=start)

    asyncio.run(test())


def test_delete_and_recreate(tmp_path: Path) -> None:
    conf = tmp_path / "app.conf"
    conf.write_text("a")

    async def test() -> None:
        async with watching() as (w, rec):
            w.set_paths([conf])
            conf.unlink()
            await rec.expect(conf)
            start = len(rec.calls)
            conf.write_text("again")
            await rec.expect(conf, start=start)

    asyncio.run(test())


def test_path_that_does_not_exist_yet(tmp_path: Path) -> None:
    conf = tmp_path / "later.conf"

    async def test() -> None:
        async with watching() as (w, rec):
            w.set_paths([str(conf)])
            assert w.watch_count == watches_to(tmp_path)
            conf.write_text("here")
            await rec.expect(conf)

    asyncio.run(test())


def test_directories_created_later_are_armed(tmp_path: Path) -> None:
    conf = tmp_path / "a" / "b" / "c" / "app.conf"
    sentinel = tmp_path / "sentinel"

    async def test() -> None:
        async with watching() as (w, rec):
            w.set_paths([conf, sentinel])
            assert w.watch_count == watches_to(tmp_path)
            (tmp_path / "a").mkdir()
            await barrier(rec, sentinel)
            assert str(conf) not in rec.seen()  # a directory on the way is not a change
            # Created in one go, faster than the watcher can follow level by level.
            conf.parent.mkdir(parents=True)
            conf.write_text("x")
            await rec.expect(conf)
            assert w.watch_count == watches_to(conf.parent)
            start = len(rec.calls)
            conf.write_text("y")
            await rec.expect(conf, start=start)

    asyncio.run(test())


def test_directory_removed_and_recreated(tmp_path: Path) -> None:
    conf = tmp_path / "d" / "app.conf"
    conf.parent.mkdir()
    conf.write_text("a")

    async def test() -> None:
        async with watching() as (w, rec):
            w.set_paths([conf])
            conf.unlink()
            conf.parent.rmdir()
            await rec.expect(conf)
            start = len(rec.calls)
            conf.parent.mkdir()
            conf.write_text("b")
            await rec.expect(conf, start=start)

    asyncio.run(test())


def test_directory_replaced_by_rename(tmp_path: Path) -> None:
    conf = tmp_path / "d" / "app.conf"
    conf.parent.mkdir()
    conf.write_text("a")
    staged = tmp_path / "staged"
    staged.mkdir()
    (staged / "app.conf").write_text("b")

    async def test() -> None:
        async with watching() as (w, rec):
            w.set_paths([conf])
            os.rename(conf.parent, tmp_path / "old")
            os.rename(staged, conf.parent)
            await rec.expect(conf)
            # The watch follows the path, not the directory that moved away.
            start = len(rec.calls)
            (tmp_path / "old" / "app.conf").write_text("ignored")
            conf.write_text("c")
            await rec.expect(conf, start=start)

    asyncio.run(test())


def test_ancestor_directory_replaced_by_rename(tmp_path: Path) -> None:
    conf = tmp_path / "app" / "etc" / "app.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text("v1")
    staged = tmp_path / "app.new" / "etc"
    staged.mkdir(parents=True)
    (staged / "app.conf").write_text("v2")

    async def test() -> None:
        async with watching() as (w, rec):
            w.set_paths([conf])
            # A deployment swapping whole trees: nothing happens inside app/etc itself.
            os.rename(tmp_path / "app", tmp_path / "app.old")
            os.rename(tmp_path / "app.new", tmp_path / "app")
            await rec.expect(conf)
            start = len(rec.calls)
            (tmp_path / "app.old" / "etc" / "app.conf").write_text("ignored")
            conf.write_text("v3")
            await rec.expect(conf, start=start)
            assert w.watch_count == watches_to(conf.parent)

    asyncio.run(test())


def test_chmod_is_reported(tmp_path: Path) -> None:
    prog = tmp_path / "prog"
    prog.write_text("#!/bin/sh\n")

    async def test() -> None:
        async with watching() as (w, rec):
            w.set_paths([prog])
            prog.chmod(0o755)
            await rec.expect(prog)

    asyncio.run(test())


def test_symlink_swap_and_link_target(tmp_path: Path) -> None:
    for release in ("v1", "v2"):
        (tmp_path / release).mkdir()
        (tmp_path / release / "app.conf").write_text(release)
    current = tmp_path / "current"
    current.symlink_to("v1")
    conf = current / "app.conf"
    sentinel = tmp_path / "sentinel"

    async def test() -> None:
        async with watching() as (w, rec):
            w.set_paths([conf, sentinel])
            (tmp_path / "v1" / "app.conf").write_text("edited")
            await rec.expect(conf)
            start = len(rec.calls)
            staged = tmp_path / "current.new"
            staged.symlink_to("v2")
            os.replace(staged, current)  # a deployment switching releases
            await rec.expect(conf, start=start)
            start = len(rec.calls)
            (tmp_path / "v1" / "app.conf").write_text("old release")
            await barrier(rec, sentinel)
            assert str(conf) not in rec.seen(start)
            (tmp_path / "v2" / "app.conf").write_text("edited")
            await rec.expect(conf, start=start)

    asyncio.run(test())


def test_burst_is_delivered_in_one_callback(tmp_path: Path) -> None:
    conf, sentinel = tmp_path / "app.conf", tmp_path / "sentinel"

    async def test() -> None:
        async with watching() as (w, rec):
            w.set_paths([conf, sentinel])
            # Written without yielding to the loop: all events wait in one read.
            for i in range(100):
                conf.write_text(str(i))
            await rec.expect(conf)
            await barrier(rec, sentinel)
            assert len(rec.calls) == 2

    asyncio.run(test())


def test_debounce_coalesces_a_spread_out_burst(tmp_path: Path) -> None:
    paths = [tmp_path / f"f{i}" for i in range(10)]
    sentinel = tmp_path / "sentinel"

    async def test() -> None:
        async with watching(debounce=1.0) as (w, rec):
            w.set_paths([*paths, sentinel])
            for i in range(100):
                paths[i % 10].write_text(str(i))
                await asyncio.sleep(0)  # let the loop read each event on its own
            await rec.expect(*paths)
            await barrier(rec, sentinel)
            assert rec.calls[0] == {str(p) for p in paths}
            assert len(rec.calls) == 2

    asyncio.run(test())


def test_paths_in_one_directory_share_a_watch(tmp_path: Path) -> None:
    a, b, sentinel = tmp_path / "a", tmp_path / "b", tmp_path / "sub" / "sentinel"
    sentinel.parent.mkdir()

    async def test() -> None:
        async with watching() as (w, rec):
            here = watches_to(tmp_path)
            w.set_paths([a, b])
            assert w.watch_count == here
            w.set_paths([a, b, sentinel])
            assert w.watch_count == here + 1
            w.set_paths([b, sentinel])
            assert w.watch_count == here + 1
            a.write_text("no longer watched")
            b.write_text("watched")
            await rec.expect(b)
            await barrier(rec, sentinel)
            assert str(a) not in rec.seen()
            w.set_paths([sentinel])
            assert w.watch_count == here + 1
            w.set_paths([])
            assert w.watch_count == 0

    asyncio.run(test())


def test_ten_thousand_paths_in_a_hundred_directories(tmp_path: Path) -> None:
    paths = []
    for d in range(100):
        directory = tmp_path / f"d{d:03}"
        directory.mkdir()
        for f in range(100):
            path = directory / f"f{f:03}"
            if f % 2:  # half of them do not exist yet
                path.write_text("")
            paths.append(str(path))

    async def test() -> None:
        async with watching() as (w, rec):
            w.set_paths(paths)
            assert w.watch_count == watches_to(tmp_path) + 100
            assert not w.polled_paths
            (tmp_path / "d057" / "f042").write_text("changed")
            (tmp_path / "d099" / "f099").unlink()
            await rec.expect(paths[5742], paths[9999])
            assert rec.seen() == {paths[5742], paths[9999]}
            w.set_paths(paths[:5000])
            assert w.watch_count == watches_to(tmp_path) + 50

    asyncio.run(test())


def test_callback_errors_do_not_stop_watching(tmp_path: Path) -> None:
    conf = tmp_path / "app.conf"

    async def test() -> None:
        rec = Recorder()

        def failing(paths: frozenset[str]) -> None:
            rec(paths)
            raise RuntimeError("callback bug")

        w = FileWatcher(asyncio.get_running_loop(), failing)
        try:
            w.set_paths([conf])
            conf.write_text("1")
            await rec.expect(conf)
            start = len(rec.calls)
            conf.write_text("2")
            await rec.expect(conf, start=start)
        finally:
            w.close()

    asyncio.run(test())


def test_close_releases_the_descriptor(tmp_path: Path) -> None:
    async def test() -> None:
        before = inotify_fds()
        w = FileWatcher(asyncio.get_running_loop(), Recorder())
        w.set_paths([tmp_path / "x"])
        assert inotify_fds() == before + 1
        w.close()
        assert inotify_fds() == before
        assert w.watch_count == 0
        w.close()  # idempotent
        with pytest.raises(RuntimeError):
            w.set_paths([tmp_path / "x"])

    asyncio.run(test())


def test_relative_paths_are_reported_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    async def test() -> None:
        async with watching() as (w, rec):
            w.set_paths(["conf/../app.conf"])
            assert w.paths == {str(tmp_path / "app.conf")}
            (tmp_path / "app.conf").write_text("x")
            await rec.expect(tmp_path / "app.conf")

    asyncio.run(test())


def test_an_idle_watcher_has_no_timer(tmp_path: Path) -> None:
    conf = tmp_path / "app.conf"

    def timers(loop: asyncio.AbstractEventLoop) -> list[asyncio.TimerHandle]:
        scheduled: list[asyncio.TimerHandle] = loop._scheduled  # type: ignore[attr-defined]
        return [t for t in scheduled if not t.cancelled()]

    async def test() -> None:
        async with watching(debounce=0.05) as (w, rec):
            w.set_paths([conf, tmp_path / "missing" / "x"])
            assert not timers(asyncio.get_running_loop())
            conf.write_text("x")
            await rec.expect(conf)
            # The debounce timer existed only while the change was pending.
            assert not timers(asyncio.get_running_loop())

    asyncio.run(test())


def _inotify_fd() -> int:
    (fd,) = [int(fd) for fd in os.listdir("/proc/self/fd") if _is_inotify(fd)]
    return fd


def _is_inotify(fd: str) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify"
    except OSError:
        return False


def test_churn_in_ancestor_directories_does_not_wake_the_watcher(tmp_path: Path) -> None:
    """Directories on the way to a watched file are watched for their own removal or rename,
    not for their entries: files coming and going next to the path (in /tmp, /etc) queue no
    inotify event, so the loop is not woken (events are queued by the syscall itself, so the
    descriptor being unreadable right after the churn shows that nothing was)."""
    conf = tmp_path / "x" / "y" / "conf"
    conf.parent.mkdir(parents=True)
    conf.write_text("a")

    async def test() -> None:
        async with watching() as (w, rec):
            w.set_paths([conf])
            fd = _inotify_fd()
            for directory in (tmp_path, tmp_path / "x"):
                for i in range(20):
                    other = directory / f"unrelated-{i}"
                    other.write_text("churn")
                    other.chmod(0o600)
                    other.rename(directory / f"renamed-{i}")
                    (directory / f"renamed-{i}").unlink()
                    (directory / f"dir-{i}").mkdir()
                    (directory / f"dir-{i}").rmdir()
            readable, _, _ = select.select([fd], [], [], 0)
            assert not readable
            # The path still follows its ancestors: renaming one away is seen.
            os.rename(tmp_path / "x", tmp_path / "x.old")
            await rec.expect(conf)

    asyncio.run(test())


def test_an_ancestor_stops_reporting_entries_once_the_missing_one_appears(tmp_path: Path) -> None:
    conf = tmp_path / "later" / "conf"
    sentinel = tmp_path / "later" / "sentinel"

    async def test() -> None:
        async with watching() as (w, rec):
            w.set_paths([conf, sentinel])
            conf.parent.mkdir()
            conf.write_text("x")
            await rec.expect(conf)
            await barrier(rec, sentinel)
            fd = _inotify_fd()
            (tmp_path / "unrelated").write_text("churn")
            (tmp_path / "unrelated").unlink()
            readable, _, _ = select.select([fd], [], [], 0)
            assert not readable

    asyncio.run(test())
