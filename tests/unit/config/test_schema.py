"""The JSON Schema agrees with validation and with the model."""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskforce.config import model
from taskforce.config.errors import ConfigError
from taskforce.config.load import parse_config
from taskforce.config.schema import config_schema, config_schema_json, included_schema
from taskforce.config.yaml_source import load_document
from taskforce.core import vocabulary

jsonschema = pytest.importorskip("jsonschema")

DATA = pathlib.Path(__file__).parent / "data"
REPO = pathlib.Path(__file__).parents[3]
SCHEMA = config_schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def schema_accepts(data: object) -> bool:
    return bool(VALIDATOR.is_valid(data))


def validation_accepts(text: str) -> bool:
    try:
        parse_config(text, "t.conf")
    except ConfigError:
        return False
    return True


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_the_schema_serialises_to_json() -> None:
    assert json.loads(config_schema_json()) == SCHEMA


@pytest.mark.parametrize("path", [DATA / "example.conf", REPO / "examples" / "example.conf"])
def test_example_configurations_match_the_schema(path: pathlib.Path) -> None:
    if not path.exists():
        pytest.skip(f"no {path}")
    document = load_document(path.read_text(), str(path))
    errors = [error.message for error in VALIDATOR.iter_errors(document.data)]
    assert errors == []


VALID_CONFIGS = [
    "{}",
    '{"tasks": {"sshd": {"commands": {"start": ["/usr/sbin/sshd", "-D"]}}}}',
    """
    defaults: {PATH: /bin, N: 2, DEBUG: false, NONE: null}
    role_defines: {web: {PORT: 80}}
    tasks:
      web:
        control: off
        count: "{N}"
        user: 0
        group: www
        roles: web
        requires: [db]
        start_delay: 1.5
        time_limit: 10
        commands: {start: [web, "-l": "{LOG}", {DEBUG: [-d]}], stop: {X: [x]}}
        events:
          - {type: file_change, path: [{CONF: "{CONF}"}, /etc/x], signal: SIGHUP}
          - {type: python, command: stop}
        onexit: {type: start, task: db}
      db: {control: once, commands: {start: [db]}, onexit: [{type: start, task: db}]}
    settings: {restart: {min_uptime: 0, factor: 1}, stop_timeout: 0.5}
    """,
    """
    tasks:
      t:
        commands: {start: [t]}
        cwd: {STAGING: /srv/staging, PROD: [/srv/prod]}
        user: [{WEB: www}, {DB: 70}]
        control: {MANUAL: "off"}
        count: [{N: "{N}"}]
        start_delay: {SLOW: 2}
        placement: []
    """,
    """
    settings:
      stop_timeout: {Task_role_slow: 30}
      restart: {max_delay: [{PROD: 60}]}
      output: {stdout: {LOGS: "{LOGS}/{Task_name}.log"}}
    tasks:
      o: {commands: {start: [o]}, control: {BATCH: once}}
      t:
        commands: {start: [t], reload: [t, -r]}
        requires: [o, {DB: [o]}]
        events: [{type: self, command: {DEV: reload}}, {type: self, signal: [{DEV: HUP}]}]
        ready: {tcp: {PORT: ":{PORT}"}, interval: {SLOW: 2}, timeout: [{SLOW: 9}]}
        output: {stdout: {LOGS: "{LOGS}/t.log"}, max_bytes: {BIG: 10M}, backups: {BIG: 9}}
        onexit: {type: start, task: {BATCH: o}}
    """,
]


@pytest.mark.parametrize("text", VALID_CONFIGS)
def test_valid_configurations_match_the_schema(text: str) -> None:
    assert validation_accepts(text)
    assert schema_accepts(load_document(text, "t.conf").data)


def with_task(**keys: object) -> dict[str, Any]:
    return {"tasks": {"t": {"commands": {"start": ["x"]}, **keys}}}


