"""`limits`, `umask`, `nice`, `oom_score_adj` and `memory_restart`: checked, in the JSON
Schema, and resolved into the launch of each instance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from taskforce.config.errors import ConfigError
from taskforce.config.host import HostFacts, UserInfo
from taskforce.config.load import parse_config
from taskforce.config.resolve import resolve
from taskforce.config.schema import config_schema
from taskforce.core.spec import NO_CGROUP_LIMITS, NO_LIMITS, UNLIMITED, CgroupLimits, TaskSpec

jsonschema = pytest.importorskip("jsonschema")
VALIDATOR = jsonschema.Draft202012Validator(config_schema())
REPO = Path(__file__).resolve().parents[3]


def _none(key: str | int) -> UserInfo | None:
    return None


def _no_group(key: str | int) -> int | None:
    return None


HOST = HostFacts("box", "box.example.com", 4242, 1000, 1001, _none, _no_group)


def task_doc(**keys: Any) -> dict[str, Any]:
    return {"tasks": {"t": {"commands": {"start": ["prog"]}, **keys}}}


def resolved(text: str) -> dict[str, TaskSpec]:
    desired, problems = resolve(parse_config(text, "t.yaml"), None, {}, HOST)
    assert problems == ()
    return dict(desired.tasks)


def messages(doc: dict[str, Any]) -> list[str]:
    try:
        parse_config(json.dumps(doc), "t.conf")
    except ConfigError as exc:
        return [p.message for p in exc.problems]
    return []


def test_the_readme_example_resolves_into_each_instance_launch() -> None:
    readme = (REPO / "README.md").read_text()
    example = readme.split("### Limits and cgroups", 1)[1].split("```yaml\n", 1)[1]
    text = example.split("```", 1)[0]
    assert VALIDATOR.is_valid(parse_yaml(text))
    api = resolved(text)["api"]
    for instance in api.instances:
        limits = instance.launch.limits
        assert dict((n, (s, h)) for n, s, h in limits.rlimits) == {
            "core": (0, 0),
            "nofile": (4096, 65536),
            "nproc": (512, 512),
            "stack": (8 << 20, 8 << 20),
        }
        assert (limits.umask, limits.nice, limits.oom_score_adj) == (0o027, 5, 500)
        assert instance.launch.cgroup == CgroupLimits(memory=512 << 20, cpu=1.5, pids=100)
    assert api.memory_restart == 400 << 20


def parse_yaml(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def test_no_keys_no_limits() -> None:
    (spec,) = resolved("tasks: {t: {commands: {start: [prog]}}}").values()
    assert spec.instances[0].launch.limits is NO_LIMITS
    assert spec.instances[0].launch.cgroup is NO_CGROUP_LIMITS
    assert spec.memory_restart is None


@pytest.mark.parametrize(
    "keys",
    [
        {"limits": {"nofile": "unlimited", "as": ["1G", "infinity"], "cpu_time": 60}},
        {"limits": {"memlock": "64k", "pids": 1}},
        {"umask": "077", "nice": -20, "oom_score_adj": -1000},
        {"memory_restart": 1 << 30},
    ],
)
def test_valid_keys_pass_the_checks_and_the_schema(keys: dict[str, Any]) -> None:
    assert messages(task_doc(**keys)) == []
    assert VALIDATOR.is_valid(task_doc(**keys))


def test_unlimited_is_kept_as_such() -> None:
    (spec,) = resolved(
        "tasks: {t: {commands: {start: [prog]}, limits: {core: unlimited}}}"
    ).values()
    assert spec.instances[0].launch.limits.rlimits == (("core", UNLIMITED, UNLIMITED),)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"limits": {"nofile": [10, 5]}}, "the soft limit 10 is above the hard 5"),
        ({"limits": {"nofile": ["unlimited", 5]}}, "the soft limit unlimited is above"),
        ({"limits": {"nofile": "4k"}}, "expected a limit (4096 or unlimited)"),
        ({"limits": {"stack": "lots"}}, "expected a limit (64M, 1G or unlimited)"),
        ({"limits": {"nofile": [1, 2, 3]}}, "expected [soft, hard], got a list of 3"),
        ({"limits": {"cpu_tim": 3}}, "did you mean 'cpu_time'"),
        ({"limits": {"cpu": 0}}, "must be greater than 0"),
        ({"limits": {"pids": 0}}, "from 1 to"),
        ({"umask": 22}, "quote it"),
        ({"umask": "0999"}, "expected an octal umask"),
        ({"nice": 20}, "from -20 to 19"),
        ({"oom_score_adj": 1001}, "from -1000 to 1000"),
        ({"memory_restart": "lots"}, "expected a size in bytes"),
    ],
)
def test_bad_values_are_reported_where_they_are(keys: dict[str, Any], message: str) -> None:
    found = messages(task_doc(**keys))
    assert any(message in m for m in found), found
