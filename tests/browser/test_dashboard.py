"""The dashboard in a real browser (headless Chromium, see cdp.py) against a real taskforce.

taskforce runs as the command, with two loopback listeners: one allowing control (with a
token, as TCP control must have) and one status-only. The page gets the token as
/#token=TOKEN. The tests check that the table shows every task (a name that looks like
markup stays text), that the restart button restarts a task (new pids, seen through
/status/tasks), that details open, that CPU and memory show per task and per process,
that a task's details follow its output (and say that it needs control access where
control is not allowed), that read-only listeners hide the buttons, that no button moves
while another task flaps (its state text and figures changing), and take
screenshots, light and dark, into tests/browser/out/ (git-ignored) for a person to look at.

Chromium comes from Debian's packages (tests/browser/setup.sh installs it); without it
these tests are skipped, saying so.
"""

from __future__ import annotations

import json
import re
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from browser.cdp import Browser, Page
from support.config import write_config
from support.runner import Taskforce
from support.wait import wait_for

OUT = Path(__file__).parent / "out"
TOKEN = "browser-test-token-0123456789"
# Task names are data: this one must show as these characters, not as an element.
MARKUP = "<img_src=x_onerror=alert(1)>"
SLEEP = ["sleep", "1000"]
CRASH = [sys.executable, "-c", "import sys; sys.exit(1)"]
# Prints to stdout and stderr (markup included: it must stay text), then sleeps.
TALK = [
    "sh",
    "-c",
    "echo hello from talker; echo '<b>not markup</b>'; echo trouble >&2; exec sleep 1000",
]
TASKS: dict[str, Any] = {
    "web": {"commands": {"start": SLEEP}, "count": 2},
    "worker": {"commands": {"start": SLEEP}},
    "flaky": {"commands": {"start": CRASH}},
    "reports": {"commands": {"start": SLEEP}, "control": "off"},
    MARKUP: {"commands": {"start": SLEEP}},
    "talker": {
        "commands": {"start": TALK},
        "output": {"stdout": "./talker.out", "stderr": "./talker.err"},
    },
}
LISTENING = re.compile(r"HTTP service listening on (http://127\.0\.0\.1:\d+)")


@pytest.fixture
def service(tmp_path: Path, taskforce: Taskforce) -> tuple[str, str]:
    """A running taskforce: (the URL of its control listener, of its status-only one)."""
    config = write_config(
        tmp_path / "tf.conf",
        TASKS,
        settings={
            "stop_timeout": 1,
            "restart": {"min_uptime": 0.5, "initial_delay": 0.2, "max_delay": 2},
            "http": [
                {"listen": "127.0.0.1:0", "allow_control": True, "token": TOKEN},
                {"listen": "127.0.0.1:0"},
            ],
        },
    )
    taskforce.start("-p", str(tmp_path / "tf.pid"), "-f", str(config))
    wait_for(
        lambda: len(LISTENING.findall(taskforce.log())) == 2 or not taskforce.running(),
        what="the two listeners",
    )
    assert taskforce.running(), taskforce.log()
    control, status_only = LISTENING.findall(taskforce.log())
    wait_for(lambda: everything_started(tasks(control)), what="the tasks to start")
    return control, status_only


def tasks(base: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base}/status/tasks", timeout=10) as reply:
        data: dict[str, Any] = json.load(reply)
    return data


def pids(table: dict[str, Any], name: str) -> list[int]:
    return sorted(p["pid"] for p in table[name]["processes"] if p["pid"] is not None)


def everything_started(table: dict[str, Any]) -> bool:
    return bool(
        table["web"]["running"] == 2
        and table["worker"]["running"] == 1
        and table[MARKUP]["running"] == 1
        and table["talker"]["running"] == 1
        and table["flaky"]["restarts"] >= 1
    )


def open_dashboard(browser: Browser, url: str) -> Page:
    page = browser.new_page()
    page.goto(url)
    page.wait_for(f"document.querySelectorAll('tr.task').length === {len(TASKS)}", "the task rows")
    return page


def row(name: str) -> str:
    return f"tr.task[data-task={json.dumps(name)}]"


