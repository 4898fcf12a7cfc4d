"""Hitless self-restart: re-execute taskforce in place without touching its tasks.

The running image checks that the new code can start, writes a snapshot of what it
supervises to a private file, and execs itself; task processes stay its children
across exec. The new image restores the snapshot before it reaps anything, so no exit
is missed, and carries on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from typing import Any

from taskforce.core import snapshot
from taskforce.core.planner import Planner
from taskforce.runtime.own import paths

log = logging.getLogger("taskforce")

# The environment variable naming the snapshot file for the new image.
SNAPSHOT_ENV = "TASKFORCE_UPGRADE_SNAPSHOT"

# Run by the new code before the old image commits to exec: every module the running
# image uses must import.
PRECHECK = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"


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
