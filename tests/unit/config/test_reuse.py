"""Reloads validate and resolve again only what changed, and give what a fresh load gives."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskforce.config.errors import ConfigError, Problem
from taskforce.config.host import HostFacts, UserInfo
from taskforce.config.model import Config
from taskforce.config.resolve import resolve
from taskforce.config.reuse import ResolveCache
from taskforce.config.roles import Roles
from taskforce.config.shapes import Memo
from taskforce.config.validate import validate_document
from taskforce.config.yaml_source import load_document
from taskforce.core.spec import DesiredState

# Who exists: tests change it to see lookups asked again.
USERS = {"www": UserInfo("www", 33, 34)}


def _user(key: str | int) -> UserInfo | None:
    return USERS.get(str(key))


def _group(key: str | int) -> int | None:
    return 7 if key == "staff" else None


HOST = HostFacts("box", "box.example.com", 4242, 1000, 1001, _user, _group)

BASE: dict[str, Any] = {
    "defines": {"ROOT": "/srv", "LOG": "{ROOT}/log"},
    "role_defines": {"debug": {"LEVEL": "debug"}},
    "defaults": {"LEVEL": "info"},
    "tasks": {
        "web": {"commands": {"start": ["web", "--log={LOG}", "--level={LEVEL}"]}},
        "db": {"commands": {"start": ["db", "{DATA}", "{Task_uid}"]}, "user": "www"},
        "plain": {"commands": {"start": ["plain", 1]}, "count": 2},
        "worker": {"commands": {"start": ["worker", {"debug": "-v"}]}, "roles": "batch"},
    },
}


class Loader:
    """Loads configurations the way the legion does, keeping the memo and cache."""

    def __init__(self) -> None:
        self.memo = Memo()
        self.cache = ResolveCache()

    def load(
        self,
        data: Mapping[str, Any],
        roles: Roles | None = None,
        env: Mapping[str, str] | None = None,
        source: str = "/etc/tf.conf",
    ) -> tuple[Config, DesiredState, tuple[Problem, ...]]:
        config = validate_document(load_document(json.dumps(data), source), self.memo)
        desired, problems = resolve(config, roles, env or {"DATA": "/root"}, HOST, self.cache)
        return config, desired, problems


def fresh(
    data: Mapping[str, Any],
    roles: Roles | None = None,
    env: Mapping[str, str] | None = None,
    source: str = "/etc/tf.conf",
) -> tuple[DesiredState, tuple[Problem, ...]]:
    config = validate_document(load_document(json.dumps(data), source))
    return resolve(config, roles, env or {"DATA": "/root"}, HOST)


def changed(**edits: Any) -> dict[str, Any]:
    """BASE with some top-level keys, or tasks (`task_NAME=...`), replaced."""
    data = copy.deepcopy(BASE)
    for key, value in edits.items():
        if key.startswith("task_"):
            data["tasks"][key.removeprefix("task_")] = value
        else:
            data[key] = value
    return data


@pytest.fixture(autouse=True)
def _users() -> Any:
    saved = dict(USERS)
    yield
    USERS.clear()
    USERS.update(saved)


def test_an_unchanged_task_keeps_its_config_and_spec_objects() -> None:
    loader = Loader()
    config1, desired1, _ = loader.load(BASE)
    new_web = {"commands": {"start": ["web", "--new"]}}
    config2, desired2, problems = loader.load(changed(task_web=new_web))
    assert problems == ()
    for name in ("db", "plain", "worker"):
        assert config2.tasks[name] is config1.tasks[name]
        assert desired2.tasks[name] is desired1.tasks[name]
    assert config2.tasks["web"] is not config1.tasks["web"]
    assert desired2.tasks["web"].instances[0].launch.argv == ("web", "--new")
    assert (desired2, problems) == fresh(changed(task_web=new_web))


@pytest.mark.parametrize(
    "edit",
    [
        {"defines": {"ROOT": "/opt", "LOG": "{ROOT}/log"}},
        {"defaults": {"LEVEL": "warning", "EXTRA": "x"}},
        {"role_defines": {"debug": {"LEVEL": "trace"}}},
        {"role_defaults": {"debug": {"EXTRA": "x"}}},
        {"settings": {"output": {"stdout": "{ROOT}/out.log"}}},
    ],
    ids=["define", "default", "role define", "role default", "settings output"],
)
def test_a_shared_input_change_resolves_every_task_again(edit: dict[str, Any]) -> None:
    roles = Roles(("debug",))
    loader = Loader()
    _, desired1, _ = loader.load(BASE, roles)
    _, desired2, problems = loader.load(changed(**edit), roles)
    assert (desired2, problems) == fresh(changed(**edit), roles)
    assert desired2 != desired1
    for name, spec in desired2.tasks.items():
        assert spec is not desired1.tasks[name]


def test_a_roles_change_resolves_again() -> None:
    loader = Loader()
    _, before, _ = loader.load(BASE, Roles(()))
    assert before.tasks["web"].instances[0].launch.argv[-1] == "--level=info"
    for roles in (Roles(("debug",)), Roles(("debug", "batch")), Roles(("x",), {"x": "1"})):
        _, desired, problems = loader.load(BASE, roles)
        assert (desired, problems) == fresh(BASE, roles)
    _, desired, _ = loader.load(BASE, Roles(("debug",)))
    assert desired.tasks["web"].instances[0].launch.argv[-1] == "--level=debug"


def test_an_environment_change_resolves_again() -> None:
    loader = Loader()
    loader.load(BASE)
    _, desired, problems = loader.load(BASE, env={"DATA": "/home/x"})
    assert desired.tasks["db"].instances[0].launch.argv[1] == "/home/x"
    assert (desired, problems) == fresh(BASE, env={"DATA": "/home/x"})


def test_a_source_change_resolves_again() -> None:
    data = changed(settings={"output": {"stdout": "logs/out.log"}})
    loader = Loader()
    loader.load(data)
    _, desired, problems = loader.load(data, source="/other/tf.conf")
    assert (desired, problems) == fresh(data, source="/other/tf.conf")


def test_user_database_answers_are_asked_again() -> None:
    loader = Loader()
    _, before, _ = loader.load(BASE)
    assert before.tasks["db"].instances[0].launch.argv[2] == "33"
    USERS["www"] = UserInfo("www", 99, 34)
    _, after, _ = loader.load(BASE)
    assert after.tasks["db"].instances[0].launch.argv[2] == "99"
    assert after.tasks["web"] is before.tasks["web"]  # asked nothing: kept


def test_values_equal_to_python_but_not_the_same_are_told_apart() -> None:
    loader = Loader()
    loader.load(BASE)
    as_float = {"commands": {"start": ["plain", 1.0]}, "count": 2}
    _, desired, _ = loader.load(changed(task_plain=as_float))
    assert desired.tasks["plain"].instances[0].launch.argv == ("plain", "1.0")
    as_bool = {"commands": {"start": ["plain", 1]}, "count": True}
    with pytest.raises(ConfigError, match=r"tasks\.plain\.count"):
        loader.load(changed(task_plain=as_bool))


def test_problems_are_reported_on_every_load() -> None:
    bad = {"commands": {"start": ["web"]}, "contol": "off"}
    loader = Loader()
    loader.load(BASE)
    column = json.dumps(changed(task_web=bad)).index('"contol"') + 1
    for _ in range(2):
        with pytest.raises(ConfigError) as caught:
            loader.load(changed(task_web=bad))
        assert [str(p) for p in caught.value.problems] == [
            f"/etc/tf.conf:1:{column}: tasks.web.contol: unknown key 'contol' "
            "(did you mean 'control'?)"
        ]
    _, desired, problems = loader.load(BASE)  # and the good one loads again
    assert (desired, problems) == fresh(BASE)


def test_a_replaced_task_config_is_resolved_again() -> None:
    loader = Loader()
    config, before, _ = loader.load(BASE)
    tasks = dict(config.tasks)
    tasks["web"] = dataclasses.replace(tasks["web"], count=3)
    desired, _ = resolve(
        dataclasses.replace(config, tasks=tasks), None, {"DATA": "/root"}, HOST, loader.cache
    )
    assert desired.tasks["web"].count == 3
    assert desired.tasks["db"] is before.tasks["db"]


def test_a_task_removed_and_added_back_is_resolved_again() -> None:
    loader = Loader()
    _, first, _ = loader.load(BASE)
    without = copy.deepcopy(BASE)
    del without["tasks"]["web"]
    loader.load(without)
    _, again, _ = loader.load(BASE)
    assert again.tasks["web"] == first.tasks["web"]
    assert again.tasks["web"] is not first.tasks["web"]  # nothing is kept for it meanwhile


EDITS = st.sampled_from(
    [
        {},
        {"defines": {"ROOT": "/opt", "LOG": "{ROOT}/log"}},
        {"defines": {"ROOT": "/srv", "LOG": "{ROOT}/log", "LEVEL": "{LOG}"}},
        {"defaults": {"LEVEL": "warning", "DATA": "/nowhere"}},
        {"role_defines": {"debug": {"LEVEL": "trace"}, "batch": {"ROOT": "/b"}}},
        {"task_web": {"commands": {"start": ["web", "{Task_host}"]}, "roles": ["debug"]}},
        {"task_db": {"commands": {"start": ["db", "{Task_gid}"]}, "group": "staff"}},
        {"task_plain": {"commands": {"start": ["plain", True]}}},  # a problem
        {"task_plain": {"commands": {"start": ["plain", "{LOOP}"]}, "defines": {"LOOP": "{LOOP}"}}},
        {"defines": {"A": "{B}", "B": "{A}"}},  # a loop met by every task using A
    ]
)
ROLES = st.sampled_from([None, Roles(()), Roles(("debug",)), Roles(("batch", "debug"))])
ENVS = st.sampled_from([{"DATA": "/root"}, {"DATA": "/home/x", "LEVEL": "env"}])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(EDITS, ROLES, ENVS, st.booleans()), min_size=1, max_size=6))
def test_any_sequence_of_loads_gives_what_fresh_loads_give(
    steps: list[tuple[dict[str, Any], Roles | None, dict[str, str], bool]],
) -> None:
    loader = Loader()
    for edit, roles, env, user_moved in steps:
        USERS["www"] = UserInfo("www", 99 if user_moved else 33, 34)
        data = changed(**edit)
        try:
            expected: object = fresh(data, roles, env)
        except ConfigError as err:
            expected = err.problems
        try:
            _, desired, problems = loader.load(data, roles, env)
            got: object = (desired, problems)
        except ConfigError as err:
            got = err.problems
        assert got == expected