def test_the_table_and_the_restart_button(
    browser: Browser, service: tuple[str, str], tmp_path: Path
) -> None:
    control, _ = service
    page = open_dashboard(browser, f"{control}/#token={TOKEN}")

    # The token was taken, and taken out of the address bar.
    assert page.evaluate("location.hash") == ""
    names = page.evaluate("[...document.querySelectorAll('tr.task')].map(r => r.dataset.task)")
    assert names == list(TASKS)
    label = page.evaluate(f"document.querySelector('{row(MARKUP)} .name').textContent")
    assert label == MARKUP
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    page.wait_for(
        f"document.querySelector('{row('web')} .badge').textContent === 'running'", "web running"
    )
    assert (
        page.evaluate(f"document.querySelector('{row('web')} td.processes').textContent") == "2/2"
    )
    assert page.evaluate(f"document.querySelector('{row('reports')} .badge').textContent") == "off"
    page.wait_for("document.getElementById('connection').dataset.state === 'live'", "live")
    assert page.evaluate("document.getElementById('control-note').hidden") is True

    # Restart web from its button; taskforce starts new processes for it.
    before = pids(tasks(control), "web")
    page.click(f"{row('web')} button.act.restart")
    after = wait_for(
        lambda: (
            (now := pids(tasks(control), "web"))
            and len(now) == 2
            and not set(now) & set(before)
            and now
        ),
        what="web to restart with new pids",
    )
    assert after != before
    page.wait_for(
        f"document.querySelector('{row('web')} td.restarts').textContent === '2'",
        "the page to count web's restarts",
    )
    announced = page.wait_for(
        "document.getElementById('announce').textContent.includes('requested')", "the news"
    )
    assert announced
    starts = page.evaluate(f"document.querySelectorAll('{row('web')} .tick.start').length")
    assert starts >= 4  # two processes, started twice each, on the timeline

    # Details: the flapping task's processes and recent exits.
    page.click(f"{row('flaky')} button.expander")
    page.wait_for(
        f"document.querySelector('{row('flaky')}').nextElementSibling.querySelector('ol.exits li')",
        "flaky's recent exits",
    )
    assert (
        page.evaluate(f"document.querySelector('{row('flaky')} .expander').ariaExpanded") == "true"
    )

    OUT.mkdir(exist_ok=True)
    page.screenshot(OUT / "dashboard.png")
    page.dark(True)
    page.screenshot(OUT / "dashboard-dark.png")
    assert page.problems() == []


def test_read_only_pages_have_no_buttons(browser: Browser, service: tuple[str, str]) -> None:
    control, status_only = service

    page = open_dashboard(browser, f"{status_only}/")
    note = page.wait_for(
        "!document.getElementById('control-note').hidden && "
        "document.getElementById('control-note').textContent",
        "the read-only note",
    )
    assert "control is not allowed on this listener" in note
    # /status/access has answered: not in fleet mode, so no fleet view.
    assert page.evaluate("document.getElementById('views').hidden") is True
    visible = "[...document.querySelectorAll('button.act')].filter(b => !b.hidden).length"
    page.wait_for(f"{visible} === 0", "the buttons to go")

    # The control listener, but no token: read-only too, and the page says how to fix it.
    page = open_dashboard(browser, f"{control}/")
    note = page.wait_for(
        "!document.getElementById('control-note').hidden && "
        "document.getElementById('control-note').textContent",
        "the token note",
    )
    assert "#token=TOKEN" in note
    page.wait_for(f"{visible} === 0", "the buttons to go")

    # Task output needs control: the pane says so (and how to get it) instead of showing it.
    page.click(f"{row('talker')} button.expander")
    refused = page.wait_for(
        "document.querySelector('.output-note.needs-control')?.textContent", "the output refusal"
    )
    assert "Needs control access" in refused and "#token=TOKEN" in refused
    assert page.evaluate("document.querySelectorAll('.output .line').length") == 0
    assert page.problems() == []


PERCENT = r"^\d+(\.\d)?%$"


