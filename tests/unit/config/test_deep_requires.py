"""Long `requires` chains: validation, resolving and planning walk them without recursion."""

from __future__ import annotations

import json
import sys

import pytest

from taskforce.config.errors import ConfigError
from taskforce.config.host import HostFacts
from taskforce.config.load import parse_config
from taskforce.config.resolve import resolve
from taskforce.config.validate import MAX_CYCLES
from taskforce.core.actions import Start
from taskforce.core.planner import Planner

HOST = HostFacts("box", "box.example.com", 4242, 1000, 1000, lambda _: None, lambda _: None)
# Far deeper than Python's recursion limit, which is what a recursive walk ran into.
DEEP = 100_000


def chain(length: int, *, closed: bool = False) -> str:
    """t0 -> t1 -> ... (each requires the next, so that a walk from the first goes all the
    way down); `closed`: the last requires t0."""
    tasks: dict[str, object] = {}
    for i in range(length):
        task: dict[str, object] = {"commands": {"start": ["true"]}}
        if i < length - 1:
            task["requires"] = f"t{i + 1}"
        elif closed:
            task["requires"] = "t0"
        tasks[f"t{i}"] = task
    return json.dumps({"tasks": tasks})


def test_a_chain_of_100_000_tasks_validates() -> None:
    assert sys.getrecursionlimit() * 10 < DEEP
    config = parse_config(chain(DEEP), "deep.conf")
    assert config.tasks[f"t{DEEP - 2}"].requires == (f"t{DEEP - 1}",)


def test_a_chain_deeper_than_the_recursion_limit_resolves_and_plans() -> None:
    length = 5 * sys.getrecursionlimit()
    config = parse_config(chain(length), "deep.conf")
    desired, problems = resolve(config, None, {"PATH": "/usr/bin:/bin"}, HOST)
    assert problems == ()
    actions = Planner(desired).plan(0.0).actions
    assert [a.task for a in actions if isinstance(a, Start)] == [f"t{length - 1}"]


def test_a_long_cycle_is_reported_once_by_its_ends() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(chain(5_000, closed=True), "loop.conf")
    (problem,) = caught.value.problems
    assert problem.path == "tasks.t0.requires"
    assert problem.message == (
        "requires cycle: t0 -> t1 -> t2 -> t3 -> t4 -> t5 -> ... (4989 more) "
        "-> t4995 -> t4996 -> t4997 -> t4998 -> t4999 -> t0"
    )


def test_cycles_through_one_task_are_reported_up_to_a_limit() -> None:
    # Each task also requires t0: every one closes a cycle of its own.
    config = json.loads(chain(2_000))
    for name, task in config["tasks"].items():
        if name != "t0":
            task["requires"] = [task.get("requires"), "t0"] if "requires" in task else "t0"
    with pytest.raises(ConfigError) as caught:
        parse_config(json.dumps(config), "loops.conf")
    found = caught.value.problems
    assert len(found) == MAX_CYCLES
    assert all(p.message.startswith("requires cycle: t0 -> t1 -> ") for p in found)
