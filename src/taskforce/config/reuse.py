"""Reuse the TaskSpecs of the previous resolve for the tasks that did not change.

A task's resolved spec is a pure function of its validated configuration and of the
inputs every task shares: the top-level defines, defaults, their role maps and
environment files, the settings' output, the configuration's path, the roles, the
environment and the host facts, and the answers of the user and group databases for the
names it uses. A reload of a large configuration where one task changed therefore
resolves that task only.

"Did not change" is decided strictly:

* the task's :class:`~taskforce.config.model.TaskConfig` must be the very object the
  previous resolve saw. The validation memo gives an unchanged task entry its previous
  object back; anything else (a changed entry, an override) makes a new one.
* every shared input must be equal to the previous one; values from the configuration
  are compared by repr, which tells 1, 1.0 and True apart where ``==`` does not. When one
  differs, every task is resolved again.
* the user and group lookups the task made must give the same answers today: accounts
  can be created or changed between two loads.

When the composition says which tasks' objects are not those of the configuration
resolved last (:class:`TaskChanges`), the others are not even looked at: only those, the
tasks that could not be resolved and those whose lookups give other answers are resolved,
and the desired state made says which of its tasks differ from the previous one (see
:func:`taskforce.core.spec.derived`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

from taskforce.config.host import HostFacts, UserInfo
from taskforce.config.model import Config, TaskConfig
from taskforce.config.roles import Roles
from taskforce.core.spec import DesiredState, TaskSpec, derived

# A question to the user or group database ("user" or "group", a name or id), and the
# answers a task's resolve got.
Lookup = tuple[str, str | int]
Answers = dict[Lookup, UserInfo | int | None]
# What most tasks asked: nothing (one empty map shared, not one a task).
_NO_ANSWERS: Mapping[Lookup, UserInfo | int | None] = MappingProxyType({})


class _Entry(NamedTuple):
    task: TaskConfig
    spec: TaskSpec
    answers: Mapping[Lookup, UserInfo | int | None]


class _Recorder:
    """Answers lookups from the host, noting each answer for the task being resolved."""

    def __init__(self, host: HostFacts) -> None:
        self.host = host
        self.answers: Answers = {}
        self.recording = dataclasses.replace(host, user_lookup=self.user, group_lookup=self.group)

    def user(self, key: str | int) -> UserInfo | None:
        found = self.host.user_lookup(key)
        self.answers.setdefault(("user", key), found)
        return found

    def group(self, key: str | int) -> int | None:
        found = self.host.group_lookup(key)
        self.answers.setdefault(("group", key), found)
        return found

    def same_answers(self, answers: Mapping[Lookup, UserInfo | int | None]) -> bool:
        """Whether the databases still give these answers."""
        for (kind, key), answer in answers.items():
            lookup = self.host.user_lookup if kind == "user" else self.host.group_lookup
            if lookup(key) != answer:
                return False
        return True


@dataclass(frozen=True, slots=True)
class TaskChanges:
    """Which tasks of a configuration are not the very TaskConfig objects of an earlier
    configuration's `base` (added and removed ones included: at least those); the other
    tasks are in the same order as there."""

    base: Mapping[str, TaskConfig]
    names: frozenset[str]


class _Last(NamedTuple):
    """What the latest resolve gave, for the next to start from."""

    tasks: Mapping[str, TaskConfig]  # the configuration's tasks it resolved
    specs: dict[str, TaskSpec]  # what resolved, in order (before the checks between tasks)
    out_of_scope: frozenset[str]
    failed: frozenset[str]  # could not be resolved
    linked: tuple[str, ...]  # tasks with requires or onexit, in order
    desired: DesiredState
    left_out: frozenset[str]  # resolved, and left out by the checks between tasks


class ResolveCache:
    """The specs of the latest resolve, with what each was made from.

    Used by :func:`taskforce.config.resolve.resolve`: :meth:`begin` a resolve (it gives
    the host to resolve with), then either :meth:`todo` says which tasks alone to
    resolve, or :meth:`reuse_all` gives the specs of every unchanged task; each other task
    :meth:`reuse` its spec, or is resolved and :meth:`keep` the result; :meth:`merged`
    adds what is kept to what was resolved, and :meth:`finish` ends the resolve. Only the
    tasks of the latest resolve are kept.
    """

    def __init__(self) -> None:
        self._inputs: tuple[object, ...] | None = None
        self._previous: dict[str, _Entry] = {}
        self._entries: dict[str, _Entry] = {}
        self._recorder: _Recorder | None = None
        self._last: _Last | None = None
        # The names whose entry made lookups (asked again at each resolve).
        self._asked: frozenset[str] = frozenset()
        self._todo: frozenset[str] | None = None

    def begin(
        self, config: Config, roles: Roles | None, environ: Mapping[str, str], host: HostFacts
    ) -> HostFacts:
        """Start a resolve; returns `host`, with the lookups it answers noted per task."""
        inputs = _shared_inputs(config, roles, environ, host)
        if inputs == self._inputs:
            self._previous = self._entries
        else:
            self._previous, self._last = {}, None
        self._inputs = inputs
        self._entries = {}
        self._todo = None
        if self._recorder is None or self._recorder.host is not host:
            self._recorder = _Recorder(host)
        return self._recorder.recording

    def todo(self, changes: TaskChanges | None) -> frozenset[str] | None:
        """After :meth:`begin`: the only tasks to resolve (those `changes` names, those
        that could not be resolved, those whose lookups give other answers now), every
        other one being as the latest resolve left it; None when every task is to be
        looked at (then :meth:`reuse_all`)."""
        last, recorder = self._last, self._recorder
        assert recorder is not None
        if changes is None or last is None or changes.base is not last.tasks:
            return None
        previous = self._previous
        asked = (n for n in self._asked if not recorder.same_answers(previous[n].answers))
        todo = changes.names | last.failed | frozenset(asked)
        entries = dict(previous)
        for name in todo:
            entries.pop(name, None)
        self._entries = entries
        self._todo = todo
        return todo

    def merged(
        self, tasks: Mapping[str, TaskConfig], specs: dict[str, TaskSpec], out_of_scope: set[str]
    ) -> tuple[dict[str, TaskSpec], set[str]]:
        """After resolving the tasks :meth:`todo` gave (`specs`, and those found out of
        scope): the specs and out-of-scope names of every task of `tasks`, in order."""
        last, todo = self._last, self._todo
        assert last is not None and todo is not None
        merged = dict(last.specs)
        out = set(last.out_of_scope)
        appended = False
        for name in todo:
            spec = specs.get(name)
            if spec is None:
                merged.pop(name, None)
            else:
                appended = appended or name not in merged
                merged[name] = spec
            if name in out_of_scope:
                out.add(name)
            else:
                out.discard(name)
        if appended:  # put where the configuration has it
            merged = {name: spec for name in tasks if (spec := merged.get(name)) is not None}
        return merged, out

    def linked(self, tasks: Mapping[str, TaskConfig]) -> tuple[str, ...]:
        """The tasks with `requires` or `onexit` (those the checks between tasks read), in
        order."""
        last, todo = self._last, self._todo
        if last is not None and todo is not None:
            before = set(last.linked)
            if all((name in before) == _links(tasks.get(name)) for name in todo):
                return last.linked
        return tuple(name for name, task in tasks.items() if _links(task))

    def finish(
        self,
        tasks: Mapping[str, TaskConfig],
        specs: dict[str, TaskSpec],
        failed: frozenset[str],
        linked: tuple[str, ...],
        desired: DesiredState,
    ) -> DesiredState:
        """End the resolve that gave `specs` (before the checks between tasks) and then
        `desired`; returns `desired`, knowing what differs from the previous one when
        only :meth:`todo`'s tasks were resolved."""
        last, todo, entries = self._last, self._todo, self._entries
        left_out = frozenset(specs.keys() - desired.tasks.keys()) if linked else frozenset()
        if last is not None and todo is not None:
            changed = todo | left_out | last.left_out
            desired = derived(
                last.desired, changed, desired.tasks, desired.policy, desired.out_of_scope
            )
            new_asked = (name for name in todo if (e := entries.get(name)) and e.answers)
            self._asked = (self._asked - todo) | frozenset(new_asked)
        else:
            self._asked = frozenset(name for name, entry in entries.items() if entry.answers)
        self._last = _Last(tasks, specs, desired.out_of_scope, failed, linked, desired, left_out)
        return desired

    def reuse_all(self, tasks: Mapping[str, TaskConfig]) -> dict[str, TaskSpec]:
        """The previous spec of each of `tasks` that nothing changed for, by name: in one
        pass, as most tasks of a reload are unchanged. (A task reused here was in scope
        last time, with the same roles: it is now.)"""
        assert self._recorder is not None
        previous, entries, recorder = self._previous, self._entries, self._recorder
        found: dict[str, TaskSpec] = {}
        if not previous:
            return found
        for name, task in tasks.items():
            entry = previous.get(name)
            if (
                entry is not None
                and entry.task is task
                and (not entry.answers or recorder.same_answers(entry.answers))
            ):
                entries[name] = entry
                found[name] = entry.spec
        return found

    def reuse(self, name: str, task: TaskConfig) -> TaskSpec | None:
        """The previous spec of `name`, if nothing it was made from has changed; else
        None, and the lookups made until :meth:`keep` are the task's."""
        assert self._recorder is not None
        entry = self._previous.get(name)
        if (
            entry is not None
            and entry.task is task
            and (not entry.answers or self._recorder.same_answers(entry.answers))
        ):
            self._entries[name] = entry
            return entry.spec
        self._recorder.answers = {}
        return None

    def keep(self, name: str, task: TaskConfig, spec: TaskSpec) -> None:
        """Remember the spec just resolved for `name` from `task`."""
        assert self._recorder is not None
        answers = self._recorder.answers
        self._entries[name] = _Entry(task, spec, answers if answers else _NO_ANSWERS)


def _links(task: TaskConfig | None) -> bool:
    return task is not None and bool(task.requires or task.onexit)


def _shared_inputs(
    config: Config, roles: Roles | None, environ: Mapping[str, str], host: HostFacts
) -> tuple[object, ...]:
    """What every task's spec depends on besides the task itself, comparable with ==."""
    return (
        repr(config.defines),
        repr(config.defaults),
        repr(config.role_defines),
        repr(config.role_defaults),
        repr(config.settings.output),
        dict(config.env),  # the top-level env_files' variables: strings only
        config.source,
        roles,  # names and values: strings only
        dict(environ),  # strings only
        host,
    )
