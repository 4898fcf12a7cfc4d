"""The status views of a running legion, as JSON: its tasks and their processes, where its
configuration comes from and how its last change went, its own counts and version.

Made from the facts the runtime keeps (the planner's state, the legion's loaded
configuration); read by the routes, the event stream and the metrics. The api's
:class:`Controller` is the runtime's control facade with these views beside it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

from taskforce import __version__
from taskforce.config.include import Composition
from taskforce.config.notify_targets import without_secrets
from taskforce.core.state import Instance, Phase, TaskState, Waiting
from taskforce.core.vocabulary import Control
from taskforce.runtime.legion import Legion
from taskforce.runtime.manage import JSON, ControlError, Controls
from taskforce.runtime.processes.spawn import describe_status
from taskforce.runtime.processes.usage import process_usage


def iso(wall: float | None) -> str | None:
    if not wall:
        return None
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds")


# Every state of a task in Controller.tasks() (the metrics have a 0/1 series for each).
TASK_STATES = (
    "running", "starting", "stopping", "stopped", "waiting", "backing off", "failed",
    "off", "suspend", "pending", "done", "removed", "invalid",
)  # fmt: skip


class Controller(Controls):
    """The control facade of a legion (:class:`~taskforce.runtime.manage.Controls`) and its
    status views."""

    def __init__(self, legion: Legion, clock: Callable[[], float] = time.time) -> None:
        super().__init__(legion)
        self.started_wall = clock()

    def version(self) -> JSON:
        return {
            "taskforce": __version__,
            "python": sys.version.split()[0],
            "platform": sys.platform,
        }

    def config(self) -> JSON:
        """The running configuration document, as loaded: what the original's
        /status/config answers (the listeners' tokens and notification credentials
        hidden)."""
        loaded = self.legion.loaded
        if loaded is None:
            raise ControlError(503, "no configuration is loaded yet")
        data = loaded.data
        if isinstance(data, Composition):  # with the files read and where each task is
            data = data.status()
        data = _without_tokens(data)
        return data if isinstance(data, dict) else {}

    def reload_status(self) -> JSON:
        """Where the configuration comes from and how its latest change went."""
        loaded = self.legion.loaded
        error = self.legion.reload_error
        return {
            "file": self.legion.config_file,
            "roles_file": self.legion.roles_file,
            "roles": list(loaded.roles.names) if loaded and loaded.roles is not None else None,
            "reload_error": [str(p) for p in error.problems] if error else None,
            "overrides": {
                t: {k: str(v) for k, v in o.items()} for t, o in self.legion.overrides.items()
            },
        }

    def tasks(self, *, usage: bool = False) -> JSON:
        """Every task's state and processes; with `usage`, each running process's CPU
        seconds and resident bytes too (read from /proc now: the event stream and the
        fleet's status go without, as they are made on every change)."""
        supervisor = self._supervisor()
        planner = supervisor.planner
        out: JSON = {}
        names = list(planner.desired.tasks)
        names += sorted(n for n in planner.tasks if n not in planner.desired.tasks)
        for name in names:
            state = planner.tasks.get(name)
            if state is not None:
                out[name] = self._task(state, usage)
        # A task whose entry cannot be used is shown with why, never left out.
        loaded = self.legion.loaded
        for name, error in (loaded.refused if loaded is not None else {}).items():
            if name in out and name in planner.desired.tasks:  # it ran before: kept as it was
                out[name]["error"] = error
                out[name]["why"] = f"new entry refused, kept as it was: {error}"
            else:
                out[name] = self._refused(name, error)
        return out

    def _refused(self, name: str, error: str) -> JSON:
        loaded = self.legion.loaded
        task = loaded.config.tasks.get(name) if loaded is not None else None
        return {
            "control": str(task.control) if task is not None else None,
            "count": 0,
            "running": 0,
            "state": "invalid",
            "why": error,
            "error": error,
            "restarts": 0,
            "requires": list(task.requires) if task is not None else [],
            "next_run": None,
            "next_run_t": None,
            "output_captured": False,
            "sockets": [],
            "rolling": None,
            "processes": [],
            "history": [],
        }

    def _task(self, state: TaskState, usage: bool) -> JSON:
        spec = self._supervisor().planner.desired.tasks.get(state.name)
        live = spec is not None and spec.live is not None
        processes = [
            self._process(i, usage, live, state.name) for _, i in sorted(state.instances.items())
        ]
        next_run = self._supervisor().schedules.next_run(state.name)
        running = sum(1 for p in processes if p["pid"] is not None)
        return {
            "control": str(spec.control) if spec else None,
            "count": spec.count if spec else 0,
            "running": running,
            "state": self._task_state(state, running, spec is not None),
            "why": _rolling_why(state) or state.waiting_for,
            "error": None,
            "restarts": sum(max(0, i.starts - 1) for i in state.instances.values()),
            "requires": list(spec.requires) if spec else [],
            # When its schedule runs it next (None: no schedule).
            "next_run": iso(next_run),
            "next_run_t": next_run,
            # Whether /logs/TASK has anything to show (the dashboard asks only then).
            "output_captured": self._supervisor().output.captured(state.name),
            # Listening sockets taskforce holds for it, and a rolling restart under way.
            "sockets": self._supervisor().sockets.describe(state.name),
            "rolling": _rolling(state),
            "processes": processes,
            "history": [
                {
                    "t": h.wall,
                    "instance": h.slot,
                    "kind": h.kind,
                    "pid": h.pid,
                    "detail": self._detail(h.kind, h.detail),
                }
                for h in state.history
            ],
        }

    @staticmethod
    def _detail(kind: str, detail: str) -> str:
        if kind == "exit" and detail.lstrip("-").isdigit():
            return describe_status(int(detail))
        return detail

    def _task_state(self, state: TaskState, running: int, in_scope: bool) -> str:
        if not in_scope:
            return "stopping" if running else "removed"
        phases = {i.phase for i in state.instances.values()}
        if Phase.STOPPING in phases:
            return "stopping"
        if state.waiting is Waiting.FAILED:
            return "failed"
        if state.waiting is Waiting.BACKOFF:
            return "backing off"
        if state.waiting is not None:
            return "waiting"
        spec = self._supervisor().planner.desired.tasks[state.name]
        if spec.control in (Control.OFF, Control.SUSPEND):
            return str(spec.control)
        if spec.control in (Control.ONCE, Control.EVENT):
            return (
                "running"
                if running
                else "done"
                if self._supervisor().planner.once_done(state.name)
                else "pending"
            )
        if any(i.pid and not i.ready for i in state.instances.values()):
            return "starting"
        if running == spec.count:
            return "running"
        return "starting" if running else "stopped"

    def _process(
        self, inst: Instance, usage: bool = False, live: bool = False, task: str = ""
    ) -> JSON:
        last = inst.last_exit
        facts: JSON = {}
        if usage:
            used = process_usage(inst.pid) if inst.pid else None
            group = self._supervisor().confinement.usage(task, inst.slot) if task else None
            facts = {
                "cpu_seconds": round(used.cpu_seconds, 2) if used else None,
                "rss_bytes": used.rss_bytes if used else None,
                # The whole instance, from its cgroup: every process it started.
                "cgroup": None
                if group is None
                else {
                    "cpu_seconds": None
                    if group.cpu_seconds is None
                    else round(group.cpu_seconds, 2),
                    "memory_bytes": group.memory_bytes,
                    "processes": group.processes,
                },
            }
        return {
            "instance": inst.slot,
            "pid": inst.pid,
            "state": str(inst.phase),
            "started": iso(inst.started_wall) if inst.pid else None,
            "started_t": inst.started_wall if inst.pid else None,
            "status": last.status if last and last.error is None else None,
            "exit": (last.error and f"failed to start: {last.error}")
            or describe_status(last.status) + (f" ({last.cause})" if last.cause else "")
            if last
            else None,
            # What the status does not say: "out of memory: ..." after an OOM kill.
            "exit_cause": last.cause if last else None,
            "exited": iso(last.wall) if last else None,
            "exited_t": last.wall if last else None,
            "starts": inst.starts,
            "failures": inst.failures,
            "ready": inst.ready if inst.pid else None,
            # Liveness probes failed in a row, and the last one's error (None: no probe).
            "live_failures": inst.live_failures if live else None,
            "live_error": inst.live_error if live else None,
            # A rolling restart's new process: the instance it is to replace.
            "replaces": inst.replaces,
            **facts,
        }

    def counters(self) -> JSON:
        """taskforce's own counts, for the metrics: reloads applied and refused, files watched."""
        watcher = self.legion.watcher
        return {
            "reloads": self.legion.reloads,
            "reload_errors": self.legion.reload_errors,
            "watches": len(watcher.paths) if watcher else 0,
        }


def _rolling(state: TaskState) -> JSON | None:
    """A rolling restart's progress: instances replaced so far, of how many, and which
    are being replaced now."""
    rolling = state.rolling
    if rolling is None:
        return None
    replacing = sorted(i.replaces for i in state.instances.values() if i.replaces is not None)
    return {"done": rolling.done, "total": rolling.total, "replacing": replacing}


def _rolling_why(state: TaskState) -> str | None:
    rolling = state.rolling
    return None if rolling is None else f"rolling restart {rolling.done}/{rolling.total}"


def _without_tokens(data: object) -> object:
    """The document with its secrets hidden (the HTTP listeners' tokens, the notification
    targets' credentials): status readers may not hold them."""
    if not isinstance(data, dict) or not isinstance(data.get("settings"), dict):
        return data
    settings = dict(data["settings"])
    listeners = settings.get("http")
    if isinstance(listeners, list | dict):
        hidden = [
            {k: "(hidden)" if k == "token" else v for k, v in item.items()}
            if isinstance(item, dict)
            else item
            for item in (listeners if isinstance(listeners, list) else [listeners])
        ]
        settings["http"] = hidden if isinstance(listeners, list) else hidden[0]
    if "notify" in settings:
        settings["notify"] = without_secrets(settings["notify"])
    return {**data, "settings": settings}


__all__ = ["JSON", "TASK_STATES", "ControlError", "Controller", "iso"]
