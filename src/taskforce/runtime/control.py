"""The control facade: what the HTTP API (and so the CLI) may see and do.

Everything here runs on the supervisor's event loop. Reads return plain JSON-ready data;
changes go through the same paths as configuration and file events. Bad requests raise
:class:`ControlError` with an HTTP status and a sentence for the client.

Watchers of the state (the API's event stream) :meth:`Controller.subscribe` to an
:class:`asyncio.Event` that is set after every planning pass of the supervisor.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from taskforce import __version__
from taskforce.config.errors import ConfigError
from taskforce.config.include import Composition
from taskforce.config.notify_targets import without_secrets
from taskforce.core.diff import diff_desired
from taskforce.core.state import Instance, Phase, TaskState, Waiting
from taskforce.core.vocabulary import Control
from taskforce.runtime.legion import Legion
from taskforce.runtime.output import Follower, OutputCapture
from taskforce.runtime.process import describe_status
from taskforce.runtime.supervisor import Outcome, Supervisor
from taskforce.runtime.usage import process_usage

JSON = dict[str, Any]

log = logging.getLogger("taskforce")


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def iso(wall: float | None) -> str | None:
    if not wall:
        return None
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds")


# Every state of a task in Controller.tasks() (the metrics have a 0/1 series for each).
TASK_STATES = (
    "running", "starting", "stopping", "stopped", "waiting", "backing off", "failed",
    "off", "suspend", "pending", "done", "removed", "invalid",
)  # fmt: skip


class Controller:
    def __init__(self, legion: Legion, clock: Callable[[], float] = time.time) -> None:
        self.legion = legion
        self._clock = clock
        self.started_wall = clock()
        # Planning passes seen since we hooked the supervisor: a snapshot taken at the same
        # count is still current.
        self.changes = 0
        self._subscribers: set[asyncio.Event] = set()
        self._hooked: Supervisor | None = None
        # Where the request being handled came from (the API sets it for each control
        # request: "unix:/run/taskforce.sock"), for the log to say who asked.
        self.origin = "the control API"

    # ----- change notification ------------------------------------------------------------

    def subscribe(self) -> asyncio.Event:
        """An event set after every change of state; clear it once seen, unsubscribe at the end."""
        self.attach()
        event = asyncio.Event()
        self._subscribers.add(event)
        return event

    def unsubscribe(self, event: asyncio.Event) -> None:
        self._subscribers.discard(event)

    def changed(self) -> None:
        """Tell subscribers the state may have changed (called after each planning pass)."""
        self.changes += 1
        for event in self._subscribers:
            event.set()

    def attach(self) -> None:
        """Hear about the planning passes of the legion's current supervisor.

        The legion owns `on_change` (it refreshes its file watches there), so ours is chained
        after whatever it set. A legion that serves again has a new supervisor, hooked anew.
        """
        supervisor = self.legion.supervisor
        if supervisor is None or supervisor is self._hooked:
            return
        previous = supervisor.on_change

        def on_change() -> None:
            if previous is not None:
                previous()
            self.changed()

        supervisor.on_change = on_change
        self._hooked = supervisor

    # ----- status ---------------------------------------------------------------------

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

    # ----- control --------------------------------------------------------------------

    def task_names(self) -> list[str]:
        return list(self._supervisor().planner.desired.tasks)

    def _known(self, task: str) -> None:
        loaded = self.legion.loaded
        if loaded is None or task not in loaded.config.tasks:
            raise ControlError(404, f"no task named {task!r}")

    def set_control(self, task: str, control: str) -> JSON:
        self._known(task)
        return self._override({task: {"control": _control(control)}})[task]

    def set_count(self, task: str, count: str | int) -> JSON:
        self._known(task)
        return self._override({task: {"count": _count(count)}})[task]

    def set_overrides(self, key: str, values: Mapping[str, str | int]) -> JSON:
        """Override `key` ("control" or "count") of several tasks at once, all or none.

        Every task and value is checked before anything changes; one reload applies them.
        Returns task -> {"task": task, key: value} as set_control/set_count do.
        """
        parse = {"control": _control, "count": _count}.get(key)
        if parse is None:
            raise ControlError(400, f"{key!r} cannot be overridden (only control and count)")
        if not values:
            raise ControlError(400, f"name at least one task, as in ?TASK={key.upper()}")
        for task in values:
            self._known(task)
        changes = {task: {key: parse(value)} for task, value in values.items()}
        what = "scale" if key == "count" else key
        for task, fields in changes.items():
            self._requested(f"{what}: {task} to {fields[key]}")
        return dict(self._override(changes))

    def _override(self, changes: Mapping[str, Mapping[str, object]]) -> dict[str, JSON]:
        overrides = self.legion.overrides
        previous = {task: dict(overrides[task]) for task in changes if task in overrides}
        for task, fields in changes.items():
            overrides.setdefault(task, {}).update(fields)
        # Announced as the action it is (by the caller), not as a configuration reload.
        if not self.legion.reload(keep_overrides=True, announce=False):
            for task in changes:
                if task in previous:
                    overrides[task] = previous[task]
                else:
                    overrides.pop(task, None)
            raise ControlError(409, "the configuration cannot be loaded now; nothing changed")
        return {
            task: {"task": task, **{key: str(value) for key, value in fields.items()}}
            for task, fields in changes.items()
        }

    def start(self, task: str) -> JSON:
        self._known(task)
        self._requested(f"start: {task}")
        overrides = self.legion.overrides.get(task, {})
        if overrides.get("control") in (Control.OFF, Control.SUSPEND):
            del overrides["control"]
            self.legion.reload(keep_overrides=True, announce=False)
        supervisor = self._supervisor()
        supervisor.event_start(task, f"start requested over {self.origin}")
        return {"task": task, "action": "start"}

    def stop(self, task: str) -> JSON:
        self._known(task)
        self._requested(f"stop: {task}")
        self._override({task: {"control": Control.OFF}})
        return {"task": task, "action": "stop"}

    def restart(self, task: str) -> JSON:
        self._known(task)
        self._requested(f"restart: {task}")
        supervisor = self._supervisor()
        supervisor.event_stop(task, f"restart requested over {self.origin}")
        supervisor.event_start(task, f"restart requested over {self.origin}")
        return {"task": task, "action": "restart"}

    def signal(self, task: str, sig: str | int) -> JSON:
        self._known(task)
        signum = parse_signal(sig)
        name = signal.Signals(signum).name
        self._requested(f"signal {name}: {task}")
        self._supervisor().event_signal(task, signum, f"signal requested over {self.origin}")
        return {"task": task, "signal": name}

    def _requested(self, action: str) -> None:
        log.info("%s (requested over %s)", action, self.origin)

    def reload(self) -> JSON:
        self._requested("reload")
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
        self._requested("stop all tasks and exit")
        self.legion.stop()
        return {"stopping": True}

    def reset(self) -> JSON:
        self._requested("reset")
        self.legion.reset()
        return {"resetting": True}

    def upgrade(self) -> JSON:
        """Re-execute in place keeping the tasks (the new code is checked first)."""
        self._requested("upgrade")
        if not self.legion.upgrade():
            raise ControlError(409, "an upgrade is already under way, or taskforce is stopping")
        return {"upgrading": True}

    # ----- task output (see taskforce.runtime.output) -----------------------------------

    def logs(self, task: str, n: int) -> JSON:
        """The last `n` lines a task wrote; 409 when its output is not captured."""
        return {"task": task, "lines": self._output(task).lines(task, n)}

    def follow_logs(self, task: str) -> Follower:
        """A queue of the task's output from now on; give it back with unfollow_logs()."""
        return self._output(task).follow(task)

    def unfollow_logs(self, task: str, follower: Follower) -> None:
        if self.legion.supervisor is not None:
            self.legion.supervisor.output.unfollow(task, follower)

    def _output(self, task: str) -> OutputCapture:
        self._known(task)
        output = self._supervisor().output
        if not output.captured(task):
            raise ControlError(
                409, f"the output of {task!r} is not captured: its output is null (/dev/null)"
            )
        return output

    def _supervisor(self) -> Supervisor:
        supervisor = self.legion.supervisor
        if supervisor is None:
            raise ControlError(503, "taskforce is not running its tasks")
        return supervisor


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


