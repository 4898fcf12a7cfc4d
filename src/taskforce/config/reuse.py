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
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import NamedTuple

from taskforce.config.host import HostFacts, UserInfo
from taskforce.config.model import Config, TaskConfig
from taskforce.config.roles import Roles
from taskforce.core.spec import TaskSpec

# A question to the user or group database ("user" or "group", a name or id), and the
# answers a task's resolve got.
Lookup = tuple[str, str | int]
Answers = dict[Lookup, UserInfo | int | None]


class _Entry(NamedTuple):
    task: TaskConfig
    spec: TaskSpec
    answers: Answers


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

    def same_answers(self, answers: Answers) -> bool:
        """Whether the databases still give these answers."""
        for (kind, key), answer in answers.items():
            lookup = self.host.user_lookup if kind == "user" else self.host.group_lookup
            if lookup(key) != answer:
                return False
        return True


class ResolveCache:
    """The specs of the latest resolve, with what each was made from.

    Used by :func:`taskforce.config.resolve.resolve`: :meth:`begin` a resolve (it gives
    the host to resolve with), then for each task :meth:`reuse` its spec, or resolve it
    and :meth:`keep` the result. Only the tasks of the latest resolve are kept.
    """

    def __init__(self) -> None:
        self._inputs: tuple[object, ...] | None = None
        self._previous: dict[str, _Entry] = {}
        self._entries: dict[str, _Entry] = {}
        self._recorder: _Recorder | None = None

    def begin(
        self, config: Config, roles: Roles | None, environ: Mapping[str, str], host: HostFacts
    ) -> HostFacts:
        """Start a resolve; returns `host`, with the lookups it answers noted per task."""
        inputs = _shared_inputs(config, roles, environ, host)
        self._previous = self._entries if inputs == self._inputs else {}
        self._inputs = inputs
        self._entries = {}
        if self._recorder is None or self._recorder.host is not host:
            self._recorder = _Recorder(host)
        return self._recorder.recording

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
        self._entries[name] = _Entry(task, spec, self._recorder.answers)


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