INVALID_FOR_BOTH = [
    {"task": {}},
    {"tasks": {"a b": {"commands": {"start": ["x"]}}}},
    {"tasks": {"t": {}}},
    {"tasks": {"t": {"commands": {"stop": ["x"]}}}},
    {"tasks": {"t": {"commands": {"start": []}}}},
    {"tasks": {"t": {"commands": {"start": "x"}}}},
    {"tasks": {"t": {"commands": {"start": ["x", True]}}}},
    with_task(control="wiat"),
    with_task(count=-1),
    with_task(count=True),
    with_task(start_delay=-1),
    with_task(time_limit=0),
    with_task(roles=["a b"]),
    with_task(events=[{"type": "self"}]),
    with_task(events=[{"type": "file_change", "signal": 1}]),
    with_task(events=[{"type": "self", "path": "/x", "signal": 1}]),
    with_task(events=[{"type": "self", "signal": 1, "command": "stop"}]),
    {"defines": {"A=B": "x"}},
    {"defines": {"A": ["x"]}},
    {"settings": {"restart": {"factor": 0.5}}},
    {"settings": {"stop_timeout": 0}},
    {"settings": {"colour": 1}},
]


@pytest.mark.parametrize("data", INVALID_FOR_BOTH)
def test_invalid_configurations_fail_the_schema_too(data: dict[str, Any]) -> None:
    assert not validation_accepts(json.dumps(data))
    assert not schema_accepts(data)


# --- the schema, the description and the model stay in lockstep ------------------------------


def properties(schema: dict[str, Any], *path: str) -> dict[str, Any]:
    for key in path:
        schema = schema["properties"][key]
        schema = schema.get("additionalProperties", schema) if key == "tasks" else schema
    result: dict[str, Any] = schema["properties"]
    return result


def field_names(cls: type, *leave_out: str) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)} - set(leave_out)


def event_schema() -> dict[str, Any]:
    events = properties(SCHEMA, "tasks")["events"]
    result: dict[str, Any] = events["items"]
    return result


def test_schema_keys_are_the_model_fields() -> None:
    assert set(properties(SCHEMA)) == field_names(model.Config, "source", "env")
    assert set(properties(SCHEMA, "tasks")) == field_names(model.TaskConfig, "name", "env", "scope")
    assert set(properties(SCHEMA, "settings")) == field_names(model.Settings)
    assert set(properties(SCHEMA, "settings", "restart")) == field_names(vocabulary.RestartPolicy)
    assert set(event_schema()["properties"]) == field_names(model.EventConfig)


def test_enums_come_from_the_model() -> None:
    # A key that takes one value: the value itself, else a conditional list or map.
    control = properties(SCHEMA, "tasks")["control"]["anyOf"][0]
    assert control["enum"] == [c.value for c in vocabulary.Control]
    assert event_schema()["properties"]["type"]["enum"] == [t.value for t in vocabulary.EventType]


def described_properties(schema: object) -> Iterator[tuple[str, bool]]:
    """Every named property in the schema, and whether it has a description."""
    if isinstance(schema, dict):
        for name, sub in schema.get("properties", {}).items():
            yield name, bool(sub.get("description"))
        for key, sub in schema.items():
            if key != "if":  # a rule's condition, not a key of the file
                yield from described_properties(sub)
    elif isinstance(schema, list):
        for sub in schema:
            yield from described_properties(sub)


def test_every_key_is_described() -> None:
    undescribed = [name for name, described in described_properties(SCHEMA) if not described]
    assert undescribed == []
    assert SCHEMA["description"]


# --- what validation accepts, the schema accepts ---------------------------------------------
# Configurations that are valid, but in as many of the accepted spellings as possible: a
# schema stricter than validation would reject some of them.

# YAML holds no raw control characters, so none are generated.
SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 5),
    st.floats(allow_nan=False),
    st.text(st.characters(exclude_categories=["Cc", "Cs"]), max_size=3),
)
CONTEXT = st.dictionaries(st.sampled_from(["A", "PATH", "x-y", "é"]), SCALAR, max_size=3)
ROLE_CONTEXT = st.dictionaries(st.sampled_from(["web", "db"]), CONTEXT, max_size=2)
WORD = st.one_of(
    st.sampled_from(["p", "-v", "{A}", ""]),
    st.integers(-5, 5),
    st.floats(allow_nan=False, allow_infinity=False),
)
CONDITIONAL = st.recursive(
    WORD,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["A", "B"]), inner, max_size=2)
    ),
    max_leaves=6,
)
ARGV = st.one_of(
    st.lists(CONDITIONAL, min_size=1, max_size=4),
    st.dictionaries(st.sampled_from(["A", "B"]), CONDITIONAL, max_size=2),
)
COMMANDS = st.fixed_dictionaries(
    {"start": ARGV}, optional={"stop": ARGV, "reload": ARGV, "x.y": ARGV}
)
ACTION = st.one_of(
    st.fixed_dictionaries({"command": st.sampled_from(["start", "stop"])}),
    st.fixed_dictionaries(
        {"signal": st.sampled_from(["HUP", "SIGTERM", "kill", "usr1", 1, "15", 64])}
    ),
)
EVENT = st.one_of(
    st.builds(lambda kind, action: {"type": kind, **action},
              st.sampled_from(["self", "python", "restart"]), ACTION),
    st.builds(lambda path, action: {"type": "file_change", "path": path, **action},
              CONDITIONAL, ACTION),
)  # fmt: skip
ONEXIT = st.just({"type": "start", "task": "setup"})
NAME_OR_ID = st.one_of(st.sampled_from(["www", "0", "root"]), st.integers(0, 70000))
SECONDS = st.one_of(st.integers(0, 100), st.floats(0, 1e6))


