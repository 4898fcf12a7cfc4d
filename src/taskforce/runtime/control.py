"""The control facade: what the HTTP API (and so the CLI) may see and do.

Everything here runs on the supervisor's event loop. Reads return plain JSON-ready data;
changes go through the same paths as configuration and file events. Bad requests raise
:class:`ControlError` with an HTTP status and a sentence for the client.
"""

from __future__ import annotations

import platform
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from taskforce import __version__
from taskforce.config.errors import ConfigError
from taskforce.config.model import Control
from taskforce.core.diff import diff_desired
from taskforce.core.state import Instance, Phase, TaskState
from taskforce.runtime.legion import Legion
from taskforce.runtime.process import describe_status
from taskforce.runtime.supervisor import Outcome, Supervisor

JSON = dict[str, Any]


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def iso(wall: float | None) -> str | None:
    if not wall:
        return None
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds")


class Controller:
    def __init__(self, legion: Legion, clock: Callable[[], float] = time.time) -> None:
        self.legion = legion
        self._clock = clock
        self.started_wall = clock()

    # ----- status ---------------------------------------------------------------------

    def version(self) -> JSON:
        return {
            "taskforce": __version__,
            "python": platform.python_version(),
            "platform": sys.platform,
        }

    def config(self) -> JSON:
        loaded = self.legion.loaded
        data = loaded.data if loaded is not None else None
        error = self.legion.reload_error
        return {
            "file": self.legion.config_file,
            "roles_file": self.legion.roles_file,
            "roles": list(loaded.roles.names) if loaded and loaded.roles is not None else None,
            "config": data,
            "reload_error": [str(p) for p in error.problems] if error else None,
            "overrides": {
                t: {k: str(v) for k, v in o.items()} for t, o in self.legion.overrides.items()
            },
        }

    def tasks(self) -> JSON:
        supervisor = self._supervisor()
        planner = supervisor.planner
        out: JSON = {}
        names = list(planner.desired.tasks)
        names += sorted(n for n in planner.tasks if n not in planner.desired.tasks)
        for name in names:
            state = planner.tasks.get(name)
            if state is not None:
                out[name] = self._task(state)
        return out

    def _task(self, state: TaskState) -> JSON:
        spec = self._supervisor().planner.desired.tasks.get(state.name)
        processes = [self._process(i) for _, i in sorted(state.instances.items())]
        running = sum(1 for p in processes if p["pid"] is not None)
        return {
            "control": str(spec.control) if spec else None,
            "count": spec.count if spec else 0,
            "running": running,
            "state": self._task_state(state, running, spec is not None),
            "why": state.waiting_for,
            "restarts": sum(max(0, i.starts - 1) for i in state.instances.values()),
            "requires": list(spec.requires) if spec else [],
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
        if state.waiting_for:
            if "backing off" in state.waiting_for:
                return "backing off"
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
        if running == spec.count:
            return "running"
        return "starting" if running else "stopped"

    @staticmethod
    def _process(inst: Instance) -> JSON:
        last = inst.last_exit
        return {
            "instance": inst.slot,
            "pid": inst.pid,
            "state": str(inst.phase),
            "started": iso(inst.started_wall) if inst.pid else None,
            "started_t": inst.started_wall if inst.pid else None,
            "status": last.status if last and last.error is None else None,
            "exit": (last.error and f"failed to start: {last.error}")
            or describe_status(last.status)
            if last
            else None,
            "exited": iso(last.wall) if last else None,
            "exited_t": last.wall if last else None,
            "starts": inst.starts,
            "failures": inst.failures,
        }

    def metrics(self) -> str:
        """Prometheus text exposition format."""
        planner = self._supervisor().planner
        lines = [
            "# HELP taskforce_up Whether the task instance has a running process.",
            "# TYPE taskforce_up gauge",
        ]
        rows = []
        for name, state in sorted(planner.tasks.items()):
            for slot, inst in sorted(state.instances.items()):
                rows.append((_labels(name, slot), inst))
        lines += [f"taskforce_up{{{lbl}}} {1 if i.pid else 0}" for lbl, i in rows]
        lines += [
            "# HELP taskforce_starts_total Processes started for the task instance.",
            "# TYPE taskforce_starts_total counter",
        ]
        lines += [f"taskforce_starts_total{{{lbl}}} {i.starts}" for lbl, i in rows]
        lines += [
            "# HELP taskforce_restarts_total Restarts of the task instance.",
            "# TYPE taskforce_restarts_total counter",
        ]
        lines += [f"taskforce_restarts_total{{{lbl}}} {max(0, i.starts - 1)}" for lbl, i in rows]
        lines += [
            "# HELP taskforce_last_exit_status Wait status of the last exit.",
            "# TYPE taskforce_last_exit_status gauge",
        ]
        lines += [
            f"taskforce_last_exit_status{{{lbl}}} {i.last_exit.status}"
            for lbl, i in rows
            if i.last_exit
        ]
        lines += [
            "# HELP taskforce_start_time_seconds Unix time the running process started.",
            "# TYPE taskforce_start_time_seconds gauge",
        ]
        lines += [
            f"taskforce_start_time_seconds{{{lbl}}} {i.started_wall:.3f}"
            for lbl, i in rows
            if i.pid
        ]
        watcher = self.legion.watcher
        lines += [
            "# HELP taskforce_uptime_seconds Seconds since taskforce started.",
            "# TYPE taskforce_uptime_seconds gauge",
            f"taskforce_uptime_seconds {self._clock() - self.started_wall:.3f}",
            "# HELP taskforce_reloads_total Configuration reloads applied.",
            "# TYPE taskforce_reloads_total counter",
            f"taskforce_reloads_total {self.legion.reloads}",
            "# HELP taskforce_reload_errors_total Configuration reloads rejected.",
            "# TYPE taskforce_reload_errors_total counter",
            f"taskforce_reload_errors_total {self.legion.reload_errors}",
            "# HELP taskforce_watches Files watched.",
            "# TYPE taskforce_watches gauge",
            f"taskforce_watches {len(watcher.paths) if watcher else 0}",
        ]
        return "\n".join(lines) + "\n"

    # ----- control --------------------------------------------------------------------

    def task_names(self) -> list[str]:
        return list(self._supervisor().planner.desired.tasks)

    def _known(self, task: str) -> None:
        loaded = self.legion.loaded
        if loaded is None or task not in loaded.config.tasks:
            raise ControlError(404, f"no task named {task!r}")

    def set_control(self, task: str, control: str) -> JSON:
        self._known(task)
        try:
            value = Control(control)
        except ValueError:
            choices = ", ".join(c.value for c in Control)
            raise ControlError(400, f"{control!r} is not a control (one of {choices})") from None
        return self._override(task, "control", value)

    def set_count(self, task: str, count: str | int) -> JSON:
        self._known(task)
        try:
            value = int(count)
        except (TypeError, ValueError):
            raise ControlError(400, f"count must be a whole number, got {count!r}") from None
        if value < 0 or value > 10_000:
            raise ControlError(400, f"count must be between 0 and 10000, got {value}")
        return self._override(task, "count", value)

    def _override(self, task: str, key: str, value: object) -> JSON:
        previous = dict(self.legion.overrides.get(task, {}))
        self.legion.overrides.setdefault(task, {})[key] = value
        if not self.legion.reload(keep_overrides=True):
            if previous:
                self.legion.overrides[task] = previous
            else:
                self.legion.overrides.pop(task, None)
            raise ControlError(409, "the configuration cannot be loaded now; nothing changed")
        return {"task": task, key: str(value)}

    def start(self, task: str) -> JSON:
        self._known(task)
        overrides = self.legion.overrides.get(task, {})
        if overrides.get("control") in (Control.OFF, Control.SUSPEND):
            del overrides["control"]
            self.legion.reload(keep_overrides=True)
        supervisor = self._supervisor()
        supervisor.event_start(task, "start requested through the control API")
        return {"task": task, "action": "start"}

    def stop(self, task: str) -> JSON:
        self._known(task)
        self._override(task, "control", Control.OFF)
        return {"task": task, "action": "stop"}

    def restart(self, task: str) -> JSON:
        self._known(task)
        supervisor = self._supervisor()
        supervisor.event_stop(task, "restart requested through the control API")
        supervisor.event_start(task, "restart requested through the control API")
        return {"task": task, "action": "restart"}

    def signal(self, task: str, sig: str | int) -> JSON:
        self._known(task)
        signum = parse_signal(sig)
        self._supervisor().event_signal(task, signum, "signal requested through the control API")
        return {"task": task, "signal": signal.Signals(signum).name}

    def reload(self) -> JSON:
        ok = self.legion.reload()
        if not ok:
            error = self.legion.reload_error
            problems = [str(p) for p in error.problems] if error else []
            raise ControlError(409, "new configuration not applied: " + "; ".join(problems))
        return {"reloaded": True}

    def plan(self, text: str) -> JSON:
        """What applying configuration `text` would do, task by task."""
        loaded = self.legion.loaded
        try:
            new = self.legion.load(loaded, text=text)
        except ConfigError as exc:
            raise ControlError(422, "\n".join(str(p) for p in exc.problems)) from None
        old = loaded.desired if loaded is not None else new.desired
        changes = [
            {"task": c.task, "change": str(c.kind), "fields": list(c.fields)}
            for c in diff_desired(old, new.desired)
        ]
        return {"changes": changes, "problems": [str(p) for p in new.problems]}

    def shutdown(self) -> JSON:
        self.legion.stop()
        return {"stopping": True}

    def reset(self) -> JSON:
        self.legion.reset()
        return {"resetting": True}

    def _supervisor(self) -> Supervisor:
        supervisor = self.legion.supervisor
        if supervisor is None:
            raise ControlError(503, "taskforce is not running its tasks")
        return supervisor


def parse_signal(sig: str | int) -> int:
    text = str(sig).strip().upper()
    if text.isdigit():
        number = int(text)
    else:
        name = text if text.startswith("SIG") else f"SIG{text}"
        try:
            number = int(signal.Signals[name])
        except KeyError:
            raise ControlError(400, f"{sig!r} is not a signal name or number") from None
    if number not in signal.valid_signals() or number == 0:
        raise ControlError(400, f"{sig!r} is not a valid signal")
    return number


def _labels(task: str, slot: int) -> str:
    escaped = task.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'task="{escaped}",instance="{slot}"'


__all__ = ["JSON", "ControlError", "Controller", "Outcome", "iso", "parse_signal"]
