"""The `output` key: what validation accepts, and what each instance resolves to."""

from __future__ import annotations

import json
from typing import Any

import pytest

from taskforce.config.errors import ConfigError
from taskforce.config.host import HostFacts, UserInfo
from taskforce.config.load import parse_config
from taskforce.config.resolve import resolve
from taskforce.config.schema import config_schema
from taskforce.core.spec import NO_OUTPUT, OutputSpec

jsonschema = pytest.importorskip("jsonschema")
VALIDATOR = jsonschema.Draft202012Validator(config_schema())


def no_user(key: str | int) -> UserInfo | None:
    return None


def no_group(key: str | int) -> int | None:
    return None


HOST = HostFacts("box", "box.example.com", 4242, 1000, 1001, no_user, no_group)


def document(output: Any = None, settings: Any = None, count: int = 1) -> dict[str, Any]:
    task: dict[str, Any] = {"commands": {"start": ["prog"]}, "count": count}
    if output is not None:
        task["output"] = output
    doc: dict[str, Any] = {"tasks": {"web": task}}
    if settings is not None:
        doc["settings"] = {"output": settings}
    return doc


def outputs(doc: dict[str, Any], source: str = "/etc/tf/tf.conf") -> list[OutputSpec]:
    config = parse_config(json.dumps(doc), source)
    desired, problems = resolve(config, None, {"LOGS": "/var/log/app"}, HOST)
    assert problems == ()
    return [instance.output for instance in desired.tasks["web"].instances]


def problems(output: Any) -> list[str]:
    try:
        parse_config(json.dumps(document(output)), "t.conf")
    except ConfigError as exc:
        return [p.message for p in exc.problems]
    return []


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "output",
    [
        {"stdout": None},
        {"stdout": "null", "stderr": "stdout"},
        {"stdout": "stderr"},
        {"stdout": "syslog", "stderr": "/var/log/x.err", "syslog_socket": "/run/log"},
        {"stdout": "{LOGS}/app.log", "stderr": "null"},
        {"stdout": "{LOGFILE}"},  # a substitution must give a path: checked per instance
        {"stdout": "logs/app.log", "max_bytes": "10M", "backups": 0},
        {"stdout": "app.log", "stderr": "./errors"},
        {"stdout": "{Task_name}-{Task_instance}.log"},  # the README's example
        {"max_bytes": 0},
        {"max_bytes": "512k"},
        {"max_bytes": "1GiB"},
        {},
    ],
)
def test_valid_outputs_pass_validation_and_the_schema(output: dict[str, Any]) -> None:
    assert problems(output) == []
    assert VALIDATOR.is_valid(document(output))
    assert VALIDATOR.is_valid(document(settings=output))


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ({"stdout": "sylog"}, "did you mean 'syslog'"),
        ({"stdout": "stdout"}, "expected null, stderr, syslog or a file path"),
        ({"stdout": "applog"}, "'applog' (write ./applog for a file of that name)"),
        ({"stderr": ""}, "got the string ''"),
        ({"stderr": 3}, "got the integer 3"),
        ({"max_bytes": "ten"}, "expected a size in bytes"),
        ({"max_bytes": -1}, "expected a size in bytes"),
        ({"backups": 1001}, "from 0 to 1000"),
        ({"backups": True}, "from 0 to 1000"),
        ({"colour": 1}, "unknown key 'colour'"),
        ("stderr", "expected a map (with stdout"),
    ],
)
def test_invalid_outputs_are_reported(output: Any, message: str) -> None:
    found = problems(output)
    assert any(message in text for text in found), found
    assert not VALIDATOR.is_valid(document(output))


# --- resolution ---------------------------------------------------------------------------


def test_no_output_key_means_dev_null() -> None:
    (spec,) = outputs(document())
    assert spec == NO_OUTPUT
    assert not spec.captured


def test_file_paths_are_substituted_per_instance_and_relative_to_the_config() -> None:
    specs = outputs(document({"stdout": "logs/{Task_name}-{Task_instance}.log"}, count=2))
    assert [s.stdout for s in specs] == ["/etc/tf/logs/web-0.log", "/etc/tf/logs/web-1.log"]
    assert all(s.captured and s.stderr_target == s.stdout for s in specs)


def test_a_relative_path_without_a_slash_is_a_file_beside_the_config() -> None:
    specs = outputs(document({"stdout": "{Task_name}-{Task_instance}.log"}, count=2))
    assert [s.stdout for s in specs] == ["/etc/tf/web-0.log", "/etc/tf/web-1.log"]
    (spec,) = outputs(document({"stdout": "app.log", "stderr": "./errors"}))
    assert (spec.stdout, spec.stderr) == ("/etc/tf/app.log", "/etc/tf/errors")


def test_a_substitution_may_give_the_whole_path() -> None:
    (spec,) = outputs(document({"stdout": "{LOGS}/x/../app.log"}))
    assert spec.stdout == "/var/log/app/app.log"


def test_task_keys_win_over_settings_key_by_key() -> None:
    settings = {"stdout": "syslog", "max_bytes": "1M", "backups": 2, "syslog_socket": "/s"}
    (spec,) = outputs(document({"stdout": "/l/a.log", "backups": 0}, settings))
    assert spec == OutputSpec("/l/a.log", "stdout", 1024 * 1024, 0, "/s")


def test_settings_alone_apply_to_every_task() -> None:
    (spec,) = outputs(document(settings={"stdout": "stderr", "stderr": None}))
    assert (spec.stdout, spec.stderr, spec.stderr_target) == ("stderr", "null", "null")
    assert spec.captured


def test_stderr_alone_can_be_captured() -> None:
    (spec,) = outputs(document({"stderr": "/l/err.log"}))
    assert (spec.stdout, spec.stderr_target, spec.captured) == ("null", "/l/err.log", True)


@pytest.mark.parametrize(
    ("stdout", "message"),
    [
        ("{Task_pid}/x.log", "cannot use {Task_pid}"),
        ("{NOT_DEFINED}", "expands to '{NOT_DEFINED}': {NOT_DEFINED} is not defined"),
        ("{EMPTY}", "expands to an empty string"),
    ],
)
def test_bad_substitutions_leave_the_task_out(stdout: str, message: str) -> None:
    config = parse_config(json.dumps(document({"stdout": stdout})), "/etc/tf/tf.conf")
    desired, found = resolve(config, None, {"EMPTY": ""}, HOST)
    assert "web" not in desired.tasks
    assert [p.path for p in found] == ["tasks.web.output.stdout"]
    assert message in found[0].message


def test_a_substitution_may_give_a_destination_word() -> None:
    doc = document({"stdout": "{WHERE}"})
    doc["defines"] = {"WHERE": "stderr"}
    (spec,) = outputs(doc)
    assert spec.stdout == "stderr"


def test_output_is_not_part_of_the_launch_spec() -> None:
    (before,) = outputs(document({"stdout": "/l/a.log"}))
    config = parse_config(json.dumps(document({"stdout": "/l/b.log"})), "/etc/tf/tf.conf")
    desired, _ = resolve(config, None, {"LOGS": "/var/log/app"}, HOST)
    after = desired.tasks["web"].instances[0]
    assert after.output != before
    first = parse_config(json.dumps(document({"stdout": "/l/a.log"})), "/etc/tf/tf.conf")
    old, _ = resolve(first, None, {"LOGS": "/var/log/app"}, HOST)
    assert old.tasks["web"].instances[0].launch == after.launch
