"""An in-place upgrade (SIGUSR2) of a fleet host: its tasks keep running, untouched, and
so does its leadership (the lease is handed over)."""

from __future__ import annotations

import os
import signal

from fleet.harness import wait_until
from fleet.scenario import Fleet


def test_an_in_place_upgrade_restarts_no_task(fleet: Fleet) -> None:
    tasks = {"common": fleet.task("common"), "sched": fleet.task("sched", placement="cluster")}
    fleet.put_config(tasks)
    host = fleet.start("h1")
    before = fleet.wait_live({"h1": {"common", "sched"}})

    os.kill(host.pid, signal.SIGUSR2)
    wait_until(lambda: "upgrade: took over 2 running process" in host.read_log(), 30,
               "the upgrade")  # fmt: skip
    # The new image applies a change: by then it has compared what it took over with its
    # configuration (the environment of the tasks once differed: all were restarted).
    fleet.put_config({**tasks, "more": fleet.task("more")})
    after = fleet.wait_live({"h1": {"common", "sched", "more"}})
    assert after["h1"]["common"] == before["h1"]["common"]
    assert after["h1"]["sched"] == before["h1"]["sched"]
    assert "configuration changed" not in host.read_log()
    assert "kept across the upgrade" in host.read_log()
