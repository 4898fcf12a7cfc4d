"""A planner played as the runtime plays it, for the planner's unit tests: every Start
gets a pid at once, and the clock is whatever the test says."""

from __future__ import annotations

from taskforce.core.actions import Action, Start
from taskforce.core.planner import Planner
from taskforce.core.spec import DesiredState, EventSpec, InstanceSpec, LaunchSpec, Policy, TaskSpec
from taskforce.core.vocabulary import Control, RestartPolicy


def task(
    name: str,
    *,
    control: Control = Control.WAIT,
    count: int = 1,
    requires: tuple[str, ...] = (),
    start_delay: float = 0.0,
    time_limit: float | None = None,
    onexit: tuple[str, ...] = (),
    argv: tuple[str, ...] = ("prog",),
    stop: tuple[str, ...] | None = None,
    events: tuple[EventSpec, ...] = (),
) -> TaskSpec:
    commands = {"stop": stop} if stop else {}
    instances = tuple(
        InstanceSpec(LaunchSpec(argv[0], argv, (("Task_instance", str(i)),)), commands)
        for i in range(count)
    )
    return TaskSpec(
        name,
        control,
        instances,
        requires=requires,
        start_delay=start_delay,
        time_limit=time_limit,
        onexit_start=onexit,
        events=events,
    )


def desired(*tasks: TaskSpec, min_uptime: float = 1.0) -> DesiredState:
    policy = Policy(RestartPolicy(min_uptime=min_uptime, initial_delay=0.5, max_delay=4.0))
    return DesiredState({t.name: t for t in tasks}, policy)


class Harness:
    """Plays the runtime: every Start gets a pid at once."""

    def __init__(self, state: DesiredState) -> None:
        self.planner = Planner(state)
        self.next_pid = 100
        self.now = 0.0
        self.deadline: float | None = None  # the last plan's next deadline

    def step(self, at: float | None = None) -> list[Action]:
        if at is not None:
            self.now = at
        plan = self.planner.plan(self.now)
        for action in plan.actions:
            if isinstance(action, Start):
                self.next_pid += 1
                self.planner.started(action.task, action.slot, self.next_pid, self.now, self.now)
        self.deadline = plan.next_deadline
        return list(plan.actions)

    def starts(self, at: float | None = None) -> list[tuple[str, int]]:
        return [(a.task, a.slot) for a in self.step(at) if isinstance(a, Start)]

    def pid(self, name: str, slot: int = 0) -> int:
        pid = self.planner.tasks[name].instances[slot].pid
        assert pid is not None
        return pid

    def exit(self, name: str, slot: int = 0, status: int = 0, at: float | None = None) -> None:
        if at is not None:
            self.now = at
        self.planner.exited(self.pid(name, slot), status, self.now, self.now)
