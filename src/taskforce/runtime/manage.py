"""The control facade: what may be done to a running legion, and hearing that it changed.

Everything here runs on the supervisor's event loop. Changes go through the same paths
as configuration and file events. Bad requests raise :class:`ControlError` with an HTTP
status and a sentence for the client. What the legion looks like (its status views) is
:mod:`taskforce.api.status`'s.

Watchers of the state (the API's event stream) :meth:`Controls.subscribe` to an
:class:`asyncio.Event` that is set after every planning pass of the supervisor.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping
from typing import Any

from taskforce.config.description import signal_number
from taskforce.config.errors import ConfigError
from taskforce.core.diff import diff_desired
from taskforce.core.vocabulary import Control
from taskforce.runtime.legion import Legion
from taskforce.runtime.loop.listeners import after
from taskforce.runtime.loop.supervisor import Supervisor
from taskforce.runtime.output.capture import Follower, OutputCapture

JSON = dict[str, Any]

log = logging.getLogger("taskforce")


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Controls:
    def __init__(self, legion: Legion) -> None:
        self.legion = legion
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
        supervisor.on_change = after(supervisor.on_change, self.changed)
        self._hooked = supervisor

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

    # ----- task output (see taskforce.runtime.output.capture) ----------------------------

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
    """A signal named as the configuration names one (HUP, SIGHUP, hup, 1); else 400."""
    text = str(sig)
    number = signal_number(text) if text.isascii() else None
    if number is None or number not in signal.valid_signals():
        raise ControlError(400, f"{sig!r} is not a signal name or number")
    return number


__all__ = ["JSON", "ControlError", "Controls", "parse_signal", "whole_number"]
