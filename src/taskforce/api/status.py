# Over 450 lines: one job, the status views (kept table, metrics, readings: own modules).
"""The status views of a running legion, as JSON: its tasks and their processes, where its
configuration comes from and how its last change went, its own counts and version.

Made from the facts the runtime keeps (the planner's state, the legion's loaded
configuration); read by the routes, the event stream and the metrics. The api's
:class:`Controller` is the runtime's control facade with these views beside it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime

from taskforce import __version__
from taskforce.api.metrics import (
    STATE,
    USAGE_FAMILIES,
    Row,
    pack,
    series_of,
    state_lines,
    usage_lines,
)
from taskforce.api.query import EVERYTHING, TASK_STATES, UNWANTED, WANTED, TaskQuery
from taskforce.api.readings import Readings
from taskforce.api.table import Entry, join, make_entry, pieces
from taskforce.config.include import Composition
from taskforce.config.notify_targets import without_secrets
from taskforce.core.state import Instance, Phase, TaskState, Waiting
from taskforce.core.vocabulary import Control
from taskforce.core.wanted import is_wanted
from taskforce.runtime.legion import Legion
from taskforce.runtime.manage import JSON, ControlError, Controls
from taskforce.runtime.own import memory
from taskforce.runtime.processes.spawn import describe_status
from taskforce.runtime.processes.usage import GroupFiles, Reading, read_usages

# A process by (task, instance, pid): its usage reading's key.
UsageKey = tuple[str, int, int | None]
# What is read of it: its pid, and where its instance's cgroup's files are.
UsageTarget = tuple[int | None, GroupFiles | None]

# Seconds the task table's entries are kept after the last status view that used them:
# they serve the views that follow (a dashboard, a scrape every minute) at the cost of
# what changed since; once none has come for this long, they are dropped and their memory
# handed back (1.3 KB a task: one `taskforce status` kept 13 MB with 10,000 tasks).
ENTRIES_KEPT = 120.0


def iso(wall: float | None) -> str | None:
    if not wall:
        return None
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds")


class Controller(Controls):
    """The control facade of a legion (:class:`~taskforce.runtime.manage.Controls`) and its
    status views."""

    def __init__(self, legion: Legion, clock: Callable[[], float] = time.time) -> None:
        super().__init__(legion)
        self.started_wall = clock()
        # The task table's entries (see api/table.py), in the table's order, and what they
        # were last checked against: the planning passes, the supervisor, the configuration.
        self._entries: dict[str, Entry] = {}
        self._checked: tuple[int, object, object] | None = None
        self._position: dict[str, int] = {}
        self._used = 0.0  # when a view last used them (the event loop's clock)
        self._dropping: asyncio.TimerHandle | None = None
        # The latest usage readings, taken in a worker thread (api/readings.py).
        self._usage: Readings[UsageKey, UsageTarget] = Readings(self._usage_targets, _read)

    def version(self) -> JSON:
        return {
            "taskforce": __version__,
            "python": sys.version.split()[0],
            "platform": sys.platform,
        }

    def config(self) -> JSON:
        """The running configuration document, as loaded: what the original's
        /status/config answers (the listeners' tokens and notification credentials
        hidden)."""
        loaded = self.legion.loaded
        if loaded is None:
            raise ControlError(503, "no configuration is loaded yet")
        data = loaded.data
        if isinstance(data, Composition):  # with the files read and where each task is
            data = data.status()
        data = _without_tokens(data)
        return data if isinstance(data, dict) else {}

    def reload_status(self) -> JSON:
        """Where the configuration comes from and how its latest change went."""
        loaded = self.legion.loaded
        error = self.legion.reload_error
        return {
            "file": self.legion.config_file,
            "roles_file": self.legion.roles_file,
            "roles": list(loaded.roles.names) if loaded and loaded.roles is not None else None,
            "reload_error": [str(p) for p in error.problems] if error else None,
            "overrides": {
                t: {k: str(v) for k, v in o.items()} for t, o in self.legion.overrides.items()
            },
        }

    def tasks(self, *, query: TaskQuery = EVERYTHING) -> JSON:
        """Every task's state and processes (or those `query` selects, with its fields),
        without the usage figures (the event stream and the fleet's status go without, as
        they are made on every change). The table as objects; table() is the same as JSON
        text, made faster."""
        out: JSON = {}
        for name, state, refused in self._rows(query):
            task = self._task(state) if state is not None else self._refused(name, "")
            if refused is not None:
                _refuse(task, refused, state is not None)
            wanted = is_wanted(task["state"], (p["status"] for p in task["processes"]))
            if query.selects_state(task["state"], wanted):
                fields = query.fields
                out[name] = task if fields is None else {f: task[f] for f in fields}
        return out

    async def tasks_with_usage(self, query: TaskQuery = EVERYTHING) -> JSON:
        """tasks(), with each process's CPU seconds and resident bytes and its instance's
        cgroup's figures (see readings()): the table as it was when asked."""
        out = self.tasks(query=query)
        shown = [(n, p) for n, t in out.items() for p in t.get("processes", ())]
        found = await self.readings([(n, p["instance"], p["pid"]) for n, p in shown])
        for name, process in shown:
            process.update(_usage(found[name, process["instance"], process["pid"]]))
        return out

    def table(self, query: TaskQuery = EVERYTHING) -> bytes:
        """The JSON text of tasks(query=query), compact, from the entries kept between
        requests: only tasks changed since are made anew."""
        return join(self._items(query), query, None)

    async def table_with_usage(self, query: TaskQuery = EVERYTHING) -> list[bytes]:
        """The JSON text of tasks_with_usage(query), made as table() is, in pieces (to be
        joined, or written out a batch at a time)."""
        items = self._items(query)  # as they are now: what the reading is of
        if query.fields is not None and "processes" not in query.fields:
            return pieces(items, query, None)
        # Only the processes shown are read.
        items = [item for item in items if query.selects_state(item[1].state, item[1].wanted)]
        found = await self.readings(
            [(n, slot, pid) for n, e in items for slot, pid in e.processes()]
        )
        return pieces(items, query, lambda task, slot, pid: _usage_text(found[task, slot, pid]))

    def _items(self, query: TaskQuery) -> list[tuple[str, Entry]]:
        """The entries of the tasks `query` names, in the table's order."""
        entries = self._current_entries()
        if query.by_name:
            names = query.exact_names()
            if names is not None:
                items = [(n, entries[n]) for n in names if n in entries]
                items.sort(key=lambda item: self._position[item[0]])
                return items
            return [(n, e) for n, e in entries.items() if query.selects_name(n)]
        return list(entries.items())

    async def readings(self, keys: Sequence[UsageKey]) -> dict[UsageKey, Reading]:
        """The usage of each process and of its instance's cgroup: read now (in a worker
        thread, while the event loop goes on), or at most USAGE_MAX_AGE seconds ago, or by
        the reading under way. A process gone meanwhile has no figures (None)."""
        return await self._usage.of(keys)

    def _usage_targets(self, keys: list[UsageKey]) -> list[UsageTarget]:
        confinement = self._supervisor().confinement
        return [(pid, confinement.usage_files(task, slot)) for task, slot, pid in keys]

    async def series(self) -> list[Row]:
        """Every task's lines of /metrics (api/metrics.py), in the table's order: those
        kept with its entry, and its processes' usage read as for the table."""
        entries = self._current_entries()  # as they are now: what the reading is of
        # The kept lines first, each task's made and packed before the next: made among
        # the scrape's passing objects, they would hold twice their size in the
        # allocator's arenas once those are gone (13 MB for 6 at 10,000 tasks).
        for name, entry in entries.items():
            if entry.lines is None:
                made = series_of(name, json.loads(entry.text), usage=False)
                made[STATE] = b""  # made at each scrape (see state_lines)
                entry.lines, entry.line_ends = pack(made)
        found = await self.readings(
            [(n, slot, pid) for n, e in entries.items() for slot, pid in e.processes()]
        )
        return [self._series_row(name, entry, found) for name, entry in entries.items()]

    @staticmethod
    def _series_row(name: str, entry: Entry, found: dict[UsageKey, Reading]) -> Row:
        text, ends = entry.lines, entry.line_ends
        if text is None or ends is None:  # made by series() before the reading
            raise AssertionError(f"{name}: no /metrics lines kept")
        state = state_lines(name, entry.state)
        if not entry.spots:
            return text, ends, (state, b"", b"", b"", b"", b"")
        lines: list[list[str]] = [[] for _ in USAGE_FAMILIES]
        for slot, pid in entry.processes():
            cpu, rss, group = _usage(found[name, slot, pid]).values()
            usage = usage_lines(name, slot, pid is not None, (cpu, rss), group)
            for into, line in zip(lines, usage, strict=True):
                into.append(line)
        return text, ends, (state, *["".join(family).encode() for family in lines])

    def summary(self, query: TaskQuery = EVERYTHING) -> JSON:
        """How many tasks are in each state, and in their wanted state or not."""
        counts = dict.fromkeys(TASK_STATES, 0)
        total = wanted = 0
        for name, entry in self._current_entries().items():
            if query.selects_name(name) and query.selects_state(entry.state, entry.wanted):
                counts[entry.state] = counts.get(entry.state, 0) + 1
                total += 1
                wanted += entry.wanted
        return {"total": total, WANTED: wanted, UNWANTED: total - wanted, "states": counts}

    def _rows(
        self, query: TaskQuery = EVERYTHING
    ) -> Iterator[tuple[str, TaskState | None, str | None]]:
        """(name, state, why its new entry was refused) of every task in the table's
        order that `query` names: a task whose entry cannot be used is shown with why,
        never left out (state None: it never ran)."""
        planner = self._supervisor().planner
        desired = planner.desired.tasks
        loaded = self.legion.loaded
        refused = loaded.refused if loaded is not None else {}
        names = list(desired)
        names += sorted(n for n in planner.tasks if n not in desired)
        shown = set()
        for name in names:
            state = planner.tasks.get(name)
            if state is not None:
                shown.add(name)
                if query.selects_name(name):
                    error = refused.get(name)
                    # Kept as it was only when it ran before and is still configured.
                    if error is not None and name not in desired:
                        yield name, None, error
                    else:
                        yield name, state, error
        for name, error in refused.items():
            if name not in shown and query.selects_name(name):
                yield name, None, error

    def _current_entries(self) -> dict[str, Entry]:
        """Every task's entry, in the table's order, made anew where its state changed."""
        self.attach()  # the planning passes count from here on
        supervisor = self._supervisor()
        checked = (self.changes, supervisor, self.legion.loaded)
        self._keep_entries()
        if checked == self._checked:
            return self._entries
        previous = self._entries
        entries: dict[str, Entry] = {}
        for name, state, refused in self._rows():
            signature = self._signature(name, state, refused)
            entry = previous.get(name)
            if entry is None or entry.signature != signature:
                entry = self._entry(name, state, refused, signature)
            entries[name] = entry
        self._entries = entries
        self._position = {name: i for i, name in enumerate(entries)}
        self._checked = checked
        return entries

    def _keep_entries(self) -> None:
        """The entries are used now: kept ENTRIES_KEPT seconds more."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not served by an event loop: kept
        self._used = loop.time()
        if self._dropping is None:
            self._dropping = loop.call_at(self._used + ENTRIES_KEPT, self._drop_entries)

    def _drop_entries(self) -> None:
        loop = asyncio.get_running_loop()
        due = self._used + ENTRIES_KEPT
        if loop.time() < due:
            self._dropping = loop.call_at(due, self._drop_entries)
            return
        self._dropping = None
        self._entries, self._position, self._checked = {}, {}, None
        memory.give_back()

    def _entry(
        self, name: str, state: TaskState | None, refused: str | None, signature: object
    ) -> Entry:
        task = self._task(state) if state is not None else self._refused(name, "")
        if refused is not None:
            _refuse(task, refused, state is not None)
        wanted = is_wanted(task["state"], (p["status"] for p in task["processes"]))
        return make_entry(name, signature, task, wanted)

    def _signature(self, name: str, state: TaskState | None, refused: str | None) -> object:
        """What a task's entry is made from: while it compares equal, the entry stands.
        Everything _task() reads is here (the rolling restart's progress; the instances,
        each with its last exit; the latest history entry; the schedule; captured
        output; the sockets held)."""
        if state is None:
            loaded = self.legion.loaded
            return (refused, loaded.config.tasks.get(name) if loaded is not None else None)
        supervisor = self._supervisor()
        rolling = state.rolling
        history = state.history
        return (
            refused,
            supervisor.planner.desired.tasks.get(name),
            state.waiting,
            state.waiting_for,
            state.generation,
            None if rolling is None else (rolling.done, rolling.total),
            len(history),
            history[-1] if history else None,
            supervisor.schedules.next_run(name),
            supervisor.output.captured(name),
            # Tuples, not lists: kept for every task, and () is shared.
            tuple(supervisor.sockets.describe(name)),
            # Each instance's fields in this same tuple, not a tuple of tuples: as many
            # for each (equal signatures, equal instances), 96 bytes a task less.
            *(
                field
                for i in state.instances.values()
                for field in (
                    i.slot, i.pid, i.phase, i.started_wall, i.last_exit, i.starts, i.failures,
                    i.ready, i.live_failures, i.live_error, i.replaces, i.ran_generation
                )
            ),
        )  # fmt: skip

    def _refused(self, name: str, error: str) -> JSON:
        """The entry of a task that never ran: its new entry was refused (`error`)."""
        loaded = self.legion.loaded
        task = loaded.config.tasks.get(name) if loaded is not None else None
        return {
            "control": str(task.control) if task is not None else None,
            "count": 0,
            "running": 0,
            "state": "invalid",
            "why": error,
            "error": error,
            "restarts": 0,
            "requires": list(task.requires) if task is not None else [],
            "next_run": None,
            "next_run_t": None,
            "output_captured": False,
            "sockets": [],
            "rolling": None,
            "processes": [],
            "history": [],
        }

    def _task(self, state: TaskState) -> JSON:
        spec = self._supervisor().planner.desired.tasks.get(state.name)
        live = spec is not None and spec.live is not None
        processes = [self._process(i, live) for _, i in sorted(state.instances.items())]
        next_run = self._supervisor().schedules.next_run(state.name)
        running = sum(1 for p in processes if p["pid"] is not None)
        return {
            "control": str(spec.control) if spec else None,
            "count": spec.count if spec else 0,
            "running": running,
            "state": self._task_state(state, running, spec is not None),
            "why": _rolling_why(state) or state.waiting_for,
            "error": None,
            "restarts": sum(max(0, i.starts - 1) for i in state.instances.values()),
            "requires": list(spec.requires) if spec else [],
            # When its schedule runs it next (None: no schedule).
            "next_run": iso(next_run),
            "next_run_t": next_run,
            # Whether /logs/TASK has anything to show (the dashboard asks only then).
            "output_captured": self._supervisor().output.captured(state.name),
            # Listening sockets taskforce holds for it, and a rolling restart under way.
            "sockets": self._supervisor().sockets.describe(state.name),
            "rolling": _rolling(state),
            "processes": processes,
            "history": [
                {
                    "t": h.wall,
                    "instance": h.slot,
                    "kind": h.kind,
                    "pid": h.pid,
                    "detail": self._detail(h.kind, h.detail),
                }
                for h in state.history
            ],
        }

    @staticmethod
    def _detail(kind: str, detail: str) -> str:
        if kind == "exit" and detail.lstrip("-").isdigit():
            return describe_status(int(detail))
        return detail

    def _task_state(self, state: TaskState, running: int, in_scope: bool) -> str:
        if not in_scope:
            return "stopping" if running else "removed"
        phases = {i.phase for i in state.instances.values()}
        if Phase.STOPPING in phases:
            return "stopping"
        if state.waiting is Waiting.FAILED:
            return "failed"
        if state.waiting is Waiting.BACKOFF:
            return "backing off"
        if state.waiting is not None:
            return "waiting"
        spec = self._supervisor().planner.desired.tasks[state.name]
        if spec.control in (Control.OFF, Control.SUSPEND):
            return str(spec.control)
        if spec.control in (Control.ONCE, Control.EVENT):
            return (
                "running"
                if running
                else "done"
                if self._supervisor().planner.once_done(state.name)
                else "pending"
            )
        if any(i.pid and not i.ready for i in state.instances.values()):
            return "starting"
        if running == spec.count:
            return "running"
        return "starting" if running else "stopped"

    def _process(self, inst: Instance, live: bool = False) -> JSON:
        last = inst.last_exit
        return {
            "instance": inst.slot,
            "pid": inst.pid,
            "state": str(inst.phase),
            "started": iso(inst.started_wall) if inst.pid else None,
            "started_t": inst.started_wall if inst.pid else None,
            "status": last.status if last and last.error is None else None,
            "exit": (last.error and f"failed to start: {last.error}")
            or describe_status(last.status) + (f" ({last.cause})" if last.cause else "")
            if last
            else None,
            # What the status does not say: "out of memory: ..." after an OOM kill.
            "exit_cause": last.cause if last else None,
            "exited": iso(last.wall) if last else None,
            "exited_t": last.wall if last else None,
            "starts": inst.starts,
            "failures": inst.failures,
            "ready": inst.ready if inst.pid else None,
            # Liveness probes failed in a row, and the last one's error (None: no probe).
            "live_failures": inst.live_failures if live else None,
            "live_error": inst.live_error if live else None,
            # A rolling restart's new process: the instance it is to replace.
            "replaces": inst.replaces,
        }

    def counters(self) -> JSON:
        """taskforce's own counts, for the metrics: reloads applied and refused, files watched."""
        watcher = self.legion.watcher
        return {
            "reloads": self.legion.reloads,
            "reload_errors": self.legion.reload_errors,
            "watches": len(watcher.paths) if watcher else 0,
        }


