"""What the executor and the reaper both work with, built once by the supervisor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from taskforce.core.planner import ExitOutcome, Planner
from taskforce.runtime.clock import Clock
from taskforce.runtime.limits.confinement import Confinement
from taskforce.runtime.output.capture import OutputCapture
from taskforce.runtime.processes.runner import ProcessRunner
from taskforce.runtime.processes.spawn_reports import SpawnReports
from taskforce.runtime.processes.task_commands import TaskCommands


@dataclass(frozen=True, slots=True)
class Collaborators:
    """The planner facts go to, how processes are started and reaped, and three callbacks:
    `schedule` asks for a planning pass once a result is in; `log_exit` tells a task
    process's exit (or failed start), perhaps only once the replacements the next pass
    starts are spawned; `exits_due` tells those held back until then."""

    planner: Planner
    runner: ProcessRunner
    clock: Clock
    commands: TaskCommands
    reports: SpawnReports
    output: OutputCapture
    confinement: Confinement
    schedule: Callable[[], None]
    log_exit: Callable[[int | None, ExitOutcome], None]
    exits_due: Callable[[], None]


class LoopPart:
    """A part of the loop (the executor, the reaper): holds the collaborators under the
    names its methods use."""

    def __init__(self, shared: Collaborators) -> None:
        self.planner = shared.planner
        self._runner = shared.runner
        self._clock = shared.clock
        self._commands = shared.commands
        self._reports = shared.reports
        self._output = shared.output
        self._confinement = shared.confinement
        self._schedule = shared.schedule
        self._log_exit = shared.log_exit
        self._exits_due = shared.exits_due
