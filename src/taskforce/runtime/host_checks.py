"""Checks of a desired state against this host that do not keep it from loading: a task's
user or group that does not exist here, a python event on a program that is not Python.
Such a task is still tried (it fails, and is retried); the problems are told at once."""

from __future__ import annotations

from taskforce.config.errors import Problem
from taskforce.core.spec import DesiredState
from taskforce.core.vocabulary import EventType
from taskforce.runtime.loop.task_events import python_script
from taskforce.runtime.processes.spawn import SpawnError, find_program, lookup_credentials


def host_problems(desired: DesiredState, config_file: str) -> list[Problem]:
    return [*_identities(desired, config_file), *_python_events(desired, config_file)]


def _identities(desired: DesiredState, config_file: str) -> list[Problem]:
    problems = []
    for spec in desired.tasks.values():
        launch = spec.instances[0].launch if spec.instances else None
        if launch is None or (launch.user is None and launch.group is None):
            continue
        try:
            lookup_credentials(launch.user, launch.group)
        except SpawnError as exc:
            where = "user" if launch.user is not None and "user" in str(exc) else "group"
            problems.append(Problem(config_file, None, f"tasks.{spec.name}.{where}", str(exc)))
    return problems


def _python_events(desired: DesiredState, config_file: str) -> list[Problem]:
    problems = []
    for spec in desired.tasks.values():
        if not any(e.type is EventType.PYTHON for e in spec.events):
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
