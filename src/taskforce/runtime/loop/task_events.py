"""Task events: which files each task watches, and what a change makes happen."""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Mapping

from taskforce.core.spec import EventSpec, LaunchSpec, TaskSubset
from taskforce.core.vocabulary import EventType
from taskforce.runtime.loop.supervisor import Supervisor
from taskforce.watch import discover_modules_async, is_python_script

log = logging.getLogger("taskforce")

Trigger = tuple[str, EventSpec]  # (task name, event)

_PYTHON = re.compile(r"python[0-9.]*$")


def python_script(launch: LaunchSpec, executable: str) -> str | None:
    """The script a task runs: the program itself, or the first argument of an interpreter."""
    if _PYTHON.match(os.path.basename(executable)):
        for arg in launch.argv[1:]:
            if not arg.startswith("-"):
                return arg
        return None
    return executable if is_python_script(executable) else None


class TaskEvents:
    """Maps watched paths to task events, and carries out the events' actions."""

    def __init__(self, supervisor: Supervisor, base_dir: str) -> None:
        self._supervisor = supervisor
        self._base_dir = base_dir
        self._modules: dict[str, frozenset[str]] = {}
        self._discovering: set[str] = set()
        self._scripts: dict[str, str] = {}
        self.triggers: dict[str, list[Trigger]] = {}
        # Called after every planning pass: the few tasks with events are not looked for
        # among all the others each time.
        self._with_events = TaskSubset(lambda spec: bool(spec.events))

    def watched(self) -> Mapping[str, list[Trigger]]:
        """Recompute the watched paths of every task in scope, and what each triggers."""
        desired = self._supervisor.planner.desired
        triggers: dict[str, list[Trigger]] = {}
        for name in self._with_events.of(desired):
            for event in desired.tasks[name].events:
                for path in self._paths_for(name, event):
                    triggers.setdefault(path, []).append((name, event))
        self.triggers = triggers
        return triggers

    def _paths_for(self, task: str, event: EventSpec) -> list[str]:
        if event.type is EventType.FILE_CHANGE:
            return [os.path.join(self._base_dir, p) for p in event.paths]
        if event.type is EventType.SELF:
            return self._executables(task)
        if event.type is EventType.PYTHON:
            modules = self._modules.get(task)
            if modules is None:
                self._discover(task)
                return []
            return sorted(modules)
        return []

    def _executables(self, task: str) -> list[str]:
        state = self._supervisor.planner.tasks.get(task)
        if state is None:
            return []
        return sorted({i.executable for i in state.instances.values() if i.executable})

    def _discover(self, task: str) -> None:
        if task in self._discovering:
            return
        state = self._supervisor.planner.tasks.get(task)
        if state is None:
            return
        for inst in state.instances.values():
            if inst.executable and inst.spec is not None:
                script = python_script(inst.spec.launch, inst.executable)
                if script is None:
                    log.error(
                        "%s: python event, but %s is not a Python script", task, inst.executable
                    )
                    self._modules[task] = frozenset()
                    return
                cwd = inst.spec.launch.cwd or self._base_dir
                script = os.path.join(cwd, script)
                pythonpath = inst.spec.launch.env_value("PYTHONPATH") or ""
                search = [p for p in pythonpath.split(os.pathsep) if p]
                self._discovering.add(task)
                asyncio.get_running_loop().create_task(self._run_discovery(task, script, search))
                return

    async def _run_discovery(self, task: str, script: str, search: list[str]) -> None:
        try:
            modules = await discover_modules_async(script, search)
        finally:
            self._discovering.discard(task)
        log.debug("%s: watching %d Python file(s)", task, len(modules))
        self._modules[task] = modules
        self._supervisor.poke()

    def fire(self, changed: frozenset[str]) -> None:
        """Carry out, once each, the events that the changed paths trigger."""
        fired: dict[tuple[str, int], tuple[EventSpec, str]] = {}
        for path in sorted(changed):
            for task, event in self.triggers.get(path, ()):
                fired.setdefault((task, id(event)), (event, path))
        for (task, _), (event, path) in fired.items():
            reason = f"{event.type} event: {path} changed"
            if event.type is EventType.PYTHON:
                # Imports may have changed with the code: look again.
                self._modules.pop(task, None)
            self.act(task, event, reason)

    def act(self, task: str, event: EventSpec, reason: str) -> None:
        supervisor = self._supervisor
        if event.signal is not None:
            supervisor.event_signal(task, event.signal, reason)
        elif event.command == "stop":
            supervisor.event_stop(task, reason)
        elif event.command == "start":
            supervisor.event_start(task, reason)
        elif event.command is not None:
            supervisor.event_command(task, event.command, reason)

    def forget(self, task: str) -> None:
        self._modules.pop(task, None)
