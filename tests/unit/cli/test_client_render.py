"""The status table: a pure function of the status JSON and a clock."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest

from taskforce.cli.render import HEADERS, duration, status_table, use_colour

NOW = 1_700_000_000.0
ANSI = re.compile(r"\033\[[0-9;]*m")


def proc(
    instance: int,
    pid: int | None,
    *,
    started: float | None = None,
    exit: str | None = None,
    exited: float | None = None,
) -> dict[str, Any]:
    return {
        "instance": instance,
        "pid": pid,
        "state": "running" if pid else "idle",
        "started": None,
        "started_t": started,
        "status": None,
        "exit": exit,
        "exited": None,
        "exited_t": exited,
        "starts": 1,
        "failures": 0,
    }


def task(
    state: str = "running",
    *,
    control: str = "wait",
    count: int = 1,
    processes: list[dict[str, Any]] | None = None,
    restarts: int = 0,
    why: str | None = None,
) -> dict[str, Any]:
    processes = processes or []
    return {
        "control": control,
        "count": count,
        "running": sum(1 for p in processes if p["pid"]),
        "state": state,
        "why": why,
        "restarts": restarts,
        "requires": [],
        "processes": processes,
        "history": [],
    }


TASKS = {
    "db": task(processes=[proc(0, 4100, started=NOW - 7384)]),
    "app": task(
        count=2,
        restarts=3,
        processes=[
            proc(0, 4200, started=NOW - 3600),
            proc(1, 4201, started=NOW - 5, exit="killed by SIGKILL", exited=NOW - 6),
        ],
    ),
    "setup": task(
        "done", control="once", processes=[proc(0, None, exit="exited 0", exited=NOW - 125)]
    ),
}


def cells(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def test_table_has_a_row_per_task_with_its_facts() -> None:
    lines = status_table(TASKS, NOW).splitlines()
    assert cells(lines[0]) == list(HEADERS)
    assert cells(lines[1]) == ["db", "wait", "running", "1/1", "4100", "2h03m", "0", "-"]
    # Uptime is the youngest process's; the last exit is the most recent one.
    assert cells(lines[2]) == [
        "app",
        "wait",
        "running",
        "2/2",
        "4200,4201",
        "5s",
        "3",
        "killed by SIGKILL, 6s ago",
    ]
    assert cells(lines[3]) == ["setup", "once", "done", "0/1", "-", "-", "0", "exited 0, 2m05s ago"]
    assert len(lines) == 4


def test_plain_table_has_no_escape_codes_and_aligned_columns() -> None:
    text = status_table(TASKS, NOW, colour=False)
    assert "\033" not in text
    lines = text.splitlines()
    column = lines[0].index("STATE")
    assert all(line[column:].startswith(("STATE", "running", "done")) for line in lines)


def test_colour_marks_states_and_keeps_the_alignment() -> None:
    coloured = status_table(TASKS, NOW, colour=True)
    assert "\033[32mrunning\033[0m" in coloured  # green
    assert "\033[1mTASK\033[0m" in coloured  # bold header
    assert "\033[33m3\033[0m" in coloured  # restarts stand out
    assert ANSI.sub("", coloured) == status_table(TASKS, NOW, colour=False)


def test_why_column_only_when_a_task_waits() -> None:
    assert "WHY" not in status_table(TASKS, NOW)
    waiting = {**TASKS, "web": task("waiting", why="waiting for db")}
    lines = status_table(waiting, NOW).splitlines()
    assert cells(lines[0])[-1] == "WHY"
    assert lines[-1].endswith("waiting for db")


def test_a_large_pool_shows_a_few_pids_and_how_many_more() -> None:
    pool = [proc(i, 5000 + i, started=NOW - 60) for i in range(100)]
    line = status_table({"pool": task(count=100, processes=pool)}, NOW).splitlines()[1]
    assert cells(line)[3:5] == ["100/100", "5000,5001,5002,+97"]


def test_no_tasks() -> None:
    assert status_table({}, NOW) == "no tasks\n"


def test_odd_shapes_and_control_characters_do_not_break_the_table() -> None:
    odd = {
        "weird\033[31m": {"processes": "nope", "state": "x\ny", "count": None},
        "empty": {},
        "notadict": [1, 2],
        "future": {**task(), "processes": [{"pid": 1, "started_t": "yesterday"}, "junk"]},
    }
    lines = status_table(odd, NOW).splitlines()
    assert "\033" not in "".join(lines)
    assert cells(lines[1])[:4] == ["weird?[31m", "-", "x y", "0/-"]
    assert cells(lines[2]) == ["empty", "-", "-", "0/-", "-", "-", "-", "-"]
    assert cells(lines[4])[4:6] == ["1", "-"]


def test_a_clock_behind_the_server_shows_no_negative_uptime() -> None:
    line = status_table({"db": task(processes=[proc(0, 1, started=NOW + 30)])}, NOW)
    assert cells(line.splitlines()[1])[5] == "0s"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (59.9, "59s"),
        (60, "1m00s"),
        (307, "5m07s"),
        (3600, "1h00m"),
        (11040, "3h04m"),
        (86400 * 2 + 3600 * 5 + 59, "2d05h"),
        (-3, "0s"),
    ],
)
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_terminal_without_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert use_colour(Tty())
    assert not use_colour(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_colour(Tty())
    monkeypatch.setenv("NO_COLOR", "")  # an empty NO_COLOR does not count (no-color.org)
    assert use_colour(Tty())
    monkeypatch.setenv("TERM", "dumb")
    assert not use_colour(Tty())


def test_a_closed_stream_gets_no_colour() -> None:
    stream = io.StringIO()
    stream.close()
    assert not use_colour(stream)
