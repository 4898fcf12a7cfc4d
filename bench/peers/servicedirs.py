"""Service directories shared by the daemontools family (runit, s6).

Each task is a directory whose `run` is a symlink to the child program, so the
supervisor execs the child itself (no shell in between). The child, given no
arguments, writes its timestamp to $BENCH_TS_DIR/<directory name>. A run file carries
no arguments, so a task whose argv was changed (see Workload.changed) runs the
child's second copy instead: the service's new version.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from harness import procfs
from harness.workload import Task, Workload


def scan_dir(workload: Workload) -> Path:
    return workload.root / "service"


def write_service_dirs(workload: Workload) -> Path:
    scan = scan_dir(workload)
    scan.mkdir(exist_ok=True)
    for task in workload.tasks:
        service = scan / task.name
        service.mkdir()
        (service / "run").symlink_to(program(workload, task))
    return scan


def program(workload: Workload, task: Task) -> Path:
    return workload.child.exe2 if task.extra else task.exe


def runs(workload: Workload, pid: int, task: Task) -> bool:
    exe = procfs.exe(pid)
    return not exe or exe == str(program(workload, task))


def environment(workload: Workload) -> dict[str, str]:
    return {**os.environ, "BENCH_TS_DIR": str(workload.ts_dir)}


def replace_run(new: Workload, name: str) -> Callable[[], None]:
    """Point task `name`'s run at its new program: prepared now, renamed in by the call."""
    service = scan_dir(new) / name
    tmp = service / ".run.new"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(program(new, new.task(name)))
    return lambda: os.rename(tmp, service / "run")
