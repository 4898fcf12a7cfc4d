#!/usr/bin/env python3
"""One task changed among 10,000: in 100 included files, and in one file.

    .venv/bin/python bench/include_reload.py [--tasks 10000] [--files 100] [--changes 7]

taskforce (a snapshot of src/, as for the suite) runs N tasks of the benchmark's child,
first from a main file that includes `conf.d/*.conf` (N/F tasks in each of F files), then
from one file holding the same N tasks (JSON, as the suite's reload metric writes it).
Once every child has started, one task's argv changes at a time (an argument added): the
new version of its file is written beside it and renamed over it. Measured for each
change: the time from the rename to the changed task's new process's own start timestamp
(inotify on the timestamp directory, as the suite measures), and, once the change has had
two seconds to settle, how many of the other N-1 processes started again or are gone (a
child writes its timestamp when it starts, with its pid). Medians over the changes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import reaper
from harness.build import build_child
from harness.context import wait_all_started
from harness.tswatch import Start, TsWatcher, read_starts
from harness.workload import Task, Workload
from peers.base import Env
from peers.taskforce import Taskforce

BENCH = Path(__file__).resolve().parent
SETTINGS = {"restart": {"min_uptime": 1}}
_TASKFORCE = Taskforce(Env(BENCH, BENCH / ".peers", Path(sys.executable), print))


class Ctx:
    """The bits of harness.context.Context that wait_all_started needs."""

    def __init__(self) -> None:
        self.watcher = TsWatcher()


def entry(task: Task) -> dict[str, Any]:
    return {"control": "wait", "commands": {"start": task.argv}}


def fragment(tasks: list[Task]) -> str:
    return json.dumps({"tasks": {task.name: entry(task) for task in tasks}}, indent=1)


def one_file(workload: Workload) -> str:
    tasks = {task.name: entry(task) for task in workload.tasks}
    return json.dumps({"settings": SETTINGS, "tasks": tasks}, indent=1)


def rename_over(path: Path, text: str) -> int:
    """Write `text` beside `path`, rename it over `path`; the monotonic ns of the rename."""
    tmp = path.parent / f".{path.name}.new"  # hidden: `*.conf` does not match it
    tmp.write_text(text)
    began = time.monotonic_ns()
    os.rename(tmp, path)
    return began


class Layout:
    """Where the configuration of a workload is written: one file, or F included files."""

    def __init__(self, workload: Workload, files: int) -> None:
        self.root = workload.root
        self.files = files
        self.main = workload.root / "taskforce.conf"
        self.per_file = max(1, len(workload.tasks) // max(files, 1))

    def file_of(self, index: int) -> Path:
        return self.root / "conf.d" / f"part{index // self.per_file:03d}.conf"

    def write(self, workload: Workload) -> None:
        if self.files == 0:
            self.main.write_text(one_file(workload))
            return
        (self.root / "conf.d").mkdir(exist_ok=True)
        for start in range(0, len(workload.tasks), self.per_file):
            self.file_of(start).write_text(fragment(workload.tasks[start : start + self.per_file]))
        main = {"settings": SETTINGS, "include": "conf.d/*.conf", "tasks": {}}
        self.main.write_text(json.dumps(main))

    def change(self, workload: Workload, index: int) -> int:
        """Write the changed task's file (or the one file) over the old one."""
        if self.files == 0:
            return rename_over(self.main, one_file(workload))
        start = index - index % self.per_file
        return rename_over(
            self.file_of(index), fragment(workload.tasks[start : start + self.per_file])
        )


