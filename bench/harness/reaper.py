"""Own every process the run starts, and end them all however the run ends.

The harness makes itself a child subreaper: processes that supervisors orphan or
daemonise (PM2's daemon, children of a killed supervisor) are re-parented to it rather
than to init, so they remain its descendants and `kill_descendants` finds them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time

from harness import procfs

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0


def reap() -> None:
    """Collect exit statuses of re-parented children that have ended."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def kill_tree(root: int) -> None:
    """SIGKILL `root` and its descendants, the parents first so nothing is restarted."""
    for pid in procfs.descendants(root):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def kill_descendants(timeout_s: float = 10.0) -> int:
    """SIGKILL every descendant of this process; returns how many there were."""
    me = os.getpid()
    killed = 0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pids = [pid for pid in procfs.descendants(me) if pid != me and procfs.alive(pid)]
        if not pids:
            break
        killed += len(pids)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
        reap()
    reap()
    return killed
