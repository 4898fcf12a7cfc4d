"""Cluster-wide `once` tasks: run once in the fleet, not again after a failover; again
when the task leaves the configuration and comes back (as on one host); again after a
failover when the run failed."""

from __future__ import annotations

import json
from typing import Any

from fleet.harness import wait_until
from fleet.scenario import TTL, Fleet


def config(fleet: Fleet, exit_code: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "init": fleet.task("init", "--exit", str(exit_code), placement="cluster",
                           control="once"),
        "common": fleet.task("common"),
        **extra,
    }  # fmt: skip


def runs(fleet: Fleet) -> list[dict[str, Any]]:
    return sorted(fleet.markers.runs("init"), key=lambda r: r["start"])


def leader(fleet: Fleet) -> str | None:
    value = fleet.etcd.get(fleet.prefix + "leaders/init")
    return None if value is None else value.decode()


def done_record(fleet: Fleet) -> dict[str, Any] | None:
    value = fleet.etcd.get(fleet.prefix + "done/init")
    return None if value is None else dict(json.loads(value))


def start(fleet: Fleet, exit_code: int = 0) -> str:
    """Three hosts; init has run once, to its end. Its host."""
    fleet.put_config(config(fleet, exit_code))
    for name in ("h1", "h2", "h3"):
        fleet.start(name)
    fleet.wait_live({h: {"common"} for h in ("h1", "h2", "h3")})
    (run,) = wait_until(lambda: [r for r in runs(fleet) if r["stop"]], 20, "init to run")
    return str(run["host"])


def take_over(fleet: Fleet, first: str, exit_code: int = 0) -> str:
    """Kill init's host; wait until another host holds init and has settled."""
    fleet.hosts[first].kill()
    second = wait_until(lambda: leader(fleet) not in (None, first) and leader(fleet),
                        TTL * 3 + 5, "another host to hold init")  # fmt: skip
    # Everything the new holder does on taking over precedes a configuration change it
    # applies afterwards: once `later` runs there, init would have started too.
    fleet.put_config(config(fleet, exit_code, later=fleet.task("later")))
    wait_until(lambda: "later" in fleet.live().get(second, {}), 20, f"{second} to run later")
    return str(second)


def test_a_completed_cluster_once_task_does_not_run_again_after_failover(fleet: Fleet) -> None:
    first = start(fleet)
    record = wait_until(lambda: done_record(fleet), 20, "the run to be recorded")
    assert record["host"] == first

    second = take_over(fleet, first)
    assert [r["host"] for r in runs(fleet)] == [first], "init ran again after the failover"
    status = wait_until(lambda: fleet.status().get(second, {}).get("done"), 20,
                        f"{second}'s status to show init done")  # fmt: skip
    assert status == {"init": first}
    assert fleet.status()[second]["cluster"] == {"init": second}
    assert "done on " + first in fleet.cli().stdout

    # Out of the configuration and back: it runs once more, as it would on one host.
    fleet.put_config({"common": fleet.task("common")})
    wait_until(lambda: done_record(fleet) is None, 20, "the record to be removed")
    alive = [h for h in ("h1", "h2", "h3") if h != first]
    wait_until(lambda: all(fleet.status().get(h, {}).get("cluster") == {} for h in alive), 20,
               "every host to see init gone")  # fmt: skip
    fleet.put_config(config(fleet))
    wait_until(lambda: len([r for r in runs(fleet) if r["stop"]]) == 2, 20, "init to run again")
    wait_until(lambda: done_record(fleet), 20, "the new run to be recorded")
    assert len(runs(fleet)) == 2


def test_a_failed_cluster_once_task_runs_again_after_failover(fleet: Fleet) -> None:
    first = start(fleet, exit_code=3)
    # The failed run is not recorded: the next holder tries again.
    second = take_over(fleet, first, exit_code=3)
    wait_until(lambda: [r["host"] for r in runs(fleet)] == [first, second], 20,
               f"init to run again on {second}")  # fmt: skip
    assert done_record(fleet) is None
