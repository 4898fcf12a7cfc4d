"""GET /metrics: the Prometheus text exposition format (version 0.0.4), by its conventions.

Series of a task's processes are labelled `task` and `index` (never `instance`: that is the
scrape target's label); a task's own series `task` alone. The standard `process_*` series
describe taskforce itself. No timer runs for them: a task's lines (series_of) are kept with
its /status/tasks entry and made anew when it changes, and the usage figures are read when
scraped, as the status reads them (in a worker thread, at most a second old: see
api/readings.py).

Written by hand rather than with prometheus_client: importing that (0.26.0) into the daemon
costs 5.2 MB of RSS (22.1 MB after asyncio, PyYAML and h11, 27.4 MB with it) and 130 ms at
start. With this module the daemon runs 100 tasks in 23.7 MB (`bench/profile_taskforce.py
memory`): prometheus_client would take it past the 25 MB budget, and the format is small.
The tests check this output with prometheus_client's own parser.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from taskforce.api.query import TASK_STATES
from taskforce.runtime.manage import ControlError
from taskforce.runtime.processes.spawn import split_status
from taskforce.runtime.processes.usage import own_descriptors, process_usage


class MetricSource(Protocol):
    """What the exposition needs of :class:`taskforce.api.status.Controller`."""

    def version(self) -> dict[str, Any]: ...
    async def series(self) -> Sequence[Row]: ...
    def counters(self) -> dict[str, Any]: ...


# A task's lines in every family: those kept between scrapes as one text with where each
# family's lines end in it (families read at each scrape have none there), and those read
# at each scrape (the state, then the usage families: LIVE_FAMILIES' order). One text a
# task, not one a family, and each family's first line there without the family's name
# (the page puts it back): eight objects a task took 900 bytes, this takes 400.
Row = tuple[bytes, Sequence[int], Sequence[bytes]]


Labels = tuple[tuple[str, str], ...]


@dataclass(slots=True)
class Family:
    name: str
    kind: str  # gauge or counter
    help: str
    samples: list[tuple[Labels, float | int]] = field(default_factory=list)

    def add(self, value: float | int | None, **labels: str) -> None:
        if value is not None:
            self.samples.append((tuple(labels.items()), value))


async def exposition(source: MetricSource) -> list[bytes]:
    """The whole page, in pieces (to be joined, or written out a batch at a time); a
    taskforce that is not running its tasks shows only itself."""
    head = "".join(_render(f) for f in (*_taskforce(source), *_own_process()))
    try:
        rows = await source.series()
    except ControlError:
        rows = []
    out = [head.encode()]
    append = out.append
    for i, header in enumerate(_HEADERS):
        append(header)
        live = _LIVE_AT.get(i)
        if live is not None:
            out.extend(row[2][live] for row in rows)
            continue
        name = _NAMES[i]
        for text, ends, _ in rows:
            start, end = ends[i - 1] if i else 0, ends[i]
            if end > start:
                append(name)
                append(text[start:end])
    return out


def _taskforce(source: MetricSource) -> Iterator[Family]:
    version = source.version()
    build = Family("taskforce_build_info", "gauge", "taskforce's version; always 1.")
    build.add(1, version=str(version.get("taskforce")), python=str(version.get("python")))
    yield build
    counts = source.counters()
    for name, kind, text, key in (
        ("taskforce_reloads_total", "counter", "Configuration reloads applied.", "reloads"),
        ("taskforce_reload_errors_total", "counter", "Configuration reloads refused.",
         "reload_errors"),
        ("taskforce_watches", "gauge", "Paths watched for changes.", "watches"),
    ):  # fmt: skip
        family = Family(name, kind, text)
        family.add(counts.get(key))
        yield family


def _own_process() -> Iterator[Family]:
    """The series every Prometheus client library exports for its own process."""
    used = process_usage("self")
    fds = own_descriptors()
    for name, kind, text, value in (
        ("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
         used.cpu_seconds if used else None),
        ("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
         used.rss_bytes if used else None),
        ("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
         used.virtual_bytes if used else None),
        ("process_start_time_seconds", "gauge",
         "Start time of the process since unix epoch in seconds.",
         used.start_time if used else None),
        ("process_open_fds", "gauge", "Number of open file descriptors.",
         fds.open if fds else None),
        ("process_max_fds", "gauge", "Maximum number of open file descriptors.",
         fds.max if fds else None),
    ):  # fmt: skip
        if value is not None:
            family = Family(name, kind, text)
            family.add(value)
            yield family


# The task families, in the page's order: (name, type, help).
TASK_FAMILIES = (
    ("taskforce_task_state", "gauge", "1 for the task's state, 0 for the others."),
    ("taskforce_task_wanted_processes", "gauge", "Processes the task should have (its count)."),
    ("taskforce_up", "gauge", "1 when the slot has a running process, else 0."),
    ("taskforce_ready", "gauge", "Whether the running process is ready."),
    ("taskforce_consecutive_failures", "gauge", "Runs in a row that ended too soon."),
    ("taskforce_starts_total", "counter", "Processes started in this slot."),
    ("taskforce_restarts_total", "counter", "Restarts in this slot."),
    ("taskforce_last_exit_code", "gauge", "Exit code of the last process that exited."),
    ("taskforce_last_exit_signal", "gauge", "Signal that ended the last process killed by one."),
    ("taskforce_start_time_seconds", "gauge", "Unix time the running process started."),
    ("taskforce_process_cpu_seconds_total", "counter",
     "User and system CPU time of the running process, in seconds."),
    ("taskforce_process_resident_memory_bytes", "gauge",
     "Resident memory of the running process, in bytes."),
    ("taskforce_task_next_run_timestamp_seconds", "gauge",
     "Unix time the task's schedule next runs it (tasks with a schedule only)."),
    ("taskforce_liveness_failures", "gauge",
     "Liveness probes of the running process failed in a row."),
    ("taskforce_socket_held", "gauge",
     "1 for each listening socket taskforce holds for a task (its address as a label)."),
    ("taskforce_rolling_restart", "gauge", "1 while a rolling restart of the task is under way."),
    ("taskforce_rolling_restart_replaced", "gauge",
     "Instances a rolling restart under way has replaced so far."),
    ("taskforce_rolling_restart_instances", "gauge",
     "Instances a rolling restart under way replaces in all."),
    ("taskforce_cgroup_cpu_seconds_total", "counter",
     "CPU time of every process of the instance's cgroup, in seconds."),
    ("taskforce_cgroup_memory_bytes", "gauge",
     "Memory charged to the instance's cgroup (page cache included), in bytes."),
    ("taskforce_cgroup_processes", "gauge", "Processes in the instance's cgroup."),
)  # fmt: skip
(STATE, WANTED, UP, READY, FAILURES, STARTS, RESTARTS, CODE, KILLED, STARTED, CPU, RSS,
 NEXT_RUN, LIVE, HELD, ROLLING, ROLLED, TO_ROLL, GROUP_CPU, GROUP_MEMORY,
 GROUP_PROCESSES) = range(len(TASK_FAMILIES))  # fmt: skip
# The lines of the state family for a task in each known state, its label a NUL.
_STATE_LINES = {
    current: "".join(
        f'taskforce_task_state{{task="\0",state="{name}"}} {int(name == current)}\n'
        for name in TASK_STATES
    ).encode()
    for current in TASK_STATES
}


def series_of(task: str, entry: dict[str, Any], usage: bool = True) -> list[bytes]:
    """The lines of a task in each family (TASK_FAMILIES' order), from its /status/tasks
    entry; without `usage`, none in the usage families (usage_lines() makes those)."""
    label = f'task="{_label(task)}"'
    pieces: list[list[str]] = [[] for _ in TASK_FAMILIES]

    def add(family: int, value: float | int | None, labels: str) -> None:
        if value is not None:
            pieces[family].append(f"{TASK_FAMILIES[family][0]}{{{labels}}} {_number(value)}\n")

    for sock in entry.get("sockets", ()):
        socket, address = _label(sock["name"]), _label(sock["address"])
        add(HELD, 1, f'{label},socket="{socket}",address="{address}"')
    progress = entry.get("rolling")
    add(ROLLING, 0 if progress is None else 1, label)
    if progress is not None:
        add(ROLLED, progress["done"], label)
        add(TO_ROLL, progress["total"], label)
    current = entry.get("state")
    if entry.get("next_run_t") is not None:
        add(NEXT_RUN, entry["next_run_t"], label)
    add(WANTED, entry.get("count"), label)
    for process in entry.get("processes", ()):
        labels = f'{label},index="{_label(str(process["instance"]))}"'
        running = process.get("pid") is not None
        add(UP, 1 if running else 0, labels)
        if running:
            add(READY, 1 if process.get("ready") else 0, labels)
            add(STARTED, process.get("started_t"), labels)
            add(LIVE, process.get("live_failures"), labels)
        if usage:
            group = process.get("cgroup")
            used = (process.get("cpu_seconds"), process.get("rss_bytes"))
            for family, line in zip(
                USAGE_FAMILIES, _usage_lines(labels, running, used, group), strict=True
            ):
                pieces[family].append(line)
        add(FAILURES, process.get("failures"), labels)
        add(STARTS, process.get("starts"), labels)
        add(RESTARTS, max(0, process.get("starts", 0) - 1), labels)
        if process.get("status") is not None:
            exit_code, signal = split_status(process["status"])
            add(CODE, exit_code, labels)
            add(KILLED, signal, labels)
    out = ["".join(lines).encode() for lines in pieces]
    out[STATE] = state_lines(task, current)
    return out


USAGE_FAMILIES = (CPU, RSS, GROUP_CPU, GROUP_MEMORY, GROUP_PROCESSES)
# The families made at each scrape, not kept: a Row's third member, in this order.
LIVE_FAMILIES = (STATE, *USAGE_FAMILIES)
_LIVE_AT = {family: i for i, family in enumerate(LIVE_FAMILIES)}


def pack(lines: Sequence[bytes]) -> tuple[bytes, Sequence[int]]:
    """A task's lines of each family (TASK_FAMILIES' order) as one text, each family's
    without its first name, and where each family's lines end in it."""
    pieces = []
    for name, family in zip(_NAMES, lines, strict=True):
        if family and not family.startswith(name):  # a bug: series_of makes them so
            raise ValueError(f"lines out of their family {name!r}: {family!r}")
        pieces.append(family[len(name) :])
    text = b"".join(pieces)
    ends = array("H" if len(text) <= 0xFFFF else "I")
    at = 0
    for piece in pieces:
        at += len(piece)
        ends.append(at)
    return text, ends


