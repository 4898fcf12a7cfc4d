"""The dashboard's fleet view in a real browser, against taskforce hosts sharing a
configuration in a real etcd cluster (tests/fleet's harness).

The view exists only in fleet mode; it shows every host, its roles and its tasks' states,
and follows the hosts' changes as they happen (a role given to another host shows
without a reload). A screenshot goes to tests/browser/out/dashboard-fleet.png.

Needs Chromium (tests/browser/setup.sh) and etcd (tests/fleet/setup.sh); skipped,
saying so, without either.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from browser.cdp import Browser, Page
from fleet.harness import wait_until
from fleet.scenario import Fleet

OUT = Path(__file__).parent / "out"
LISTENING = re.compile(r"HTTP service listening on (http://127\.0\.0\.1:\d+)")


def cell(host: str, task: str, which: str) -> str:
    """A JavaScript expression: the text of a cell of `task`'s row under `host`."""
    selector = f"tbody[data-host={json.dumps(host)}] tr[data-task={json.dumps(task)}] {which}"
    return f"document.querySelector({json.dumps(selector)})?.textContent"


def shown(page: Page, element: str) -> bool:
    return bool(page.evaluate(f"!document.getElementById({json.dumps(element)}).hidden"))


def test_the_fleet_view_shows_every_host_and_follows_changes(
    browser: Browser, fleet: Fleet
) -> None:
    fleet.put_config(
        {
            "common": fleet.task("common"),
            "front": fleet.task("front", roles=["web"]),
            "sched": fleet.task("sched", placement="cluster", roles=["web"]),
        },
        http=[{"listen": "127.0.0.1:0"}],
    )
    fleet.start("h1", "web")
    fleet.start("h2")
    (url,) = wait_until(lambda: LISTENING.findall(fleet.hosts["h1"].read_log()), 20, "h1's HTTP")

    page = browser.new_page()
    page.goto(f"{url}/")
    page.wait_for("!document.getElementById('views').hidden", "the fleet tab")
    assert shown(page, "host-view") and not shown(page, "fleet-view")
    page.click("#tab-fleet")
    page.wait_for(f"{cell('h2', 'common', '.badge')} === 'running'", "h2's common running")
    page.wait_for(f"{cell('h1', 'front', '.badge')} === 'running'", "h1's front running")
    assert not shown(page, "host-view")
    assert page.evaluate("location.hash") == "#fleet"
    roles = "document.querySelector('tbody[data-host=\"{}\"] td.roles').textContent"
    assert page.evaluate(roles.format("h1")) == "web"
    assert page.evaluate(roles.format("h2")) == "(none)"
    assert page.evaluate(cell("h1", "sched", ".cluster")) == "cluster-wide"
    assert page.evaluate(cell("h2", "front", ".badge")) is None
    assert page.evaluate("document.querySelector('tbody.self').dataset.host") == "h1"

    # h2 is given the web role: its front shows up on h1's page, live.
    fleet.put_roles("h2", "web")
    page.wait_for(f"{cell('h2', 'front', '.badge')} === 'running'", "h2's front, live")
    page.wait_for(
        "document.querySelector('tbody[data-host=\"h2\"] td.roles').textContent === 'web'",
        "h2's new role",
    )
    # h2's standby learns who holds the task when the election tells it: wait for that.
    page.wait_for(f"{cell('h2', 'sched', '.why')} === ' — held by h1'", "h2 sees h1 hold sched")

    OUT.mkdir(exist_ok=True)
    page.screenshot(OUT / "dashboard-fleet.png")

    # Back to this host's table; the view comes back as it was from the address.
    page.click("#tab-host")
    page.wait_for("!document.getElementById('host-view').hidden", "this host's table")
    page.wait_for("document.querySelectorAll('tr.task').length === 3", "h1's three tasks")
    page.goto(f"{url}/?again#fleet")  # a new load (the same address would not reload)
    page.wait_for(f"{cell('h2', 'front', '.badge')} === 'running'", "the fleet view again")
    assert page.problems() == []