def _control(control: str | int) -> Control:
    try:
        return Control(str(control))
    except ValueError:
        choices = ", ".join(c.value for c in Control)
        raise ControlError(400, f"{control!r} is not a control (one of {choices})") from None


_MAX_DIGITS = 20  # int() of a long enough string is slow, or refused (sys.int_info)


def whole_number(text: str | int, name: str, maximum: int) -> int:
    """`text` as a number from 0 to `maximum`, written in ASCII digits only; else 400.

    str.isdigit() and int() also take superscripts, other scripts' digits, signs, spaces
    and underscores (and int() fails on what isdigit() lets through, such as "²").
    """
    if isinstance(text, int):
        value = text
    elif text.isascii() and text.isdigit() and len(text) <= _MAX_DIGITS:
        value = int(text)
    else:
        shown = text if len(text) <= _MAX_DIGITS else text[:_MAX_DIGITS] + "..."
        raise ControlError(400, f"{name} must be a whole number in ASCII digits, got {shown!r}")
    if not 0 <= value <= maximum:
        raise ControlError(400, f"{name} must be between 0 and {maximum}, got {value}")
    return value


def _count(count: str | int) -> int:
    return whole_number(count, "count", 10_000)


def parse_signal(sig: str | int) -> int:
    text = str(sig).upper()
    if text[:1].isdigit() or not text.isascii():
        number = whole_number(text, "signal", max(signal.valid_signals()))
    else:
        name = text if text.startswith("SIG") else f"SIG{text}"
        try:
            number = int(signal.Signals[name])
        except KeyError:
            raise ControlError(400, f"{sig!r} is not a signal name or number") from None
    if number not in signal.valid_signals() or number == 0:
        raise ControlError(400, f"{sig!r} is not a valid signal")
    return number


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


__all__ = ["JSON", "ControlError", "Controller", "Outcome", "iso", "parse_signal", "whole_number"]
