"""GET /metrics: the Prometheus text exposition format (version 0.0.4), by its conventions.

Series of a task's processes are labelled `task` and `index` (never `instance`: that is the
scrape target's label); a task's own series `task` alone. The standard `process_*` series
describe taskforce itself. Everything is read when scraped, /proc included: nothing is
kept between scrapes and no timer runs for them.

Written by hand rather than with prometheus_client: importing that (0.26.0) into the daemon
costs 5.2 MB of RSS (22.1 MB after asyncio, PyYAML and h11, 27.4 MB with it) and 130 ms at
start. With this module the daemon runs 100 tasks in 23.7 MB (`bench/profile_taskforce.py
memory`): prometheus_client would take it past the 25 MB budget, and the format is small.
The tests check this output with prometheus_client's own parser.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from taskforce.api.status import TASK_STATES
from taskforce.runtime.manage import ControlError
from taskforce.runtime.processes.spawn import split_status
from taskforce.runtime.processes.usage import own_descriptors, process_usage


class MetricSource(Protocol):
    """What the exposition needs of :class:`taskforce.api.status.Controller`."""

    def version(self) -> dict[str, Any]: ...
    def tasks(self, *, usage: bool = False) -> dict[str, Any]: ...
    def counters(self) -> dict[str, Any]: ...


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


def exposition(source: MetricSource) -> str:
    """The whole page; a taskforce that is not running its tasks shows only itself."""
    families = [*_taskforce(source), *_own_process()]
    try:
        tasks = source.tasks(usage=True)
    except ControlError:
        tasks = {}
    families += _tasks(tasks)
    return "".join(_render(f) for f in families)


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


def _tasks(tasks: dict[str, Any]) -> list[Family]:
    state = Family("taskforce_task_state", "gauge", "1 for the task's state, 0 for the others.")
    wanted = Family(
        "taskforce_task_wanted_processes", "gauge", "Processes the task should have (its count)."
    )
    up = Family("taskforce_up", "gauge", "1 when the slot has a running process, else 0.")
    ready = Family("taskforce_ready", "gauge", "Whether the running process is ready.")
    failures = Family(
        "taskforce_consecutive_failures", "gauge", "Runs in a row that ended too soon."
    )
    starts = Family("taskforce_starts_total", "counter", "Processes started in this slot.")
    restarts = Family("taskforce_restarts_total", "counter", "Restarts in this slot.")
    code = Family("taskforce_last_exit_code", "gauge", "Exit code of the last process that exited.")
    killed = Family(
        "taskforce_last_exit_signal", "gauge", "Signal that ended the last process killed by one."
    )
    started = Family(
        "taskforce_start_time_seconds", "gauge", "Unix time the running process started."
    )
    cpu = Family(
        "taskforce_process_cpu_seconds_total", "counter",
        "User and system CPU time of the running process, in seconds.",
    )  # fmt: skip
    rss = Family(
        "taskforce_process_resident_memory_bytes", "gauge",
        "Resident memory of the running process, in bytes.",
    )  # fmt: skip
    next_run = Family(
        "taskforce_task_next_run_timestamp_seconds", "gauge",
        "Unix time the task's schedule next runs it (tasks with a schedule only).",
    )  # fmt: skip
    live_failures = Family(
        "taskforce_liveness_failures",
        "gauge",
        "Liveness probes of the running process failed in a row.",
    )
    held = Family(
        "taskforce_socket_held", "gauge",
        "1 for each listening socket taskforce holds for a task (its address as a label).",
    )  # fmt: skip
    rolling = Family(
        "taskforce_rolling_restart", "gauge", "1 while a rolling restart of the task is under way."
    )
    rolled = Family(
        "taskforce_rolling_restart_replaced", "gauge",
        "Instances a rolling restart under way has replaced so far.",
    )  # fmt: skip
    to_roll = Family(
        "taskforce_rolling_restart_instances", "gauge",
        "Instances a rolling restart under way replaces in all.",
    )  # fmt: skip
    group_cpu = Family(
        "taskforce_cgroup_cpu_seconds_total", "counter",
        "CPU time of every process of the instance's cgroup, in seconds.",
    )  # fmt: skip
    group_memory = Family(
        "taskforce_cgroup_memory_bytes", "gauge",
        "Memory charged to the instance's cgroup (page cache included), in bytes.",
    )  # fmt: skip
    group_processes = Family(
        "taskforce_cgroup_processes", "gauge", "Processes in the instance's cgroup."
    )
    for task, entry in tasks.items():
        for sock in entry.get("sockets", ()):
            held.add(1, task=task, socket=sock["name"], address=sock["address"])
        progress = entry.get("rolling")
        rolling.add(0 if progress is None else 1, task=task)
        if progress is not None:
            rolled.add(progress["done"], task=task)
            to_roll.add(progress["total"], task=task)
        current = entry.get("state")
        if entry.get("next_run_t") is not None:
            next_run.add(entry["next_run_t"], task=task)
        for name in _states(current):
            state.add(1 if name == current else 0, task=task, state=name)
        wanted.add(entry.get("count"), task=task)
        for process in entry.get("processes", ()):
            index = str(process["instance"])
            running = process.get("pid") is not None
            up.add(1 if running else 0, task=task, index=index)
            if running:
                ready.add(1 if process.get("ready") else 0, task=task, index=index)
                started.add(process.get("started_t"), task=task, index=index)
                cpu.add(process.get("cpu_seconds"), task=task, index=index)
                rss.add(process.get("rss_bytes"), task=task, index=index)
                live_failures.add(process.get("live_failures"), task=task, index=index)
            group = process.get("cgroup")
            if group:
                group_cpu.add(group.get("cpu_seconds"), task=task, index=index)
                group_memory.add(group.get("memory_bytes"), task=task, index=index)
                group_processes.add(group.get("processes"), task=task, index=index)
            failures.add(process.get("failures"), task=task, index=index)
            starts.add(process.get("starts"), task=task, index=index)
            restarts.add(max(0, process.get("starts", 0) - 1), task=task, index=index)
            if process.get("status") is not None:
                exit_code, signal = split_status(process["status"])
                code.add(exit_code, task=task, index=index)
                killed.add(signal, task=task, index=index)
    return [
        *(state, wanted, up, ready, failures, starts, restarts, code, killed, started, cpu, rss),
        *(next_run, live_failures, held, rolling, rolled, to_roll),
        *(group_cpu, group_memory, group_processes),
    ]


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