def _read(targets: list[UsageTarget]) -> list[Reading]:
    """The readings of `targets`, in the worker thread (read_usages looked up at each
    call: the tests slow it down)."""
    return read_usages(targets)


def _usage(reading: Reading) -> JSON:
    """A process's usage keys: its CPU time and memory, and its instance's cgroup's."""
    cpu, rss, group = reading
    return {
        "cpu_seconds": None if cpu is None else round(cpu, 2),
        "rss_bytes": rss,
        # The whole instance, from its cgroup: every process it started.
        "cgroup": None
        if group is None
        else {
            "cpu_seconds": None if group[0] is None else round(group[0], 2),
            "memory_bytes": group[1],
            "processes": group[2],
        },
    }


def _usage_text(reading: Reading) -> bytes:
    """_usage() as the JSON of those keys after a comma, as json.dumps writes them (made
    for each process of the table: a third of what the encoder takes)."""
    cpu, rss, group = reading
    cgroup = (
        "null"
        if group is None
        else f'{{"cpu_seconds":{_seconds(group[0])},"memory_bytes":'
        f'{"null" if group[1] is None else group[1]},"processes":{group[2]}}}'
    )
    return (
        f',"cpu_seconds":{_seconds(cpu)},"rss_bytes":{"null" if rss is None else rss},'
        f'"cgroup":{cgroup}'
    ).encode()


