"""Fleet benchmark: a three-member etcd cluster and ten taskforce hosts on this machine.

    .venv/bin/python bench/fleet_bench.py [--hosts 10] [--rounds 5] [--ttl 3] [--json]

Measures
- propagation: from a configuration put in etcd to the changed task running on every
  host (the task's own record of its start, so the time includes etcd's watch, the
  reload, the stop of the old process and the start of the new one);
- failover: from SIGKILL of the host running a cluster-wide task (with its processes)
  to the task's start on another host (bounded by the lease: TTL, plus a round trip);
- memory: the resident size of a fleet host (gRPC included).

Needs etcd (tests/fleet/setup.sh) and the fleet extra; uses only loopback ports and
stops every process it started, whatever happens.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The harness lives with the fleet tests (bench/harness is the peers' one).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fleet.harness import (
    EtcdCluster,
    Host,
    Markers,
    config_text,
    fleet_hosts,
    task,
    wait_until,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ttl", type=int, default=3, help="the hosts' lease, seconds")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        result = run(Path(tmp), args.hosts, args.rounds, args.ttl)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)
    return 0


def run(base: Path, count: int, rounds: int, ttl: int) -> dict[str, Any]:
    cluster = EtcdCluster(base)
    markers = Markers(base / "markers")
    try:
        cluster.start()
        cluster.wait_healthy(timeout=30)
        url = cluster.url("/bench/config", ttl=ttl)
        tasks = {
            "web": task(markers.directory, "web", "v0"),
            "sched": task(markers.directory, "sched", placement="cluster"),
        }
        cluster.put("/bench/config", config_text(tasks, stop_timeout=1))
        names = [f"host{i:02d}" for i in range(count)]
        hosts = [Host(n, url, None, base) for n in names]
        with fleet_hosts(hosts, markers):
            wait_until(lambda: len(markers.live("web")) == count, 60, "every host to start")
            rss = [_rss(h.pid) for h in hosts]
            propagation = [
                _propagate(cluster, markers, tasks, f"v{i}", count) for i in range(1, rounds + 1)
            ]
            failover = _failovers(markers, hosts, rounds, ttl)
    finally:
        cluster.stop_all()
        markers.kill_all()
    return {
        "hosts": count,
        "ttl": ttl,
        "propagation_s": propagation,
        "failover_s": failover,
        "host_rss_kib": rss,
    }


def _propagate(
    cluster: EtcdCluster, markers: Markers, tasks: dict[str, Any], version: str, count: int
) -> float:
    tasks = {**tasks, "web": task(markers.directory, "web", version)}
    text = config_text(tasks, stop_timeout=1)
    put = time.monotonic()
    cluster.put("/bench/config", text)

    def everywhere() -> list[dict[str, Any]] | None:
        runs = [r for r in markers.runs("web") if r["args"] == version and r["stop"] is None]
        return runs if len({r["host"] for r in runs}) == count else None

    runs = wait_until(everywhere, 60, f"web {version} on every host")
    return max(r["start"] for r in runs) - put


def _failovers(markers: Markers, hosts: list[Host], rounds: int, ttl: int) -> list[float]:
    times = []
    for _ in range(rounds):
        holder = wait_until(lambda: len(markers.live("sched")) == 1 and markers.live("sched"),
                            ttl * 3 + 10, "one sched")  # fmt: skip
        name = next(iter(holder))
        host = next(h for h in hosts if h.name == name)
        killed = time.monotonic()
        host.kill()
        started = wait_until(lambda t=killed: _started_after(markers, t), ttl * 3 + 10,
                             "another host to run sched")  # fmt: skip
        times.append(started - killed)
        host.start()  # back as a standby for the next round
    return times


def _started_after(markers: Markers, moment: float) -> float | None:
    runs = [r for r in markers.runs("sched") if r["start"] > moment]
    return runs[0]["start"] if runs else None


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def report(result: dict[str, Any]) -> None:
    def stats(values: list[float]) -> str:
        return (
            f"median {statistics.median(values) * 1000:.0f} ms, "
            f"min {min(values) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms "
            f"({len(values)} rounds)"
        )

    print(f"fleet of {result['hosts']} hosts, lease {result['ttl']} s, 3 etcd members")
    print(f"config put -> changed task running on every host: {stats(result['propagation_s'])}")
    print(f"failover of a cluster-wide task after SIGKILL of its holder: "
          f"{stats(result['failover_s'])}")  # fmt: skip
    rss = result["host_rss_kib"]
    print(f"resident memory of a fleet host: median {statistics.median(rss) / 1024:.1f} MiB")


if __name__ == "__main__":
    sys.exit(main())
