"""The exposition from a fake controller, read back with prometheus_client's parser."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from taskforce.api import metrics
from taskforce.api.metrics import Row, pack, series, series_of, unpack
from taskforce.api.status import TASK_STATES
from taskforce.runtime.manage import ControlError

parser = pytest.importorskip("prometheus_client.parser")

# Task names are checked by the configuration (no whitespace), but label values are
# escaped whatever they hold.
ODD = 'a"b\\c\nd'


class Source:
    def __init__(self, tasks: dict[str, Any] | None) -> None:
        self._tasks = tasks

    def version(self) -> dict[str, Any]:
        return {"taskforce": "9.9", "python": "3.11.0"}

    def tasks(self) -> dict[str, Any]:
        if self._tasks is None:
            raise ControlError(503, "taskforce is not running its tasks")
        return self._tasks

    def counters(self) -> dict[str, Any]:
        return {"reloads": 2, "reload_errors": 1, "watches": 4}

    async def series(self) -> list[Row]:
        return series(self.tasks())


def exposition(source: Source) -> str:
    return b"".join(asyncio.run(metrics.exposition(source))).decode()


def parse(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def process(**fields: Any) -> dict[str, Any]:
    return {"instance": 0, "pid": None, "starts": 0, "failures": 0, "status": None, **fields}


def test_label_values_are_escaped_and_read_back() -> None:
    tasks = {ODD: {"state": "running", "count": 1, "processes": [process(pid=7, starts=1)]}}
    text = exposition(Source(tasks))
    assert 'task="a\\"b\\\\c\\nd"' in text
    series = parse(text)
    assert series["taskforce_up"] == [({"task": ODD, "index": "0"}, 1)]
    assert series["taskforce_build_info"] == [({"version": "9.9", "python": "3.11.0"}, 1)]
    assert series["taskforce_reload_errors_total"] == [({}, 1)]


def test_exit_status_splits_into_code_and_signal() -> None:
    tasks = {
        "ok": {"state": "stopped", "count": 1, "processes": [process(status=0, starts=1)]},
        "two": {"state": "stopped", "count": 1, "processes": [process(status=2 << 8)]},
        "killed": {"state": "stopped", "count": 1, "processes": [process(status=9)]},
        "adopted": {"state": "stopped", "count": 1, "processes": [process(status=-1)]},
    }
    series = parse(exposition(Source(tasks)))
    codes = {labels["task"]: value for labels, value in series["taskforce_last_exit_code"]}
    signals = {labels["task"]: value for labels, value in series["taskforce_last_exit_signal"]}
    assert codes == {"ok": 0, "two": 2}
    assert signals == {"killed": 9}


def test_every_state_has_a_series_and_an_unknown_one_still_shows() -> None:
    tasks = {
        "t": {"state": "running", "count": 1, "processes": []},
        "u": {"state": "something new", "count": 0, "processes": []},
    }
    series = parse(exposition(Source(tasks)))["taskforce_task_state"]
    t = {labels["state"]: value for labels, value in series if labels["task"] == "t"}
    assert t == {state: int(state == "running") for state in TASK_STATES}
    u = {labels["state"]: value for labels, value in series if labels["task"] == "u"}
    assert u["something new"] == 1 and sum(u.values()) == 1


def test_a_taskforce_not_running_its_tasks_still_shows_itself() -> None:
    series = parse(exposition(Source(None)))
    assert "taskforce_build_info" in series and "process_resident_memory_bytes" in series
    assert "taskforce_up" not in series


def test_held_sockets_and_a_rolling_restart() -> None:
    sockets = [{"name": "http", "kind": "tcp", "address": "127.0.0.1:8080", "fd": 9}]
    tasks = {
        "web": {
            "state": "running",
            "count": 3,
            "processes": [],
            "sockets": sockets,
            "rolling": {"done": 1, "total": 3, "replacing": [1]},
        },
        "plain": {"state": "running", "count": 1, "processes": [], "sockets": [], "rolling": None},
    }
    series = parse(exposition(Source(tasks)))
    held = {"task": "web", "socket": "http", "address": "127.0.0.1:8080"}
    assert series["taskforce_socket_held"] == [(held, 1)]
    assert series["taskforce_rolling_restart"] == [({"task": "web"}, 1), ({"task": "plain"}, 0)]
    assert series["taskforce_rolling_restart_replaced"] == [({"task": "web"}, 1)]
    assert series["taskforce_rolling_restart_instances"] == [({"task": "web"}, 3)]


def test_a_tasks_kept_lines_are_one_text_without_each_familys_first_name() -> None:
    entry = {"state": "running", "count": 2, "processes": [process(pid=7), process(instance=1)]}
    lines = series_of("web", entry, usage=False)
    lines[metrics.STATE] = b""
    text, ends = pack(lines)
    assert isinstance(text, bytes) and len(ends) == len(metrics.TASK_FAMILIES)
    up = text[ends[metrics.UP - 1] : ends[metrics.UP]]
    assert up == b'{task="web",index="0"} 1\ntaskforce_up{task="web",index="1"} 0\n'
    live = [b"state\n", b"", b"", b"", b"", b""]
    assert unpack((text, ends, live)) == [
        live[0] if i == metrics.STATE else family for i, family in enumerate(lines)
    ]