def _seconds(value: float | None) -> str:
    return "null" if value is None else repr(round(value, 2))


def _refuse(task: JSON, error: str, kept: bool) -> None:
    """Mark a task's entry with why its new entry was refused (`kept`: it runs as it was)."""
    task["error"] = error
    task["why"] = f"new entry refused, kept as it was: {error}" if kept else error


def _rolling(state: TaskState) -> JSON | None:
    """A rolling restart's progress: instances replaced so far, of how many, and which
    are being replaced now."""
    rolling = state.rolling
    if rolling is None:
        return None
    replacing = sorted(i.replaces for i in state.instances.values() if i.replaces is not None)
    return {"done": rolling.done, "total": rolling.total, "replacing": replacing}


def _rolling_why(state: TaskState) -> str | None:
    rolling = state.rolling
    return None if rolling is None else f"rolling restart {rolling.done}/{rolling.total}"


def _without_tokens(data: object) -> object:
    """The document with its secrets hidden (the HTTP listeners' tokens, the notification
    targets' credentials): status readers may not hold them."""
    if not isinstance(data, dict) or not isinstance(data.get("settings"), dict):
        return data
    settings = dict(data["settings"])
    listeners = settings.get("http")
    if isinstance(listeners, list | dict):
        hidden = [
            {k: "(hidden)" if k == "token" else v for k, v in item.items()}
            if isinstance(item, dict)
            else item
            for item in (listeners if isinstance(listeners, list) else [listeners])
        ]
        settings["http"] = hidden if isinstance(listeners, list) else hidden[0]
    if "notify" in settings:
        settings["notify"] = without_secrets(settings["notify"])
    return {**data, "settings": settings}


__all__ = ["JSON", "TASK_STATES", "ControlError", "Controller", "iso"]
