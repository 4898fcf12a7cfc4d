"""Hitless self-restart: re-execute taskforce in place without touching its tasks.

When taskforce's own code changes (or on SIGUSR2, or `taskforce upgrade`), the running
image checks that the new code can start, waits for starts and stops in flight, writes a
snapshot of what it supervises to a private file, ends its supervisor with
Outcome.UPGRADE, and execs itself (:func:`reexec`); task processes stay its children
across exec. The new image restores the snapshot (:meth:`Upgrade.attach`) before it
reaps anything, so no exit is missed, and carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from taskforce.core import snapshot
from taskforce.core.planner import Planner
from taskforce.runtime.loop.supervisor import Supervisor
from taskforce.runtime.own import paths
from taskforce.runtime.own.open_files import restore_open_files

log = logging.getLogger("taskforce")

# The environment variable naming the snapshot file for the new image.
SNAPSHOT_ENV = "TASKFORCE_UPGRADE_SNAPSHOT"

# Run by the new code before the old image commits to exec: every module the running
# image uses must import.
PRECHECK = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"

# Seconds of quiet after taskforce's code changed before upgrading (a package upgrade
# rewrites many files).
_QUIET = 1.0


class Upgrade:
    """The in-place upgrade of one running legion: when, the check, the hand-over.

    `restore_from` is the snapshot the previous image handed over (see
    :func:`handed_over`); once serving ends with Outcome.UPGRADE, `handover_snapshot` is
    the one for the next image.
    """

    def __init__(self, restore_from: str | None = None) -> None:
        self.restore_from = restore_from
        self.handover_snapshot: str | None = None
        # taskforce's own files, watched when it upgrades itself as its code changes.
        self.own_code: frozenset[str] = frozenset()
        self._supervisor: Supervisor | None = None
        self._extra: Callable[[], dict[str, Any]] = dict
        self._timer: asyncio.TimerHandle | None = None
        self._upgrading = False

    def attach(
        self, supervisor: Supervisor, watch_self: bool, extra: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        """Upgrade `supervisor` when asked (SIGUSR2), or (`watch_self`) when the code
        changes; the snapshot carries `extra()` too. Restores the snapshot handed over,
        if any: returns its `extra` (empty without one)."""
        self._supervisor = supervisor
        self._extra = extra
        supervisor.on_upgrade = self.start
        if watch_self:
            self.own_code = frozenset(taskforce_files())
        return self._restore(supervisor)

    def detach(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._supervisor = None

    def start(self) -> bool:
        """Re-execute taskforce in place, keeping every task running.

        The new code is tried first in a separate process; if it cannot even be
        imported, the upgrade is abandoned (logged) and nothing changes. Returns whether
        the upgrade was set in motion.
        """
        supervisor = self._supervisor
        if supervisor is None or self._upgrading or supervisor.planner.shutting_down:
            return False
        self._upgrading = True
        if not supervisor.run_command(precheck_argv(), "upgrade check", self._prechecked):
            self._upgrading = False
            return False
        log.info("upgrade: checking that the new code starts")
        return True

    def code_changed(self, changed: str) -> None:
        """One of `own_code` changed: upgrade once they have been quiet a while."""
        if self._timer is not None:
            self._timer.cancel()
        log.info("taskforce's own code changed (%s): upgrading in place when quiet", changed)
        self._timer = asyncio.get_running_loop().call_later(_QUIET, self._quiet)

    def _quiet(self) -> None:
        self._timer = None
        self.start()

    def _prechecked(self, status: int) -> None:
        if status != 0:
            self._upgrading = False
            log.error(
                "upgrade abandoned: the new code does not start (status %d); still running", status
            )
            return
        self._hand_over(attempts=200)

    def _hand_over(self, attempts: int) -> None:
        supervisor = self._supervisor
        if supervisor is None:
            return
        if supervisor.busy() and attempts > 0:
            # Wait for stops and starts in flight to finish: they are not in the snapshot.
            asyncio.get_running_loop().call_later(0.05, self._hand_over, attempts - 1)
            return
        try:
            extra = {**self._extra(), "output": supervisor.output.hand_over()}
            path = write_snapshot(supervisor.planner, extra)
        except (OSError, paths.UnsafePathError) as exc:
            self._upgrading = False
            log.error("upgrade abandoned: cannot write the snapshot: %s", exc)
            return
        self.handover_snapshot = path
        log.info(
            "upgrade: handing %d process(es) over to the new image",
            len(list(supervisor.planner.pids())),
        )
        supervisor.hand_over()

    def _restore(self, supervisor: Supervisor) -> dict[str, Any]:
        if self.restore_from is None:
            return {}
        data = read_snapshot(self.restore_from)
        self.restore_from = None
        if data is None:
            return {}
        try:
            pids = snapshot.restore(supervisor.planner, data.pop("planner"))
        except (KeyError, TypeError, ValueError) as exc:
            log.error("cannot restore the upgrade snapshot: %s", exc)
            return {}
        supervisor.output.take_over(data.pop("output", {}))
        log.info("upgrade: took over %d running process(es)", len(pids))
        return data


def handed_over() -> str | None:
    """The snapshot the image that exec'd us handed over (taken from the environment)."""
    return os.environ.pop(SNAPSHOT_ENV, None)


def reexec(start_dir: str, snapshot: str | None = None, **environ: str) -> NoReturn:
    """Execute taskforce again in this process, with the same interpreter and arguments,
    from `start_dir` (where its relative paths are relative to); `snapshot` names the
    upgrade snapshot for the new image, `environ` is added to the environment."""
    logging.shutdown()
    os.environ.update(environ)
    if snapshot is not None:
        os.environ[SNAPSHOT_ENV] = snapshot
    with contextlib.suppress(OSError):  # gone: relative paths will be reported missing
        os.chdir(start_dir)
    argv = [sys.executable, *sys.orig_argv[1:]]
    restore_open_files()  # the new image raises it again, knowing what tasks get
    os.execv(sys.executable, argv)


def precheck_argv() -> tuple[str, ...]:
    modules = sorted(
        name
        for name in sys.modules
        if (name == "taskforce" or name.startswith("taskforce.")) and not name.endswith("__main__")
    )
    return (sys.executable, "-c", PRECHECK, *modules)


def write_snapshot(planner: Planner, extra: dict[str, Any]) -> str:
    directory = paths.ensure_private_dir(paths.runtime_dir())
    path = os.path.join(directory, f"upgrade-{os.getpid()}.json")
    data = {"planner": snapshot.take(planner), **extra}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    return path


def read_snapshot(path: str) -> dict[str, Any] | None:
    """The snapshot a previous image left, removed once read (None if unusable)."""
    try:
        with open(path) as f:
            data: dict[str, Any] = json.load(f)
        return data
    except (OSError, ValueError) as exc:
        log.error("cannot read the upgrade snapshot %s: %s", path, exc)
        return None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def taskforce_files() -> list[str]:
    """The files taskforce runs from: its loaded modules and the interpreter."""
    import taskforce

    root = os.path.dirname(os.path.abspath(taskforce.__file__))
    files = {os.path.realpath(sys.executable)}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and os.path.abspath(path).startswith(root + os.sep):
            files.add(os.path.abspath(path))
    return sorted(files)
