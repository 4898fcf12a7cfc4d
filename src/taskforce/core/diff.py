"""What applying a new desired state would do, task by task (for logs and `-C`)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import StrEnum

from taskforce.core.spec import DesiredState, LaunchSpec, TaskSpec, differing
from taskforce.core.vocabulary import Control

_NOT_RUN = frozenset({Control.OFF, Control.SUSPEND})


class ChangeKind(StrEnum):
    START = "start"
    STOP = "stop"
    RESTART = "restart"
    SCALE = "scale"  # count changed: only the instances concerned start or stop
    UPDATE = "update"  # changed in place, processes untouched
    UNTOUCHED = "untouched"


@dataclass(frozen=True, slots=True)
class TaskChange:
    task: str
    kind: ChangeKind
    fields: tuple[str, ...] = ()

    def __str__(self) -> str:
        what = f" ({', '.join(self.fields)})" if self.fields else ""
        return f"{self.kind}: {self.task}{what}"


def diff_desired(old: DesiredState, new: DesiredState) -> list[TaskChange]:
    """What changes for every task of either state, untouched ones included."""
    return [
        _change(name, old.tasks.get(name), new.tasks.get(name))
        for name in sorted(old.tasks.keys() | new.tasks.keys())
    ]


def changed_tasks(old: DesiredState, new: DesiredState) -> list[TaskChange]:
    """What changes for the tasks that are not untouched.

    A reload keeps the very spec object of each task that did not change, so those are
    passed over without comparing them field by field (or looking at them at all, when
    `new` knows what differs from `old`).
    """
    before, after = old.tasks, new.tasks
    names = sorted(differing(old, new))
    changes = (_change(name, before.get(name), after.get(name)) for name in names)
    return [change for change in changes if change.kind is not ChangeKind.UNTOUCHED]


def _change(name: str, before: TaskSpec | None, after: TaskSpec | None) -> TaskChange:
    if before is None or before.control in _NOT_RUN:
        if after is not None and after.control not in _NOT_RUN:
            return TaskChange(name, ChangeKind.START)
        if after is not None and before is not None and before != after:
            return TaskChange(name, ChangeKind.UPDATE, _task_fields(before, after))
        return TaskChange(name, ChangeKind.UNTOUCHED)
    if after is None or after.control in _NOT_RUN:
        return TaskChange(name, ChangeKind.STOP)
    return _compare(before, after)


def _compare(before: TaskSpec, after: TaskSpec) -> TaskChange:
    if before == after:
        return TaskChange(before.name, ChangeKind.UNTOUCHED)
    launch_fields: set[str] = set()
    for old, new in zip(before.instances, after.instances, strict=False):
        launch_fields.update(_launch_fields(old.launch, new.launch))
    if before.control != after.control:
        launch_fields.add("control")
    if launch_fields:
        return TaskChange(before.name, ChangeKind.RESTART, tuple(sorted(launch_fields)))
    if before.count != after.count:
        return TaskChange(
            before.name, ChangeKind.SCALE, (f"count {before.count} -> {after.count}",)
        )
    return TaskChange(before.name, ChangeKind.UPDATE, _task_fields(before, after))


def _launch_fields(old: LaunchSpec, new: LaunchSpec) -> list[str]:
    changed: list[str] = []
    for f in fields(LaunchSpec):
        if f.name == "env":
            keys = {k for k, _ in set(old.env) ^ set(new.env)}
            changed.extend(f"env {k}" for k in sorted(keys))
        elif getattr(old, f.name) != getattr(new, f.name):
            changed.append(f.name)
    return changed


def _task_fields(before: TaskSpec, after: TaskSpec) -> tuple[str, ...]:
    changed = [
        f.name
        for f in fields(TaskSpec)
        if f.name != "instances" and getattr(before, f.name) != getattr(after, f.name)
    ]
    for name in ("commands", "pidfile", "output", "ready_command"):
        if [getattr(i, name) for i in before.instances] != [
            getattr(i, name) for i in after.instances
        ]:
            changed.append(name)
    return tuple(changed)
