"""The dashboard shows a task's held sockets and a rolling restart under way (issue 17).

The task's replacement processes are not ready while a flag file exists: a rolling restart
started then stays under way (0 of 2 replaced) until the test removes the flag.
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

TOKEN = "browser-test-token-rolling-0123456789"
LISTENING = re.compile(r"HTTP service listening on (http://127\.0\.0\.1:\d+)")


def status(base: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base}/status/tasks", timeout=10) as reply:
        data: dict[str, Any] = json.load(reply)
    api: dict[str, Any] = data["api"]
    return api


@pytest.fixture
def service(tmp_path: Path, taskforce: Taskforce) -> tuple[str, Path]:
    flag = tmp_path / "hold"
    api = {
        "commands": {"start": ["sleep", "1000"]},
        "count": 2,
        "sockets": {"http": "127.0.0.1:0"},
        "ready": {"command": ["sh", "-c", f"test ! -e {flag}"], "interval": 0.1},
    }
    config = write_config(
        tmp_path / "tf.conf",
        {"api": api},
        settings={
            "stop_timeout": 1,
            "http": [{"listen": "127.0.0.1:0", "allow_control": True, "token": TOKEN}],
        },
    )
    taskforce.start("-p", str(tmp_path / "tf.pid"), "-f", str(config))
    wait_for(lambda: LISTENING.search(taskforce.log()), what="the listener")
    match = LISTENING.search(taskforce.log())
    assert match is not None
    base = match[1]
    wait_for(lambda: status(base)["state"] == "running", what="api ready")
    return base, flag


def test_held_sockets_and_a_rolling_restart(browser: Browser, service: tuple[str, Path]) -> None:
    base, flag = service
    page = browser.new_page()
    page.goto(f"{base}/#token={TOKEN}")
    row = 'tr.task[data-task="api"]'
    page.wait_for(f"document.querySelector('{row} .badge')?.textContent === 'running'", "api")
    page.click(f"{row} button.expander")
    [held] = status(base)["sockets"]
    text = page.wait_for(
        f"document.querySelector('{row} + tr.details .sockets')?.textContent", "held sockets"
    )
    assert text == f"held sockets: http {held['address']} (fd {held['fd']})"

    flag.touch()  # new processes will not be ready
    request = urllib.request.Request(
        f"{base}/manage/tasks/api/restart",
        method="POST",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=10):
        pass
    why = page.wait_for(
        f"document.querySelector('{row} .why').textContent.includes('rolling') && "
        f"document.querySelector('{row} .why').textContent",
        "the rolling restart in the row",
    )
    assert why == " — rolling restart 0/2"
    details = page.wait_for(
        f"document.querySelector('{row} + tr.details .rolling')?.textContent", "its progress"
    )
    assert details == "rolling restart: 0 of 2 replaced, replacing 0"
    states = page.evaluate(
        f"[...document.querySelectorAll('{row} + tr.details table.procs tbody tr')]"
        ".map(r => r.children[2].textContent)"
    )
    assert "running (replacing 0)" in states

    flag.unlink()  # ready now: the roll completes
    page.wait_for(
        f"!document.querySelector('{row} .why').textContent.includes('rolling')", "the roll done"
    )
    assert status(base)["rolling"] is None
    assert page.problems() == []