def run(root: Path, count: int, files: int, changes: int, profile: bool) -> dict[str, Any]:
    label = f"{count} tasks in {files} included files" if files else f"{count} tasks in one file"
    workload = Workload.create(root, build_child(BENCH / ".peers"), count)
    layout = Layout(workload, files)
    layout.write(workload)
    (root / "roles").write_text("")
    ctx = Ctx()
    ctx.watcher.add(workload.ts_dir)
    argv = [
        *_TASKFORCE.command(),
        *("-e", "-q", "-p", str(root / "taskforce.pid")),
        *("-f", str(layout.main), "-r", str(root / "roles")),
    ]
    began = time.monotonic()
    tf = subprocess.Popen(argv, start_new_session=True, env=_TASKFORCE.environment(), cwd=root)
    latencies: list[float] = []
    touched: list[int] = []
    try:
        starts = wait_all_started(ctx, workload, 900)  # type: ignore[arg-type]
        print(f"{label}: all started in {time.monotonic() - began:.1f} s", flush=True)
        time.sleep(3)  # past min_uptime, and the start-up's own work done
        spy = None
        if profile:
            from profile_taskforce import RAW, record

            RAW.mkdir(parents=True, exist_ok=True)
            raw = RAW / f"profile-include-{files}.txt"
            spy = record(raw, ["--pid", str(tf.pid)])
            time.sleep(1)
        for trial in range(changes):
            index = (trial * 1_237 + count // 2) % count
            name = workload.tasks[index].name
            workload = workload.changed(name)
            ctx.watcher.drain()
            t0 = layout.change(workload, index)
            new = ctx.watcher.wait_for_start(workload.ts_dir, name, t0, 60)
            if new is None:
                print(f"  change {trial + 1}: {name} did not restart within 60 s", flush=True)
                continue
            latencies.append((new.ns - t0) / 1e6)
            time.sleep(2)
            after = read_starts(workload.ts_dir)
            others = _others_touched(starts, after, name)
            touched.append(others)
            starts = after
            print(
                f"  change {trial + 1}: {name} new process {latencies[-1]:.1f} ms after the "
                f"rename; {others} other process(es) touched",
                flush=True,
            )
        if spy is not None:
            from profile_taskforce import summarize

            spy.send_signal(signal.SIGINT)
            spy.wait(60)
            summarize(raw)
    finally:
        tf.send_signal(signal.SIGTERM)
        try:
            tf.wait(120)
        except subprocess.TimeoutExpired:
            tf.kill()
            tf.wait(30)
        ctx.watcher.close()
    return {
        "layout": label,
        "median_ms": statistics.median(latencies) if latencies else None,
        "max_ms": max(latencies) if latencies else None,
        "changes": len(latencies),
        "others_touched": sum(touched),
    }


def _others_touched(before: dict[str, Start], after: dict[str, Start], changed: str) -> int:
    """Processes other than `changed`'s that started again (or were not found running)."""
    count = 0
    for name, start in before.items():
        if name == changed:
            continue
        now = after.get(name)
        if now is None or now.pid != start.pid or now.ns != start.ns or not _alive(now.pid):
            count += 1
    return count


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--changes", type=int, default=7)
    parser.add_argument("--only", choices=["include", "one-file"])
    parser.add_argument("--profile", action="store_true", help="under py-spy (see README.md)")
    args = parser.parse_args()
    reaper.become_subreaper()
    print(f"taskforce {_TASKFORCE.install()} (snapshot of src/)", flush=True)
    results = []
    root = Path(tempfile.mkdtemp(prefix="tfi-", dir="/tmp"))
    try:
        layouts = {"include": args.files, "one-file": 0}
        for key, files in layouts.items():
            if args.only in (None, key):
                results.append(run(root / key, args.tasks, files, args.changes, args.profile))
                reaper.kill_descendants()
    finally:
        reaper.kill_descendants()
        subprocess.run(["rm", "-rf", str(root)], check=False)
    print("\nlayout | new process after the rename (median, max) | others touched")
    for result in results:
        median, top = result["median_ms"], result["max_ms"]
        shown = "n/a" if median is None else f"{median:.1f} ms, {top:.1f} ms"
        print(
            f"{result['layout']} | {shown} over {result['changes']} changes | "
            f"{result['others_touched']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
