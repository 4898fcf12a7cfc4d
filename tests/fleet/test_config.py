"""The configuration in etcd: it reaches every host, each runs its roles' tasks, changes
touch only what changed, and a bad configuration is rejected everywhere."""

from __future__ import annotations

import json
from pathlib import Path

from fleet.harness import config_text, wait_until
from fleet.scenario import Fleet


def three_hosts(fleet: Fleet) -> dict[str, set[str]]:
    fleet.put_config(
        {
            "web": fleet.task("web", roles="web"),
            "app": fleet.task("app", roles="app"),
            "common": fleet.task("common"),
        }
    )
    fleet.start("h1", "web")
    fleet.start("h2", "app")
    fleet.start("h3", "web", "app")
    return {"h1": {"web", "common"}, "h2": {"app", "common"}, "h3": {"web", "app", "common"}}


def test_configuration_reaches_every_host_which_runs_its_roles_tasks(fleet: Fleet) -> None:
    expected = three_hosts(fleet)
    fleet.wait_live(expected)

    def published() -> bool:
        status = fleet.status()
        return set(status) == set(expected) and all(
            {t for t, s in status[h]["tasks"].items() if s["state"] == "running"} == expected[h]
            for h in expected
        )

    wait_until(published, 10, "every host's status in etcd")
    status = fleet.status()
    assert status["h3"]["roles"] == ["app", "web"] or set(status["h3"]["roles"]) == {"web", "app"}

    table = fleet.cli()
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["HOST", "ROLES", "TASK", "STATE"]
    rows = {(line.split()[0], line.split()[2]) for line in lines[1:]}
    assert rows == {(h, t) for h, tasks in expected.items() for t in tasks}
    raw = fleet.cli("--json")
    assert raw.returncode == 0, raw.stderr
    assert set(json.loads(raw.stdout)) == set(expected)


def test_a_change_touches_only_the_changed_tasks_on_each_host(fleet: Fleet) -> None:
    expected = three_hosts(fleet)
    before = fleet.wait_live(expected)
    fleet.put_config(
        {
            "web": fleet.task("web", roles="web"),
            "app": fleet.task("app", "v2", roles="app"),  # restarted where it runs
            "common": fleet.task("common"),
            "extra": fleet.task("extra", roles="web"),  # started where in scope
        }
    )
    expected = {h: t | {"extra"} if "web" in t else t for h, t in expected.items()}

    def changed() -> bool:
        live = fleet.live()
        if any(set(live.get(h, {})) != tasks for h, tasks in expected.items()):
            return False
        return all(live[h]["app"] != before[h]["app"] for h in ("h2", "h3"))

    wait_until(changed, 20, "the change on every host")
    after = fleet.live()
    for host, tasks in before.items():
        for task in ("web", "common"):
            if task in tasks:
                assert after[host][task] == tasks[task], f"{task} on {host} was touched"
    # Nothing stopped but the old app processes.
    stopped = {(r["host"], r["task"]) for r in fleet.markers.runs() if r["stop"] is not None}
    assert stopped == {("h2", "app"), ("h3", "app")}


def test_a_bad_configuration_is_rejected_everywhere(fleet: Fleet) -> None:
    expected = three_hosts(fleet)
    before = fleet.wait_live(expected)
    fleet.etcd.put(fleet.prefix + "config", '{"tasks": {"web": {"commands": {"start": 7}}')

    def rejected() -> bool:
        status = fleet.status()
        return set(status) == set(expected) and all(s["reload_error"] for s in status.values())

    wait_until(rejected, 10, "every host to report the rejected configuration")
    assert fleet.live() == before
    table = fleet.cli()
    assert "rejected" in table.stdout
    # A good configuration after it is applied (and clears the error).
    fleet.put_config({"web": fleet.task("web", roles="web"), "common": fleet.task("common")})
    fleet.wait_live({"h1": {"web", "common"}, "h2": {"common"}, "h3": {"web", "common"}})
    wait_until(
        lambda: not any(s["reload_error"] for s in fleet.status().values()),
        10,
        "the error to clear",
    )


def test_a_host_follows_its_roles_key(fleet: Fleet) -> None:
    fleet.put_config({"web": fleet.task("web", roles="web"), "app": fleet.task("app", roles="app")})
    fleet.start("h1", "web")
    first = fleet.wait_live({"h1": {"web"}})
    fleet.put_roles("h1", "web", "app")
    second = fleet.wait_live({"h1": {"web", "app"}})
    assert second["h1"]["web"] == first["h1"]["web"]


def test_fleet_push_checks_the_configuration_first(fleet: Fleet, tmp_path: Path) -> None:
    fleet.put_config({"common": fleet.task("common")})
    fleet.start("h1")
    before = fleet.wait_live({"h1": {"common"}})
    bad = tmp_path / "bad.conf"
    bad.write_text('{"tasks": {"common": {"comands": {"start": ["x"]}}}}')
    refused = fleet.push(bad)
    assert refused.returncode == 1 and "commands" in refused.stderr
    good = tmp_path / "good.conf"
    good.write_text(config_text({"common": fleet.task("common"), "more": fleet.task("more")}))
    assert fleet.push(good).returncode == 0
    after = fleet.wait_live({"h1": {"common", "more"}})
    assert after["h1"]["common"] == before["h1"]["common"]
