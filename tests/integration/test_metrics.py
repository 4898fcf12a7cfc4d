"""/metrics of a real taskforce, read with prometheus_client's own text parser.

The tasks: two sleepers, one that spends some CPU time and then sleeps, one that exits 3
and one that kills itself with SIGUSR1 (both flapping), one that is off, and one whose name
holds a quote and a backslash (escaped in label values). Every figure is checked against
what the test can see for itself: the processes' /proc entries, the tasks' exits.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from support.config import write_config
from support.runner import Taskforce
from support.wait import wait_for
from taskforce import __version__

parser = pytest.importorskip("prometheus_client.parser")

SLEEP = ["sleep", "1000"]
BURN = 0.3  # CPU seconds the busy task spends before it sleeps
# What /proc shows of it at least: its ticks are sampled, so not to the last hundredth.
SEEN = BURN / 2
QUOTED = 'say"hi"\\there'
TASKS: dict[str, Any] = {
    "web": {"commands": {"start": SLEEP}, "count": 2},
    "busy": {
        "commands": {
            "start": [
                sys.executable, "-c",
                f"import time\nwhile time.process_time() < {BURN}: pass\ntime.sleep(1000)",
            ]
        }
    },
    "exits": {"commands": {"start": ["sh", "-c", "exit 3"]}},
    "killed": {"commands": {"start": ["sh", "-c", "kill -USR1 $$"]}},
    "later": {"commands": {"start": SLEEP}, "control": "off"},
    QUOTED: {"commands": {"start": SLEEP}},
}  # fmt: skip
LISTENING = re.compile(r"HTTP service listening on (http://127\.0\.0\.1:\d+)")
Sample = tuple[str, dict[str, str], float]


def get(url: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return reply.headers["Content-Type"], reply.read()


def scrape(base: str) -> tuple[dict[str, str], list[Sample]]:
    """The families' types, and every sample, as prometheus_client parses the page."""
    content_type, body = get(f"{base}/metrics")
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    types: dict[str, str] = {}
    samples: list[Sample] = []
    for family in parser.text_string_to_metric_families(body.decode()):
        types[family.name] = family.type
        samples += [(s.name, dict(s.labels), s.value) for s in family.samples]
    return types, samples


def values(samples: list[Sample], name: str, **labels: str) -> list[float]:
    return [v for n, lbl, v in samples if n == name and labels.items() <= lbl.items()]


def most(samples: list[Sample], name: str, **labels: str) -> float:
    return max(values(samples, name, **labels), default=-1)


def one(samples: list[Sample], name: str, **labels: str) -> float:
    found = values(samples, name, **labels)
    assert len(found) == 1, (name, labels, found)
    return found[0]


def statm_rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture
def service(tmp_path: Path, taskforce: Taskforce) -> str:
    config = write_config(
        tmp_path / "tf.conf",
        TASKS,
        settings={
            "stop_timeout": 1,
            "restart": {"min_uptime": 0.5, "initial_delay": 0.1, "max_delay": 0.5},
            "http": [{"listen": "127.0.0.1:0"}],
        },
    )
    taskforce.start("-p", str(tmp_path / "tf.pid"), "-f", str(config))
    wait_for(lambda: LISTENING.search(taskforce.log()) or not taskforce.running(), what="HTTP")
    assert taskforce.running(), taskforce.log()
    match = LISTENING.search(taskforce.log())
    assert match is not None
    return match.group(1)


