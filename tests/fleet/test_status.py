"""Fleet status: a host's key lives with its lease."""

from __future__ import annotations

from fleet.harness import wait_until
from fleet.scenario import TTL, Fleet


def test_a_killed_host_leaves_the_fleet_status_after_its_lease(fleet: Fleet) -> None:
    fleet.put_config({"common": fleet.task("common")})
    fleet.start("h1")
    fleet.start("h2")
    fleet.wait_live({"h1": {"common"}, "h2": {"common"}})
    wait_until(lambda: set(fleet.status()) == {"h1", "h2"}, 10, "both hosts in the status")

    fleet.hosts["h1"].kill()
    # It goes when its lease expires; how soon is for bench/, not asserted here.
    wait_until(lambda: set(fleet.status()) == {"h2"}, TTL + 30, "h1 to leave the status")
    table = fleet.cli()
    assert table.returncode == 0
    assert {line.split()[0] for line in table.stdout.splitlines()[1:]} == {"h2"}


def test_a_stopped_host_leaves_at_once(fleet: Fleet) -> None:
    fleet.put_config({"common": fleet.task("common")})
    fleet.start("h1")
    fleet.wait_live({"h1": {"common"}})
    wait_until(lambda: "h1" in fleet.status(), 10, "h1 in the status")
    fleet.hosts["h1"].stop()
    # Revoked on the way out: no waiting for the lease.
    assert fleet.status() == {}


def test_fleet_status_without_etcd_says_so(fleet: Fleet) -> None:
    from fleet.harness import free_ports

    fleet.etcd.put(fleet.prefix + "x", "x")  # the fixture's cluster is up; use another
    nowhere = f"etcd://127.0.0.1:{free_ports(1)[0]}/nothing/config"
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "taskforce.cli.fleet", "status", "--etcd", nowhere],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 4
    assert "unreachable" in result.stderr
