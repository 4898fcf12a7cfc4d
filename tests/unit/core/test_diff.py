"""diff_desired and changed_tasks: what applying a new desired state does, task by task."""

from __future__ import annotations

from taskforce.core.diff import ChangeKind, TaskChange, changed_tasks, diff_desired
from taskforce.core.spec import DesiredState, InstanceSpec, LaunchSpec, TaskSpec
from taskforce.core.vocabulary import Control


def spec(name: str, *argv: str, control: Control = Control.WAIT, count: int = 1) -> TaskSpec:
    launch = LaunchSpec(argv[0] if argv else "prog", argv or ("prog",), ())
    return TaskSpec(name, control, tuple(InstanceSpec(launch) for _ in range(count)))


def state(*specs: TaskSpec) -> DesiredState:
    return DesiredState({s.name: s for s in specs})


def test_changed_tasks_is_the_diff_without_untouched_tasks() -> None:
    kept = spec("kept")
    old = state(
        kept,
        spec("equal"),
        spec("argv", "a"),
        spec("gone"),
        spec("off", control=Control.OFF),
        spec("scaled"),
    )
    new = state(
        kept,
        spec("equal"),  # equal, not the same object
        spec("argv", "b"),
        spec("new"),
        spec("off"),
        spec("scaled", count=3),
    )
    full = diff_desired(old, new)
    assert [c for c in full if c.kind is not ChangeKind.UNTOUCHED] == changed_tasks(old, new)
    assert changed_tasks(old, new) == [
        TaskChange("argv", ChangeKind.RESTART, ("argv", "program")),
        TaskChange("gone", ChangeKind.STOP),
        TaskChange("new", ChangeKind.START),
        TaskChange("off", ChangeKind.START),
        TaskChange("scaled", ChangeKind.SCALE, ("count 1 -> 3",)),
    ]
    assert {c.task for c in full if c.kind is ChangeKind.UNTOUCHED} == {"kept", "equal"}


def test_nothing_changed() -> None:
    desired = state(spec("a"), spec("b"))
    assert changed_tasks(desired, desired) == []
    assert changed_tasks(desired, state(spec("a"), spec("b"))) == []
