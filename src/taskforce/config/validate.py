"""Validate a loaded document into the typed :class:`~taskforce.config.model.Config`.

Two passes, both collecting every problem rather than stopping at the first:

1. The shape of each value, from the declarative description in
   :mod:`taskforce.config.description` (unknown keys, types, ranges, enum words).
2. The links between tasks: ``requires`` and ``onexit`` naming tasks that exist, onexit
   starting only *once* tasks, events naming commands the task has, no ``requires`` cycles;
   and keys that take one value, written as a conditional that gives several whatever the
   context.
   This pass reads the raw document, so that a mistake in one task does not hide a broken
   link in another.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from taskforce.config.context import ALWAYS_PRESENT, REFERENCE, SHARED_FACTS
from taskforce.config.description import BUILTIN_COMMANDS, CONFIG, SETTINGS, TASK
from taskforce.config.errors import ConfigError, Problem
from taskforce.config.model import Config
from taskforce.config.shapes import (
    Invalid,
    Memo,
    OneOf,
    Reporter,
    Shape,
    certain_leaves,
    did_you_mean,
    every_leaf,
)
from taskforce.config.shapes_compound import ListOf, Record, Remembered
from taskforce.config.yaml_source import Document, Path
from taskforce.core.vocabulary import Control


def validate_document(document: Document, memo: Memo | None = None) -> Config:
    """The configuration `document` describes; ConfigError listing every problem if invalid.

    `memo` keeps what this validation found for the next: give the same one to each
    load of a file, and a task entry that did not change is not checked again.
    """
    report = Reporter(document, memo=memo)
    config = CONFIG.check(document.data, (), report)
    if memo is not None:
        memo.finish()
    check_links(document, report)
    if report.problems or isinstance(config, Invalid):
        raise ConfigError(sorted(report.problems, key=_position))
    return dataclasses.replace(config, source=document.source)


def _position(problem: Problem) -> tuple[int, int]:
    if problem.mark is None:
        return (0, 0)
    return (problem.mark.line, problem.mark.column)


def check_links(document: Document, report: Reporter) -> None:
    """Report references between tasks that lead nowhere or in circles."""
    tasks = raw_tasks(document.data)
    check_entries(document.data, report, tasks, defined_names(document.data))
    check_between(report, tasks)


def defined_names(data: Mapping[str, object]) -> frozenset[str]:
    """The names a document's `defines` certainly put in its tasks' contexts."""
    top = data.get("defines")
    return frozenset(top) if isinstance(top, dict) else frozenset()


def check_entries(
    data: Mapping[str, object],
    report: Reporter,
    tasks: Mapping[str, RawTask],
    defined: frozenset[str],
) -> None:
    """The checks that read one task entry (and the settings) alone; `defined`: the
    names defined for every task of `tasks`."""
    certain = ALWAYS_PRESENT.union(defined)
    settings = data.get("settings")
    if isinstance(settings, dict):
        # Settings are chosen in the top-level context, but for `output`: in each task's.
        for key_at, value in _one_values(SETTINGS, settings, ("settings",)):
            if key_at[1] == "output":
                _check_one_value(report, key_at, value, certain, "each task's")
            else:
                _check_one_value(
                    report, key_at, value, SHARED_FACTS.union(defined), "the top-level"
                )
    for name, task in tasks.items():
        at: Path = ("tasks", name)
        defines = task.get("defines")
        present = certain.union(defines) if isinstance(defines, dict) else certain
        for key_at, value in _one_values(TASK, task, at):
            _check_one_value(report, key_at, value, present, "the task's")
        # Each check only when its key is there: most tasks have none of them.
        if "events" in task:
            _check_event_commands(report, task, at)
        if "control" in task:
            _check_daemon_pidfile(report, task, at)


def check_between(
    report: Reporter, tasks: Mapping[str, RawTask], linked: Iterable[str] | None = None
) -> None:
    """The checks of the links from task to task: named tasks that exist, onexit
    targets that are once tasks, no requires cycles. `linked`, when known, names the
    tasks with `requires` or `onexit` (the others are not looked at)."""
    names = tasks if linked is None else sorted(linked)
    for name in names:
        task = tasks[name]
        if "requires" in task:
            _check_requires(report, tasks, name)
        if "onexit" in task:
            _check_onexit(report, tasks, ("tasks", name))
    _check_cycles(report, tasks, names)


RawTask = Mapping[str, object]


def raw_tasks(data: Mapping[str, object]) -> dict[str, RawTask]:
    """The task entries of a loaded document (a malformed entry as an empty one)."""
    tasks = data.get("tasks")
    if not isinstance(tasks, dict):
        return {}
    return {name: task if isinstance(task, dict) else {} for name, task in tasks.items()}


def _listed_names(tasks: Mapping[str, RawTask], at: Path) -> Iterator[tuple[Path, str]]:
    """The names in a 'name or list of names' value of a task (`at` is its path: tasks,
    name, key), each with the path it is written at."""
    _, name, key = at
    value = tasks[str(name)].get(str(key))
    if isinstance(value, str):
        yield at, value
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, str):
                yield (*at, index), item


def _one_values(shape: Shape[Any], value: object, at: Path) -> Iterator[tuple[Path, object]]:
    """The conditionals written (at any depth below `at`) for keys that take one value."""
    if isinstance(shape, Remembered):
        shape = shape.shape
    if isinstance(shape, Record) and isinstance(value, dict):
        for key, item in value.items():
            field = shape.fields.get(key)
            if field is not None and isinstance(field.shape, OneOf):
                if isinstance(item, list | dict):
                    yield (*at, key), item
            elif field is not None:
                yield from _one_values(field.shape, item, (*at, key))
    elif isinstance(shape, ListOf):
        if isinstance(value, list):
            for index, item in enumerate(value):
                yield from _one_values(shape.item, item, (*at, index))
        elif shape.single_ok:
            yield from _one_values(shape.item, value, at)


def _check_one_value(
    report: Reporter, at: Path, value: object, present: frozenset[str], scope: str
) -> None:
    """A conditional gives several values in every context: say so now, not per host.
    (`scope` names the context the values are chosen in.)"""
    if (count := certain_leaves(value, present)) > 1:
        report.error(
            at,
            f"gives {count} values in every context, where one is expected (a map chooses "
            f"the values of the names in {scope} context; a list, all of them)",
        )


def _names(value: object, at: Path) -> Iterator[tuple[Path, str]]:
    """The task (or command) names a value may give, each with where it is written; those
    with a {name} substitution are left to the resolution, which knows their value."""
    for leaf_at, leaf in every_leaf(value, at):
        if isinstance(leaf, str) and not REFERENCE.search(leaf):
            yield leaf_at, leaf


def _check_requires(report: Reporter, tasks: Mapping[str, RawTask], name: str) -> None:
    for at, required in _names(tasks[name].get("requires"), ("tasks", name, "requires")):
        if required == name:
            report.error(at, "a task cannot require itself")
        elif required not in tasks:
            report.error(at, f"there is no task {required!r}{did_you_mean(required, tasks)}")


def _onexit_entries(
    tasks: Mapping[str, RawTask], at: Path
) -> Iterator[tuple[Path, dict[str, object]]]:
    value = tasks[str(at[-1])].get("onexit")
    if isinstance(value, dict):
        yield (*at, "onexit"), value
    elif isinstance(value, list):
        for index, entry in enumerate(value):
            if isinstance(entry, dict):
                yield (*at, "onexit", index), entry


def _check_onexit(report: Reporter, tasks: Mapping[str, RawTask], at: Path) -> None:
    for entry_at, entry in _onexit_entries(tasks, at):
        if entry.get("type") != "start":
            continue  # the shape check reports it
        # Each task the entry may start (a conditional: each of its values).
        for target_at, target in _names(entry.get("task"), (*entry_at, "task")):
            if target not in tasks:
                report.error(target_at, f"there is no task {target!r}{did_you_mean(target, tasks)}")
                continue
            control = tasks[target].get("control", Control.WAIT.value)
            once = Control.ONCE.value
            if isinstance(control, str) and control != once:
                report.error(
                    target_at,
                    f"onexit can only start a 'once' task, and {target!r} has control {control!r}",
                )
            elif isinstance(control, list | dict) and all(
                leaf != once for _, leaf in every_leaf(control, ())
            ):
                # Otherwise it depends on the context: checked when resolved.
                report.error(
                    target_at,
                    f"onexit can only start a 'once' task, and no value of {target!r}'s "
                    "conditional control is 'once'",
                )


def _check_daemon_pidfile(report: Reporter, task: RawTask, at: Path) -> None:
    control = task.get("control")
    if control in ("nowait", "adopt") and task.get("pidfile") is None:
        report.error(
            (*at, "control"),
            f"a {control} task runs in the background and is found through its pidfile: "
            "add a 'pidfile'",
        )


def _check_event_commands(report: Reporter, task: RawTask, at: Path) -> None:
    commands = task.get("commands")
    events = task.get("events")
    if not isinstance(commands, dict) or not isinstance(events, list):
        return  # the shape check reports these
    known = [*commands, *(name for name in BUILTIN_COMMANDS if name not in commands)]
    for index, event in enumerate(events):
        command = event.get("command") if isinstance(event, dict) else None
        for command_at, name in _names(command, (*at, "events", index, "command")):
            if name not in known:
                report.error(
                    command_at,
                    f"the task has no command {name!r}{did_you_mean(name, known)}; "
                    f"it has {', '.join(known)}",
                )


# Past this many, more cycles are the same mistake over again: each costs a walk round it.
MAX_CYCLES = 20
# A cycle longer than this is shown by its ends.
_SHOWN_IN_CYCLE = 12


def _check_cycles(
    report: Reporter, tasks: Mapping[str, RawTask], names: Iterable[str] | None = None
) -> None:
    """Report each distinct requires cycle once, at its alphabetically first task (of
    those in `names`, the tasks that may require others: all by default)."""
    edges: dict[str, list[tuple[Path, str]]] = {}
    for name in tasks if names is None else names:
        if "requires" in tasks[name]:
            edges[name] = [
                (at, required)
                for at, required in _listed_names(tasks, ("tasks", name, "requires"))
                if required in tasks and required != name  # reported on their own
            ]
    reported: set[tuple[str, ...]] = set()
    for cycle, paths in find_cycles(edges):
        # The same loop can be met from different starting points: name it one way.
        first = cycle.index(min(cycle))
        cycle, paths = cycle[first:] + cycle[:first], paths[first:] + paths[:first]
        if cycle not in reported:
            reported.add(cycle)
            report.error(paths[0], f"requires cycle: {_show_cycle(cycle)}")
            if len(reported) == MAX_CYCLES:
                return


def _show_cycle(cycle: tuple[str, ...]) -> str:
    names = [*cycle, cycle[0]]
    if len(names) > _SHOWN_IN_CYCLE:
        half = _SHOWN_IN_CYCLE // 2
        names = [*names[:half], f"... ({len(names) - 2 * half} more)", *names[-half:]]
    return " -> ".join(names)


Cycle = tuple[tuple[str, ...], tuple[Path, ...]]


def find_cycles(edges: Mapping[str, list[tuple[Path, str]]]) -> Iterator[Cycle]:
    """Yield each cycle met by a depth-first search: its tasks, and the path of the
    requirement leading from each task to the next.

    The search keeps its own stack: a chain of requires may be far longer than Python's
    recursion limit.
    """
    done: set[str] = set()
    for root, required in edges.items():
        if not required or root in done:  # a task requiring none is in no cycle
            continue
        stack = [root]
        position = {root: 0}  # of each task on the stack
        via: list[Path] = []  # via[i]: the requirement that led from stack[i] to stack[i + 1]
        pending = [iter(edges[root])]  # the requirements of each task on the stack not yet seen
        while pending:
            for at, name in pending[-1]:
                if name in position:
                    start = position[name]
                    yield tuple(stack[start:]), (*via[start:], at)
                elif name not in done:
                    position[name] = len(stack)
                    stack.append(name)
                    via.append(at)
                    pending.append(iter(edges.get(name, ())))
                    break
            else:  # every requirement of the task on top seen: it is done
                pending.pop()
                name = stack.pop()
                del position[name]
                done.add(name)
                if via:
                    via.pop()