def test_cpu_memory_and_output(browser: Browser, service: tuple[str, str]) -> None:
    control, _ = service
    page = open_dashboard(browser, f"{control}/#token={TOKEN}")

    # Memory: the task's processes summed, as /proc says (sleep's memory stands still).
    rss = sum(p["rss_bytes"] for p in tasks(control)["web"]["processes"])
    page.wait_for(
        f"document.querySelector('{row('web')} td.memory').dataset.bytes === '{rss}'",
        "web's memory",
    )
    assert re.fullmatch(
        r"\d+(\.\d)? MiB",
        page.evaluate(f"document.querySelector('{row('web')} td.memory').textContent"),
    )
    # CPU: a share, once two readings are in.
    page.wait_for(
        f"/{PERCENT}/.test(document.querySelector('{row('web')} td.cpu').textContent)",
        "web's CPU share",
    )

    # The output pane follows the task whose details open: each line as text, stderr marked.
    page.click(f"{row('talker')} button.expander")
    lines = page.wait_for(
        "document.querySelectorAll('.output .line').length >= 3 && "
        "[...document.querySelectorAll('.output .line')].map(l => l.textContent)",
        "talker's output",
    )
    assert any(line.endswith("[0] hello from talker") for line in lines)
    assert any(line.endswith("[0] <b>not markup</b>") for line in lines)
    assert page.evaluate("document.querySelectorAll('.output b').length") == 0
    stderr = page.evaluate(
        "[...document.querySelectorAll('.output .line.stderr')].map(l => l.textContent)"
    )
    assert len(stderr) == 1 and stderr[0].endswith("trouble")
    heading = page.evaluate("document.querySelector('.output-pane h3').textContent")
    assert heading == "Recent output of talker"

    # Per process: CPU and memory in the details' table.
    resident = tasks(control)["talker"]["processes"][0]["rss_bytes"]
    page.wait_for(
        f"document.querySelector('{row('talker')} + tr.details tr[data-instance=\"0\"] td.memory')"
        f"?.dataset.bytes === '{resident}'",
        "talker's process memory",
    )
    OUT.mkdir(exist_ok=True)
    page.evaluate("document.querySelector('.output-pane').scrollIntoView() || true")
    page.screenshot(OUT / "dashboard-output.png")

    # Another task's details take the pane: web's output is not captured, and it says so.
    page.click(f"{row('web')} button.expander")
    note = page.wait_for(
        "document.querySelector('.output-pane h3').textContent === 'Recent output of web' && "
        "document.querySelector('.output-note').textContent",
        "web's output note",
    )
    assert "not captured" in note
    # talker's details, still open, offer to show its output again.
    page.click(f"{row('talker')} + tr.details button.show-output")
    page.wait_for(
        "document.querySelector('.output-pane h3').textContent === 'Recent output of talker' && "
        "document.querySelectorAll('.output .line').length >= 3",
        "talker's output again",
    )
    assert page.problems() == []


# Where each button of the table is, page coordinates, whenever the table changes; and the
# texts flaky's state cell has shown meanwhile.
RECORD_PLACES = """(() => {
    window.places = {};
    window.flakyStates = new Set();
    const record = () => {
        for (const button of document.querySelectorAll('tr.task button')) {
            const r = button.getBoundingClientRect();
            const what = `${button.closest('tr').dataset.task} ${button.className}`;
            const where = `${Math.round(r.left + scrollX)},${Math.round(r.top + scrollY)}`;
            (window.places[what] ||= new Set()).add(where);
        }
        const flaky = document.querySelector('tr.task[data-task="flaky"] td.state');
        window.flakyStates.add(flaky.textContent);
    };
    new MutationObserver(record).observe(document.getElementById('task-rows'),
        {subtree: true, childList: true, characterData: true, attributes: true});
    record();
    return true;
})()"""


def test_the_buttons_stay_put_while_a_task_flaps(
    browser: Browser, service: tuple[str, str]
) -> None:
    # An operator aims at a row's buttons while the table changes: flaky fails and restarts
    # every second or two (its state and its reason come and go, its restarts count up)
    # and the CPU shares come in. Nothing may move under the pointer meanwhile.
    control, _ = service
    page = open_dashboard(browser, f"{control}/#token={TOKEN}")
    page.wait_for(
        f"/{PERCENT}/.test(document.querySelector('{row('web')} td.cpu').textContent)",
        "web's CPU share",
    )
    page.evaluate(RECORD_PLACES)
    page.wait_for("window.flakyStates.size >= 3", "flaky's state to change twice")
    places = page.evaluate(
        "Object.fromEntries(Object.entries(window.places).map(([k, v]) => [k, [...v]]))"
    )
    assert len(places) == len(TASKS) * 4  # the expander and the three actions, every row
    moved = {what: where for what, where in places.items() if len(where) > 1}
    assert moved == {}
    assert page.problems() == []
