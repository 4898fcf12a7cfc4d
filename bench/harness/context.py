"""What the measurements share: the run directory, the child, the watcher, the results."""

from __future__ import annotations

import os
import random
import select
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness import procfs
from harness.build import Child
from harness.results import Results
from harness.tswatch import Start, TsWatcher, read_starts
from harness.workload import Workload

# runsv waits a second before restarting a service that ran less than a second, s6-supervise
# one that became ready less than a second ago; PM2 and taskforce count such exits as
# failures. Kill only older children.
MIN_AGE_S = 3.0


@dataclass
class Context:
    root: Path
    child: Child
    watcher: TsWatcher
    results: Results
    rng: random.Random
    log: Callable[[str], None]
    raw: Path  # where logs of failed trials are kept

    def keep_logs(self, workload: Workload, label: str) -> None:
        """Copy a run's supervisor logs to results/raw/ (for a trial that failed)."""
        target = self.raw / f"failed-{label}"
        target.mkdir(parents=True, exist_ok=True)
        for log in workload.root.glob("*.log"):
            shutil.copy2(log, target / log.name)
        self.log(f"  logs kept in {target}")


def wait_all_started(ctx: Context, workload: Workload, timeout_s: float) -> dict[str, Start]:
    """Wait (inotify) until every task has written its timestamp; return the starts."""
    wanted = {task.name for task in workload.tasks}
    seen = set(read_starts(workload.ts_dir))

    def done(directory: Path, name: str) -> bool:
        if directory == workload.ts_dir:
            seen.add(name)
        return wanted <= seen

    if not wanted <= seen:
        ctx.watcher.wait(done, timeout_s)
    starts = read_starts(workload.ts_dir)
    missing = wanted - set(starts)
    if missing:
        raise TimeoutError(
            f"{len(missing)} of {len(wanted)} children not started in {timeout_s:g} s"
        )
    return starts


def wait_quiet(ctx: Context, workload: Workload, quiet_s: float, limit_s: float) -> None:
    """Wait until no child of `workload` has started for `quiet_s` (at most `limit_s`)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if not any(d == workload.ts_dir for d, _ in ctx.watcher.events(quiet_s)):
            return


def sleep_until_aged(starts: dict[str, Start], age_s: float) -> None:
    newest = max(start.ns for start in starts.values())
    delay = (newest + age_s * 1e9 - time.monotonic_ns()) / 1e9
    if delay > 0:
        time.sleep(delay)


def wait_gone(pids: list[int], timeout_s: float) -> bool:
    """Wait (pidfd, no polling) until all `pids` have exited."""
    poller = select.poll()
    fds: dict[int, int] = {}
    try:
        for pid in pids:
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            fds[fd] = pid
            poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + timeout_s
        while fds and (left := deadline - time.monotonic()) > 0:
            for fd, _ in poller.poll(left * 1000):
                poller.unregister(fd)
                os.close(fd)
                del fds[fd]
        return not fds
    finally:
        for fd in fds:
            os.close(fd)


def alive_children(starts: dict[str, Start]) -> dict[str, Start]:
    return {name: start for name, start in starts.items() if procfs.alive(start.pid)}
