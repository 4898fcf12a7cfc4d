"""What the Controller adds for the API: overrides of several tasks at once, change events."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from taskforce.api.status import Controller
from taskforce.core.state import Waiting
from taskforce.runtime.legion import Legion
from taskforce.runtime.loop.supervisor import Supervisor
from taskforce.runtime.manage import ControlError


@pytest.fixture
def legion(tmp_path: Path) -> Legion:
    config = tmp_path / "taskforce.conf"
    tasks = {name: {"commands": {"start": ["sleep", "100"]}} for name in ("web", "db")}
    config.write_text(json.dumps({"tasks": tasks}))
    legion = Legion(str(config), environ={"PATH": "/usr/bin:/bin"})
    legion.loaded = legion.load()  # loaded, but not serving: no supervisor, no processes
    return legion


@pytest.mark.parametrize(
    ("key", "values", "status", "message"),
    [
        ("control", {"web": "off", "nope": "off"}, 404, "no task named 'nope'"),
        ("control", {"web": "off", "db": "of"}, 400, "'of' is not a control"),
        ("count", {"web": "2", "db": "10001"}, 400, "count must be between 0 and 10000"),
        ("count", {"web": "2", "db": "-1"}, 400, "count must be a whole number"),
        ("count", {"web": "\u0663"}, 400, "count must be a whole number in ASCII digits"),
        ("count", {"web": "x"}, 400, "count must be a whole number"),
        ("count", {}, 400, "name at least one task"),
        ("user", {"web": "root"}, 400, "cannot be overridden"),
    ],
)
def test_overrides_are_checked_before_anything_changes(
    legion: Legion, key: str, values: dict[str, str | int], status: int, message: str
) -> None:
    with pytest.raises(ControlError) as caught:
        Controller(legion).set_overrides(key, values)
    assert caught.value.status == status and message in caught.value.message
    assert legion.overrides == {}


def test_overrides_that_cannot_apply_are_rolled_back(legion: Legion) -> None:
    legion.overrides["web"] = {"count": 3}
    with pytest.raises(ControlError) as caught:  # no supervisor: the reload cannot happen
        Controller(legion).set_overrides("control", {"web": "off", "db": "off"})
    assert caught.value.status == 409
    assert legion.overrides == {"web": {"count": 3}}


def test_subscribers_hear_of_every_planning_pass(legion: Legion) -> None:
    assert legion.loaded is not None
    supervisor = Supervisor(legion.loaded.desired)
    heard: list[str] = []
    supervisor.on_change = lambda: heard.append("legion")
    legion._supervisor = supervisor  # as serve() sets it up
    controller = Controller(legion)

    async def scenario() -> None:
        event = controller.subscribe()
        assert not event.is_set()
        assert supervisor.on_change is not None
        supervisor.on_change()
        assert event.is_set() and heard == ["legion"] and controller.changes == 1
        event.clear()
        controller.subscribe()  # hooked once, not twice
        supervisor.on_change()
        assert heard == ["legion", "legion"] and controller.changes == 2
        controller.unsubscribe(event)
        event.clear()
        supervisor.on_change()
        assert not event.is_set()

    asyncio.run(scenario())


def test_status_config_hides_the_listeners_tokens(tmp_path: Path) -> None:
    config = tmp_path / "taskforce.conf"
    http = [
        {"listen": "127.0.0.1:8080", "allow_control": True, "token": "s3cret"},
        {"listen": "/run/tf.sock", "token_file": "/etc/tf.token"},
    ]
    config.write_text(json.dumps({"tasks": {}, "settings": {"http": http}}))
    legion = Legion(str(config))
    legion.loaded = legion.load()
    shown = Controller(legion).config()["settings"]["http"]
    assert shown == [
        {"listen": "127.0.0.1:8080", "allow_control": True, "token": "(hidden)"},
        {"listen": "/run/tf.sock", "token_file": "/etc/tf.token"},
    ]
    assert "s3cret" not in json.dumps(Controller(legion).config())
    config.write_text(json.dumps({"settings": {"http": {"listen": "/x/y", "token": "s3cret"}}}))
    legion.loaded = legion.load()
    assert Controller(legion).config()["settings"]["http"]["token"] == "(hidden)"


def test_task_state_comes_from_the_planner_state_not_its_words(legion: Legion) -> None:
    assert legion.loaded is not None
    supervisor = Supervisor(legion.loaded.desired)
    legion._supervisor = supervisor  # as serve() sets it up
    planner = supervisor.planner
    planner.plan(0.0)  # asks for both starts; none is reported: a fake clock, no processes
    planner.started("web", 0, 100, 0.0, 0.0)
    planner.exited(100, 256, 0.1, 0.1)  # too soon: a failure, backing off
    planner.plan(0.1)
    web = planner.tasks["web"]
    assert web.waiting is Waiting.BACKOFF
    web.waiting_for = "resting"  # the words are for people; the state decides
    assert Controller(legion).tasks()["web"]["state"] == "backing off"
    web.waiting, web.waiting_for = Waiting.REQUIRES, "backing off, says the text"
    assert Controller(legion).tasks()["web"]["state"] == "waiting"


def test_status_config_shows_the_composed_document_and_where_tasks_are(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "web.conf").write_text("tasks:\n  web: {commands: {start: [w]}}\n")
    config = tmp_path / "taskforce.conf"
    config.write_text(
        json.dumps({"include": "conf.d/*.conf", "tasks": {"t": {"commands": {"start": ["t"]}}}})
    )
    legion = Legion(str(config))
    legion.loaded = legion.load()
    document = Controller(legion).config()
    assert isinstance(document, dict)
    assert set(document["tasks"]) == {"t", "web"}
    assert document["sources"] == {
        "files": [str(config), str(tmp_path / "conf.d" / "web.conf")],
        "tasks": {"t": f"{config}:1:40", "web": f"{tmp_path / 'conf.d' / 'web.conf'}:2:3"},
    }


def test_status_config_is_the_document_and_status_reload_the_facts(tmp_path: Path) -> None:
    config = tmp_path / "taskforce.conf"
    document = {"defines": {"PW": "x"}, "tasks": {"t": {"commands": {"start": ["t"]}}}}
    config.write_text(json.dumps(document))
    legion = Legion(str(config))
    legion.loaded = legion.load()
    controller = Controller(legion)
    assert controller.config() == document
    assert controller.reload_status() == {
        "file": str(config),
        "roles_file": None,
        "roles": None,
        "reload_error": None,
        "overrides": {},
    }