def unpack(row: Row) -> list[bytes]:
    """A row's lines of each family, in TASK_FAMILIES' order."""
    text, ends, live = row
    out = []
    for i, name in enumerate(_NAMES):
        lines = text[ends[i - 1] if i else 0 : ends[i]]
        out.append(name + lines if lines else b"")
    for family, lines in zip(LIVE_FAMILIES, live, strict=True):
        out[family] = lines
    return out


def state_lines(task: str, current: object) -> bytes:
    """A task's lines of the state family: 1 for its state, 0 for each other. Made from one
    text per state, at each scrape: kept, they would be half of every task's lines."""
    label = _label(task)
    template = _STATE_LINES.get(current) if isinstance(current, str) else None
    if template is not None and "\0" not in label:
        return template.replace(b"\0", label.encode())
    return "".join(
        f'taskforce_task_state{{task="{label}",state="{_label(name)}"}} {int(name == current)}\n'
        for name in _states(current)
    ).encode()


def usage_lines(
    task: str, index: int, running: bool, used: tuple[float | None, int | None],
    group: dict[str, Any] | None,
) -> tuple[str, str, str, str, str]:  # fmt: skip
    """A process's lines in the usage families (cpu, rss, then its cgroup's three), from
    its figures as /status/tasks shows them."""
    return _usage_lines(f'task="{_label(task)}",index="{index}"', running, used, group)


