"""Checks of a desired state against this host that do not keep it from loading: a task's
user or group that does not exist here, a python event on a program that is not Python.
Such a task is still tried (it fails, and is retried); the problems are told at once."""

from __future__ import annotations

from collections.abc import Iterable

from taskforce.config.errors import Problem
from taskforce.core.spec import DesiredState, TaskSpec, TaskSubset
from taskforce.core.vocabulary import EventType
from taskforce.runtime.loop.task_events import python_script
from taskforce.runtime.processes.spawn import SpawnError, find_program, lookup_credentials


class HostChecks:
    """The checks of each load's desired state (the same instance for each: the tasks
    with something to check are followed from one load to the next, not looked for
    among every task each time)."""

    def __init__(self) -> None:
        self._identities = TaskSubset(_has_identity)
        self._python = TaskSubset(_has_python_event)

    def problems(self, desired: DesiredState, config_file: str) -> list[Problem]:
        identities = [desired.tasks[name] for name in self._identities.of(desired)]
        python = [desired.tasks[name] for name in self._python.of(desired)]
        return [*_identities(identities, config_file), *_python_events(python, config_file)]


def _has_identity(spec: TaskSpec) -> bool:
    launch = spec.instances[0].launch if spec.instances else None
    return launch is not None and (launch.user is not None or launch.group is not None)


def _has_python_event(spec: TaskSpec) -> bool:
    return any(e.type is EventType.PYTHON for e in spec.events)


def _identities(specs: Iterable[TaskSpec], config_file: str) -> list[Problem]:
    problems = []
    for spec in specs:
        launch = spec.instances[0].launch if spec.instances else None
        if launch is None or (launch.user is None and launch.group is None):
            continue
        try:
            lookup_credentials(launch.user, launch.group)
        except SpawnError as exc:
            where = "user" if launch.user is not None and "user" in str(exc) else "group"
            problems.append(Problem(config_file, None, f"tasks.{spec.name}.{where}", str(exc)))
    return problems


def _python_events(specs: Iterable[TaskSpec], config_file: str) -> list[Problem]:
    problems = []
    for spec in specs:
        if not _has_python_event(spec):
            continue
        launch = spec.instances[0].launch if spec.instances else None
        if launch is None:
            continue
        try:
            executable = find_program(launch.program, dict(launch.env))
        except SpawnError:
            continue  # reported when the task starts
        if python_script(launch, executable) is None:
            problems.append(
                Problem(
                    config_file,
                    None,
                    f"tasks.{spec.name}.events",
                    f"a python event needs a Python script, and {executable} is not one",
                )
            )
    return problems
