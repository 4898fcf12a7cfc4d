"""Which tasks, and which of their keys, a status request asks for: `?task=`, `?state=`
and `?fields=` parsed once, then matched against each task.

`task` names tasks or glob patterns (`web-*`, `db-?`); `state` names states of
:data:`TASK_STATES`, or `wanted` / `unwanted` (whether the task is as asked: see
:func:`taskforce.core.wanted.in_wanted_state`); `fields` names keys of a task's entry.
Each may be given more than once and holds comma-separated values (a task name that
itself holds a comma matches when given whole). A state or field name that does not
exist is a 400 naming it; a task name that matches nothing only selects nothing.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from taskforce.runtime.manage import ControlError

# Every state of a task in /status/tasks (the metrics have a 0/1 series for each).
TASK_STATES = (
    "running", "starting", "stopping", "stopped", "waiting", "backing off", "failed",
    "off", "suspend", "pending", "done", "removed", "invalid",
)  # fmt: skip
# Not states: whether a task is in the state it is wanted in, or not.
WANTED, UNWANTED = "wanted", "unwanted"
# The keys of a task's entry in /status/tasks, in their order there.
TASK_FIELDS = (
    "control", "count", "running", "state", "why", "error", "restarts", "requires",
    "next_run", "next_run_t", "output_captured", "sockets", "rolling", "processes", "history",
)  # fmt: skip
GLOB = re.compile(r"[*?[]")
MAX_SHOWN = 60  # characters of a bad value quoted back


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """A parsed filter; None in a slot means "no filter on this"."""

    names: frozenset[str] | None = None  # exact task names asked for
    patterns: tuple[str, ...] = ()  # glob patterns asked for
    states: frozenset[str] | None = None  # states asked for (wanted/unwanted included)
    fields: tuple[str, ...] | None = None  # keys wanted, in TASK_FIELDS order

    @property
    def everything(self) -> bool:
        """No filter at all: the full table, as the original answers it."""
        return self.names is None and self.states is None and self.fields is None

    @property
    def by_name(self) -> bool:
        return self.names is not None

    def selects_name(self, name: str) -> bool:
        if self.names is None:
            return True
        return name in self.names or any(fnmatch.fnmatchcase(name, p) for p in self.patterns)

    def selects_state(self, state: str, wanted: bool) -> bool:
        states = self.states
        if states is None:
            return True
        return state in states or (WANTED if wanted else UNWANTED) in states

    def exact_names(self) -> list[str] | None:
        """The names asked for when there are no patterns (looked up directly), else None."""
        if self.names is None or self.patterns:
            return None
        return sorted(self.names)


EVERYTHING = TaskQuery()


def parse_query(params: Mapping[str, Sequence[str]], *, fields: bool = True) -> TaskQuery:
    """The filter of a status request's parameters; ControlError(400) on a bad one.
    `fields`: whether ?fields= makes sense here (not on /status/summary)."""
    names: frozenset[str] | None = None
    patterns: tuple[str, ...] = ()
    if "task" in params:
        words = _values(params["task"], "task", whole=True)
        names = frozenset(words)
        # A value holding a comma, taken whole, is a name, never a pattern.
        patterns = tuple(w for w in words if GLOB.search(w) and "," not in w)
    states = None
    if "state" in params:
        states = frozenset(_values(params["state"], "state"))
        known = (*TASK_STATES, WANTED, UNWANTED)
        for state in sorted(states):
            if state not in known:
                raise ControlError(
                    400,
                    f"unknown state {_shown(state)} in ?state=; states are " + ", ".join(known),
                )
    chosen = None
    if "fields" in params:
        if not fields:
            raise ControlError(400, "?fields= does not apply here")
        asked = _values(params["fields"], "fields")
        for name in asked:
            if name not in TASK_FIELDS:
                raise ControlError(
                    400,
                    f"unknown field {_shown(name)} in ?fields=; fields are "
                    + ", ".join(TASK_FIELDS),
                )
        chosen = tuple(f for f in TASK_FIELDS if f in asked)
    return TaskQuery(names, patterns, states, chosen)


def _values(given: Sequence[str], param: str, *, whole: bool = False) -> list[str]:
    """Every comma-separated value of a repeated parameter (with `whole`, each given value
    also as it is, for names that hold a comma); none at all is a 400."""
    out: list[str] = []
    for value in given:
        parts = [part.strip() for part in value.split(",") if part.strip()]
        if whole and len(parts) > 1:
            out.append(value)
        out.extend(parts)
    if not out:
        raise ControlError(400, f"?{param}= is empty: give one or more values, comma-separated")
    return out


def _shown(value: str) -> str:
    return repr(value if len(value) <= MAX_SHOWN else value[:MAX_SHOWN] + "...")


__all__ = [
    "EVERYTHING",
    "TASK_FIELDS",
    "TASK_STATES",
    "UNWANTED",
    "WANTED",
    "TaskQuery",
    "parse_query",
]