def _usage_lines(
    labels: str, running: bool, used: tuple[float | None, int | None],
    group: dict[str, Any] | None,
) -> tuple[str, str, str, str, str]:  # fmt: skip
    cpu, rss = used if running else (None, None)
    values = (cpu, rss, *((group.get("cpu_seconds"), group.get("memory_bytes"),
              group.get("processes")) if group else (None, None, None)))  # fmt: skip
    return tuple(  # type: ignore[return-value]
        "" if value is None else f"{TASK_FAMILIES[family][0]}{{{labels}}} {_number(value)}\n"
        for family, value in zip(USAGE_FAMILIES, values, strict=True)
    )


def series(tasks: dict[str, Any]) -> list[Row]:
    """Every task's lines, from a /status/tasks table with the usage figures."""
    rows: list[Row] = []
    for task, entry in tasks.items():
        lines = series_of(task, entry)
        live = [lines[family] for family in LIVE_FAMILIES]
        for family in LIVE_FAMILIES:
            lines[family] = b""
        rows.append((*pack(lines), live))
    return rows


def _states(current: object) -> Iterable[str]:
    # A state missing from the list still shows (as 1), rather than not at all.
    if isinstance(current, str) and current not in TASK_STATES:
        return (*TASK_STATES, current)
    return TASK_STATES


def _render(family: Family) -> str:
    lines = [f"# HELP {family.name} {_help(family.help)}", f"# TYPE {family.name} {family.kind}"]
    for labels, value in family.samples:
        inside = ",".join(f'{k}="{_label(v)}"' for k, v in labels)
        series = f"{family.name}{{{inside}}}" if labels else family.name
        lines.append(f"{series} {_number(value)}")
    return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float | int) -> str:
    if isinstance(value, bool | int):
        return str(int(value))
    return repr(float(value))


# Each task family's name, as its lines begin.
_NAMES = [name.encode() for name, _, _ in TASK_FAMILIES]
# Each task family's first lines.
_HEADERS = [
    f"# HELP {name} {_help(text)}\n# TYPE {name} {kind}\n".encode()
    for name, kind, text in TASK_FAMILIES
]
