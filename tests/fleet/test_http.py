"""The fleet over HTTP: /status/fleet (every host, its roles, its tasks' states, as the
hosts publish them in etcd) and /events/fleet (the same, sent again at each change)."""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Generator
from typing import Any

from fleet.harness import wait_until
from fleet.scenario import Fleet

LISTENING = re.compile(r"HTTP service listening on http://127\.0\.0\.1:(\d+)")
HTTP = [{"listen": "127.0.0.1:0"}]


def start(fleet: Fleet) -> int:
    """h1 (role web) and h2 (no role); the port of h1's HTTP service."""
    fleet.put_config(
        {
            "common": fleet.task("common"),
            "front": fleet.task("front", roles=["web"]),
            "sched": fleet.task("sched", placement="cluster", roles=["web"]),
        },
        http=HTTP,
    )
    fleet.start("h1", "web")
    fleet.start("h2")
    port = wait_until(lambda: LISTENING.findall(fleet.hosts["h1"].read_log()), 20, "h1's HTTP")
    return int(port[0])


def get(port: int, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=20) as reply:
            return reply.status, json.load(reply)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def tasks_of(document: dict[str, Any], host: str) -> dict[str, str]:
    status = document["hosts"].get(host, {})
    return {name: task["state"] for name, task in (status.get("tasks") or {}).items()}


def events(port: int, path: str, deadline: float) -> Generator[dict[str, Any]]:
    """The data of each event of a stream, until the deadline (then AssertionError)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=deadline)
    try:
        connection.request("GET", path)
        reply = connection.getresponse()
        assert reply.status == 200
        assert reply.getheader("content-type", "").startswith("text/event-stream")
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            line = reply.readline()
            if not line:
                break
            if line.startswith(b"data: "):
                yield json.loads(line[len(b"data: ") :])
        raise AssertionError(f"the stream {path} ended or went quiet")
    finally:
        connection.close()


def test_status_fleet_shows_every_host_with_its_roles_and_tasks(fleet: Fleet) -> None:
    port = start(fleet)

    def both() -> dict[str, Any] | None:
        status, document = get(port, "/status/fleet")
        assert status == 200, document
        ready = tasks_of(document, "h1").keys() == {"common", "front", "sched"} and tasks_of(
            document, "h2"
        ).keys() == {"common"}
        return document if ready else None

    document = wait_until(both, 30, "both hosts and their tasks in /status/fleet")
    assert document["fleet"] is True and document["host"] == "h1"
    assert document["current"] is True and document["error"] is None
    h1, h2 = document["hosts"]["h1"], document["hosts"]["h2"]
    assert (h1["roles"], h2["roles"]) == (["web"], [])
    wait_until(lambda: set(tasks_of(get(port, "/status/fleet")[1], "h1").values()) == {"running"},
               20, "h1's tasks running")  # fmt: skip
    assert h1["cluster"] == {"sched": "h1"} and h2["cluster"] == {}
    # The same as `taskforce fleet status --json` reads.
    cli = json.loads(fleet.cli("--json").stdout)
    assert set(cli) == set(document["hosts"]) == {"h1", "h2"}
    assert get(port, "/status/access")[1]["fleet"] is True


def test_events_fleet_follows_changes_on_other_hosts(fleet: Fleet) -> None:
    port = start(fleet)
    stream = events(port, "/events/fleet", 60)
    try:
        for document in stream:  # at once, then as the hosts publish
            if tasks_of(document, "h2").get("common") == "running":
                break
        assert "front" not in tasks_of(document, "h2")

        # h2 takes the web role: it starts front, publishes that, and h1's stream says so.
        fleet.put_roles("h2", "web")
        for document in stream:
            if tasks_of(document, "h2").get("front") == "running":
                break
        assert document["hosts"]["h2"]["roles"] == ["web"]

        # A host that leaves the fleet leaves the stream.
        fleet.hosts["h2"].stop()
        for document in stream:
            if "h2" not in document["hosts"]:
                break
        assert set(document["hosts"]) == {"h1"}
    finally:
        stream.close()