def task(requirable: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"commands": COMMANDS},
        optional={
            "control": st.sampled_from(["wait", "off", "suspend", "event"]),
            "count": st.one_of(st.integers(0, 9), st.sampled_from(["3", "02", "{N}", "x{N}"])),
            "cwd": st.sampled_from(["/", "{HOME}/x", " "]),
            "pidfile": st.sampled_from(["/run/{Task_name}.pid"]),
            "procname": st.sampled_from(["{Task_name}-{Task_instance}"]),
            "user": NAME_OR_ID,
            "group": NAME_OR_ID,
            "no_new_privs": st.booleans(),
            "defines": CONTEXT,
            "defaults": CONTEXT,
            "role_defines": ROLE_CONTEXT,
            "role_defaults": ROLE_CONTEXT,
            "events": st.lists(EVENT, max_size=3),
            "onexit": st.one_of(ONEXIT, st.lists(ONEXIT, max_size=2)),
            "requires": st.one_of(
                st.sampled_from(requirable), st.lists(st.sampled_from(requirable), max_size=2)
            ),
            "roles": st.one_of(
                st.sampled_from(["web", "db"]), st.lists(st.sampled_from(["web", "db"]))
            ),
            "start_delay": SECONDS,
            "time_limit": st.one_of(st.integers(1, 100), st.floats(0.001, 1e6)),
        },
    )


TASKS = st.fixed_dictionaries(
    {
        "a": task(["b", "setup"]),
        "b": task(["setup"]),
        "setup": st.just({"control": "once", "commands": {"start": ["setup"]}}),
    }
)
SETTINGS = st.fixed_dictionaries(
    {},
    optional={
        "stop_timeout": st.floats(0.001, 100),
        "restart": st.fixed_dictionaries(
            {},
            optional={
                "min_uptime": SECONDS,
                "initial_delay": SECONDS,
                "factor": st.one_of(st.integers(1, 4), st.floats(1, 4)),
                "max_delay": SECONDS,
            },
        ),
    },
)
CONFIG = st.fixed_dictionaries(
    {"tasks": TASKS},
    optional={
        "defines": CONTEXT,
        "defaults": CONTEXT,
        "role_defines": ROLE_CONTEXT,
        "role_defaults": ROLE_CONTEXT,
        "settings": SETTINGS,
    },
)


@settings(max_examples=300, deadline=None)
@given(CONFIG)
def test_what_validation_accepts_the_schema_accepts(data: dict[str, Any]) -> None:
    text = json.dumps(data, ensure_ascii=False)
    assert validation_accepts(text), text
    assert schema_accepts(data), list(VALIDATOR.iter_errors(data))


def test_the_composed_example_matches_the_schemas_of_main_and_included_files() -> None:
    compose = REPO / "examples" / "compose"
    included = jsonschema.Draft202012Validator(included_schema())
    jsonschema.Draft202012Validator.check_schema(included.schema)
    main = load_document((compose / "taskforce.conf").read_text(), "taskforce.conf").data
    assert [error.message for error in VALIDATOR.iter_errors(main)] == []
    for path in sorted((compose / "conf.d").glob("*.conf")):
        data = load_document(path.read_text(), str(path)).data
        assert [error.message for error in included.iter_errors(data)] == []
    # Settings belong to the main file: the included file's schema refuses them.
    assert not included.is_valid({"settings": {}, "tasks": {}})
    assert included.is_valid({"env_file": ["-a.env", {"path": "b.env", "optional": True}]})
    assert not schema_accepts({"include": [""]})
