"""The policy keys (`schedule`, `live`, `restart` of a task and its max_failures and window)
as the README writes them, resolved into the specs the planner runs on, and refused with
where and what when they cannot be used."""

from __future__ import annotations

import json
import pathlib

import pytest

from taskforce.config.errors import ConfigError
from taskforce.config.host import HostFacts
from taskforce.config.load import parse_config
from taskforce.config.resolve import resolve
from taskforce.core.spec import DesiredState, LiveSpec, ScheduleSpec, restart_policy
from taskforce.core.vocabulary import Overlap, RestartPolicy

README = (pathlib.Path(__file__).parents[3] / "README.md").read_text()
HOST = HostFacts("box", "box.example.com", 4242, 1000, 1001, lambda key: None, lambda key: None)


def example(after: str) -> str:
    """The first YAML block of the README after `after`, unindented."""
    block = README.split(after, 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    indent = min(len(line) - len(line.lstrip()) for line in block.splitlines() if line.strip())
    return "\n".join(line[indent:] for line in block.splitlines())


def resolved(text: str) -> DesiredState:
    desired, problems = resolve(parse_config(text), None, {}, HOST)
    assert problems == ()
    return desired


def test_the_readme_schedules_example() -> None:
    tasks = resolved(example("### Schedules")).tasks
    assert tasks["backup"].schedule == ScheduleSpec(cron="30 2 * * *", timezone="Europe/Paris")
    assert tasks["sync"].schedule == ScheduleSpec(
        interval=300.0, run_on_start=True, overlap=Overlap.QUEUE
    )


def test_the_readme_giving_up_example() -> None:
    desired = resolved(example("#### Giving up"))
    assert desired.policy.restart == RestartPolicy(max_failures=10, window=300.0)
    flaky = restart_policy(desired.policy, desired.tasks["flaky"])
    assert (flaky.max_failures, flaky.window) == (3, 300.0)


def test_the_readme_liveness_example() -> None:
    live = resolved(example("- `live:` on a `wait` task")).tasks["api"].live
    assert live == LiveSpec("http", "http://127.0.0.1:8080/healthz", 15.0, 3.0, 3, None)


def test_a_live_command_is_expanded_for_each_instance() -> None:
    task = {
        "commands": {"start": ["srv"]},
        "count": 2,
        "live": {"command": ["check", "{Task_instance}"]},
    }
    spec = resolved(json.dumps({"tasks": {"srv": task}})).tasks["srv"]
    assert [i.live_command for i in spec.instances] == [("check", "0"), ("check", "1")]
    assert spec.live == LiveSpec("command")


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ({"live": {"tcp": ":80", "failures": 0}}, "tasks.t.live.failures: expected a whole"),
        ({"live": {"interval": 1}}, "tasks.t.live: needs one of 'command' or 'tcp' or 'http'"),
        ({"restart": {"max_failures": 0}}, "tasks.t.restart.max_failures"),
        ({"restart": {"window": -1}}, "tasks.t.restart.window: must be greater than 0"),
    ],
)
def test_bad_policy_keys_are_refused_with_where_and_what(
    task: dict[str, object], message: str
) -> None:
    document = {"tasks": {"t": {"commands": {"start": ["prog"]}, **task}}}
    with pytest.raises(ConfigError) as err:
        parse_config(json.dumps(document))
    assert message in "\n".join(str(p) for p in err.value.problems)


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ({"schedule": {"interval": 5}}, "a schedule runs a once or event task"),
        ({"control": "once", "live": {"tcp": ":80"}}, "a liveness probe watches a wait task"),
    ],
)
def test_keys_for_another_control_leave_the_task_out_with_why(
    task: dict[str, object], message: str
) -> None:
    document = {
        "tasks": {
            "t": {"commands": {"start": ["prog"]}, **task},
            "u": {"commands": {"start": ["prog"]}},
        }
    }
    desired, problems = resolve(parse_config(json.dumps(document)), None, {}, HOST)
    assert list(desired.tasks) == ["u"]
    assert message in problems[0].message