def tasks(base: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(get(f"{base}/status/tasks")[1])
    return data


def test_metrics_follow_the_conventions(service: str, taskforce: Taskforce) -> None:
    began = time.time()
    # Until every task has shown what it is tested for: running, flapping, busy and done.
    types, samples = wait_for(
        lambda: (
            (page := scrape(service))
            and values(page[1], "taskforce_up", task="web") == [1, 1]
            and values(page[1], "taskforce_up", task=QUOTED) == [1]
            and values(page[1], "taskforce_last_exit_code", task="exits") == [3]
            and values(page[1], "taskforce_last_exit_signal", task="killed")
            and most(page[1], "taskforce_consecutive_failures", task="killed") >= 2
            and most(page[1], "taskforce_process_cpu_seconds_total", task="busy") >= SEEN
            and page
        ),
        what="every task to be running, flapping or busy",
    )

    # No `instance` label: it is the scrape target's.
    assert not [s for s in samples if "instance" in s[1]]
    assert one(samples, "taskforce_build_info", version=__version__) == 1

    # taskforce itself, by the standard names.
    for name in (
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_start_time_seconds",
        "process_open_fds",
        "process_max_fds",
    ):
        assert types[name] == "gauge", name
    assert types["process_cpu_seconds"] == "counter"
    assert one(samples, "process_cpu_seconds_total") > 0
    assert one(samples, "process_resident_memory_bytes") > 1 << 20
    assert one(samples, "process_virtual_memory_bytes") > one(
        samples, "process_resident_memory_bytes"
    )
    assert began - 60 < one(samples, "process_start_time_seconds") <= time.time()
    assert 3 <= one(samples, "process_open_fds") < one(samples, "process_max_fds")

    # Exits: the code and the signal are separate series, each only where it applies.
    assert values(samples, "taskforce_last_exit_signal", task="exits") == []
    assert one(samples, "taskforce_last_exit_signal", task="killed") == signal.SIGUSR1
    assert values(samples, "taskforce_last_exit_code", task="killed") == []
    assert one(samples, "taskforce_restarts_total", task="exits") >= 1

    # A task's state is one series per state, 1 for the current one.
    table = tasks(service)
    for task in TASKS:
        states = {lbl["state"]: v for n, lbl, v in samples if n == "taskforce_task_state"
                  and lbl["task"] == task}  # fmt: skip
        assert sum(states.values()) == 1, (task, states)
        assert "running" in states and "backing off" in states
    assert one(samples, "taskforce_task_state", task="later", state="off") == 1
    assert one(samples, "taskforce_task_state", task="web", state="running") == 1
    assert one(samples, "taskforce_task_wanted_processes", task="web") == 2
    assert one(samples, "taskforce_task_wanted_processes", task="later") == table["later"]["count"]

    # Processes are labelled task and index; each running one has its CPU time and memory,
    # read from its own /proc entries.
    assert {lbl["index"] for n, lbl, _ in samples if n == "taskforce_up" and lbl["task"] == "web"}
    for process in table["web"]["processes"]:
        index = str(process["instance"])
        assert one(samples, "taskforce_ready", task="web", index=index) == 1
        assert one(samples, "taskforce_starts_total", task="web", index=index) == 1
        assert one(samples, "taskforce_consecutive_failures", task="web", index=index) == 0
        started = one(samples, "taskforce_start_time_seconds", task="web", index=index)
        assert started == pytest.approx(process["started_t"], abs=0.01)
        rss = one(samples, "taskforce_process_resident_memory_bytes", task="web", index=index)
        assert rss == statm_rss(process["pid"])  # sleep's memory stands still
        assert one(samples, "taskforce_process_cpu_seconds_total", task="web", index=index) >= 0
    assert types["taskforce_process_cpu_seconds"] == "counter"
    assert values(samples, "taskforce_up", task="later") == []  # off: no slot at all
    assert values(samples, "taskforce_process_resident_memory_bytes", task="later") == []

    # A quote and a backslash in a label value survive the escaping.
    assert one(samples, "taskforce_up", task=QUOTED) == 1
    assert one(samples, "taskforce_reloads_total") == 0
    assert one(samples, "taskforce_reload_errors_total") == 0


def test_status_tasks_has_cpu_and_memory_per_process(service: str) -> None:
    table = wait_for(
        lambda: (
            (t := tasks(service))
            and max((p["cpu_seconds"] or 0 for p in t["busy"]["processes"]), default=0) >= SEEN
            and t
        ),
        what="the busy task to spend its CPU time",
    )
    for process in table["web"]["processes"]:
        assert process["rss_bytes"] == statm_rss(process["pid"])
        assert process["cpu_seconds"] >= 0
    later = table["later"]["processes"]
    assert all(p["cpu_seconds"] is None and p["rss_bytes"] is None for p in later)
