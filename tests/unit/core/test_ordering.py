"""`requires` and `onexit` as tables: what a task waits for, and what an exit asks to run."""

from __future__ import annotations

import pytest

from taskforce.core import ordering
from taskforce.core.spec import DesiredState, InstanceSpec, LaunchSpec, TaskSpec
from taskforce.core.state import Instance, Phase, TaskState
from taskforce.core.vocabulary import Control

INSTANCE = InstanceSpec(LaunchSpec("prog", ("prog",), ()))


def spec(
    name: str,
    control: Control = Control.WAIT,
    *,
    requires: tuple[str, ...] = (),
    start_delay: float = 0.0,
    onexit: tuple[str, ...] = (),
) -> TaskSpec:
    return TaskSpec(
        name, control, (INSTANCE,), requires=requires, start_delay=start_delay, onexit_start=onexit
    )


def state(
    name: str,
    *,
    up: float | None = None,
    ready: float | None = None,
    running: bool = False,
    generation: int = 1,
    ran: int = 0,
) -> TaskState:
    """A task's observed state: up since `up`, ready since `ready`, one slot."""
    inst = Instance(0, phase=Phase.RUNNING if running else Phase.IDLE, ran_generation=ran)
    return TaskState(name, {0: inst}, generation=generation, up_since=up, ready_since=ready)


APP = spec("app", requires=("db",))


@pytest.mark.parametrize(
    ("db", "db_state", "now", "blocker"),
    [
        # A wait task: started, then ready, then its start_delay past.
        (spec("db"), state("db"), 0.0, ("waiting for db to start", None)),
        (spec("db"), state("db", up=1.0, running=True), 2.0, ("waiting for db to be ready", None)),
        (spec("db"), state("db", up=1.0, ready=1.5, running=True), 2.0, (None, None)),
        (
            spec("db", start_delay=3.0),
            state("db", up=1.0, ready=1.5, running=True),
            2.0,
            ("waiting for db's start_delay", 4.5),
        ),
        (spec("db", start_delay=3.0), state("db", up=1.0, ready=1.5), 4.5, (None, None)),
        # A run-to-completion task: its asked runs finished.
        (
            spec("db", Control.ONCE),
            state("db", running=True, ran=1),
            0.0,
            ("waiting for db to finish", None),
        ),
        (spec("db", Control.ONCE), state("db", ran=0), 0.0, ("waiting for db to finish", None)),
        (spec("db", Control.ONCE), state("db", ran=1), 0.0, (None, None)),
        (spec("db", Control.EVENT), state("db", generation=0), 0.0, (None, None)),
        # off blocks, suspend lets through, out of scope is void.
        (spec("db", Control.OFF), state("db"), 0.0, ("requires db, whose control is off", None)),
        (spec("db", Control.SUSPEND), state("db"), 0.0, (None, None)),
        (None, None, 0.0, (None, None)),
    ],
)
def test_requires_blocker(
    db: TaskSpec | None,
    db_state: TaskState | None,
    now: float,
    blocker: tuple[str | None, float | None],
) -> None:
    tasks = {t.name: t for t in (db,) if t is not None}
    desired = DesiredState({"app": APP, **tasks})
    states = {"app": state("app"), **({"db": db_state} if db_state is not None else {})}
    assert ordering.requires_blocker(APP, desired, states, now) == blocker


def test_the_first_unmet_requirement_is_named() -> None:
    app = spec("app", requires=("a", "b"))
    desired = DesiredState({"app": app, "a": spec("a"), "b": spec("b")})
    states = {"a": state("a", up=0.0, ready=0.0), "b": state("b")}
    assert ordering.requires_blocker(app, desired, states, 1.0) == ("waiting for b to start", None)


def test_dependents_map_each_task_to_those_requiring_it() -> None:
    desired = DesiredState(
        {
            "db": spec("db"),
            "app": spec("app", requires=("db", "cache")),
            "worker": spec("worker", requires=("db",)),
        }
    )
    assert ordering.dependents(desired) == {"db": {"app", "worker"}, "cache": {"app"}}


@pytest.mark.parametrize(
    ("target_state", "generation_after"),
    [
        (state("setup", ran=1), 2),  # done: one more run is asked for
        (state("setup", ran=1, running=True), 1),  # still running: its run stands
        (state("setup", ran=0), 1),  # its run has not happened yet: no second one
    ],
)
def test_onexit_asks_a_finished_target_for_one_more_run(
    target_state: TaskState, generation_after: int
) -> None:
    desired = DesiredState(
        {"svc": spec("svc", onexit=("setup", "gone")), "setup": spec("setup", Control.ONCE)}
    )
    tasks = {"svc": state("svc"), "setup": target_state}
    assert ordering.onexit_runs(tasks["svc"], desired, tasks) == ["setup"]
    assert target_state.generation == generation_after


def test_onexit_of_a_task_that_left_the_configuration_asks_nothing() -> None:
    desired = DesiredState({"setup": spec("setup", Control.ONCE)})
    tasks = {"svc": state("svc"), "setup": state("setup", ran=1)}
    assert ordering.onexit_runs(tasks["svc"], desired, tasks) == []
    assert tasks["setup"].generation == 1
