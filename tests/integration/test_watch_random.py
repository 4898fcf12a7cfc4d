"""Random changes to a tree: every watched path whose file changed must be reported.

After each round of changes a sentinel is written and awaited (inotify keeps events in order),
then each watched path's stat fingerprint is compared with the one before the round. Extra
reports are allowed; a missing one is a bug.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import sys
from pathlib import Path

import pytest

from taskforce.watch import FileWatcher

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="inotify is Linux only")

DEADLINE = 10.0
DIRS = ("a", "b", "c")
SUBDIRS = ("x", "y")
FILES = ("f1", "f2")


def fingerprint(path: str) -> tuple[int, ...] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)


def watched_paths(root: Path) -> list[str]:
    paths = [str(root / d / s / f) for d in DIRS for s in SUBDIRS for f in FILES]
    paths += [str(root / "link" / "x" / "f1"), str(root / "flink")]
    return paths


def random_change(rng: random.Random, root: Path, step: int) -> None:
    d, s, f = rng.choice(DIRS), rng.choice(SUBDIRS), rng.choice(FILES)
    file = root / d / s / f
    kind = rng.randrange(9)
    if kind == 0:
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(f"step {step}")
    elif kind == 1:
        if file.exists():
            file.unlink()
    elif kind == 2:
        shutil.rmtree(root / d / s if rng.random() < 0.5 else root / d, ignore_errors=True)
    elif kind == 3:  # swap two directories by rename
        other = rng.choice([o for o in DIRS if o != d])
        if (root / d).exists() and (root / other).exists():
            os.rename(root / d, root / "swap")
            os.rename(root / other, root / d)
            os.rename(root / "swap", root / other)
    elif kind == 4:  # point the links elsewhere
        for name, link_to in (("link", d), ("flink", f"{d}/{s}/{f}")):
            staged = root / f"{name}.new"
            staged.symlink_to(link_to)
            os.replace(staged, root / name)
    elif kind == 5:
        if file.exists():
            file.chmod(0o600 if file.stat().st_mode & 0o100 else 0o700)
    elif kind == 6:  # editor-style save
        if file.parent.is_dir():
            staged = file.parent / f".{f}.swp"
            staged.write_text(f"saved {step}")
            os.replace(staged, file)
    elif kind == 7:
        target = root / d / s
        if target.is_dir() and not (root / d / "moved").exists():
            os.rename(target, root / d / "moved")
    else:  # replace the whole tree, as a deployment might
        old = root.with_name("old")
        shutil.copytree(root, root.with_name("new"), symlinks=True)
        os.rename(root, old)
        os.rename(root.with_name("new"), root)
        shutil.rmtree(old)


@pytest.mark.parametrize("seed", range(6))
def test_random_changes_are_all_reported(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    root = tmp_path / "tree"
    root.mkdir()
    for d in DIRS[:2]:
        for s in SUBDIRS:
            (root / d / s).mkdir(parents=True)
            (root / d / s / "f1").write_text("initial")
    (root / "link").symlink_to("a")
    (root / "flink").symlink_to("a/x/f1")
    sentinel = tmp_path / "sentinel"
    paths = watched_paths(root)

    async def main() -> None:
        calls: list[frozenset[str]] = []
        wake = asyncio.Event()

        def on_change(changed: frozenset[str]) -> None:
            calls.append(changed)
            wake.set()

        async def reported(path: str, start: int) -> None:
            while not any(path in call for call in calls[start:]):
                wake.clear()
                await wake.wait()

        w = FileWatcher(asyncio.get_running_loop(), on_change)
        try:
            w.set_paths([*paths, str(sentinel)])
            for round_ in range(40):
                before = {p: fingerprint(p) for p in paths}
                start = len(calls)
                for step in range(rng.randrange(1, 4)):
                    random_change(rng, root, round_ * 10 + step)
                    if rng.random() < 0.5:
                        await asyncio.sleep(0)  # sometimes let the watcher see a step alone
                sentinel.write_text(str(round_))
                await asyncio.wait_for(reported(str(sentinel), start), DEADLINE)
                seen = set().union(*calls[start:])
                missed = [p for p in paths if fingerprint(p) != before[p] and p not in seen]
                assert not missed, f"round {round_}: changes not reported: {missed}"
            assert not w.polled_paths
            # No watch leaked, none missing, none left on a directory that moved.
            tracker = w._kernel._tracker  # type: ignore[union-attr]
            assert tracker.watched_dirs == tracker.index.dirs()
            assert w.watch_count == len(tracker.watched_dirs)
            for directory, ident in tracker._watched.items():
                st = os.stat(directory)
                assert ident == (st.st_dev, st.st_ino), directory
        finally:
            w.close()

    asyncio.run(main())
