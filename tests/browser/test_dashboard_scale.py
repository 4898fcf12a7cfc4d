"""The dashboard with a few thousand tasks, in a real browser against a real taskforce: only
the rows on screen are in the document (a bounded number, whatever the table's length),
scrolling draws the rows that come into view, and the state bar counts every task.

Most tasks are `off` (configured, not run), so that the test starts few processes.
"""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from browser.cdp import Browser
from support.config import write_config
from support.runner import Taskforce
from support.wait import wait_for

OFF = 3000
RUNNING = 2
# Rows the page may hold: a screenful of 800 pixels and the overscan, with room to spare;
# far fewer than the tasks.
MOST_ROWS = 150
LISTENING = re.compile(r"HTTP service listening on (http://127\.0\.0\.1:\d+)")


def summary(base: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base}/status/summary", timeout=10) as reply:
        data: dict[str, Any] = json.load(reply)
    return data


@pytest.fixture
def service(tmp_path: Path, taskforce: Taskforce) -> str:
    tasks: dict[str, Any] = {
        f"web-{i}": {"commands": {"start": ["sleep", "1000"]}} for i in range(RUNNING)
    }
    tasks.update(
        {f"off-{i:04d}": {"commands": {"start": ["sleep", "1000"]}, "control": "off"}
         for i in range(OFF)}
    )  # fmt: skip
    config = write_config(
        tmp_path / "tf.conf",
        tasks,
        settings={"stop_timeout": 1, "http": [{"listen": "127.0.0.1:0"}]},
    )
    taskforce.start("-p", str(tmp_path / "tf.pid"), "-f", str(config))
    wait_for(
        lambda: LISTENING.search(taskforce.log()) or not taskforce.running(),
        what="the listener",
    )
    match = LISTENING.search(taskforce.log())
    assert match is not None, taskforce.log()
    base = match[1]
    wait_for(lambda: summary(base)["states"]["running"] == RUNNING, what="web to run")
    return base


def test_a_long_table_draws_only_the_rows_on_screen(browser: Browser, service: str) -> None:
    page = browser.new_page()
    page.goto(service)
    total = OFF + RUNNING
    page.wait_for(
        f"document.getElementById('state-bar').dataset.total === '{total}'", "the state bar"
    )
    page.wait_for("document.querySelectorAll('tr.task').length > 0", "the first rows")
    chips = page.evaluate(
        "[...document.querySelectorAll('#state-bar .chip')].map(c => c.textContent)"
    )
    assert chips == [f"running {RUNNING}", f"off {OFF}"]
    assert page.evaluate("document.getElementById('summary').textContent").startswith(
        f"{total} tasks, {RUNNING} processes running"
    )
    drawn = page.evaluate("[...document.querySelectorAll('tr.task')].map(r => r.dataset.task)")
    assert drawn[:3] == ["web-0", "web-1", "off-0000"]
    assert len(drawn) <= MOST_ROWS
    # The spacer below stands for the rest: the page is as long as the whole table.
    assert page.evaluate("document.body.scrollHeight") > total * 20

    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    page.wait_for(
        f"document.querySelector('tr.task[data-task=\"off-{OFF - 1:04d}\"]')", "the last row"
    )
    drawn = page.evaluate("[...document.querySelectorAll('tr.task')].map(r => r.dataset.task)")
    assert "web-0" not in drawn and len(drawn) <= MOST_ROWS
    page.evaluate("window.scrollTo(0, document.body.scrollHeight / 2)")
    page.wait_for(
        "document.querySelector('tr.task[data-task=\"off-1500\"]')", "a row from the middle"
    )
    assert page.evaluate("document.querySelectorAll('tr.task').length") <= MOST_ROWS
    assert page.problems() == []
