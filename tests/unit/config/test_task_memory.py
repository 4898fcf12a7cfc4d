"""Memory a task costs: what every task of a configuration has alike is one object, not a
copy per task (10,000 tasks multiply each byte)."""

from __future__ import annotations

import json

from taskforce.config.validate import validate_document
from taskforce.config.yaml_source import load_document


def test_tasks_without_defaults_or_sockets_share_one_empty_mapping() -> None:
    tasks = {f"t{i}": {"commands": {"start": ["sleep", "1"]}} for i in range(3)}
    config = validate_document(load_document(json.dumps({"tasks": tasks}), "t.conf"))
    first, *others = config.tasks.values()
    empties = [first.defaults, first.defines, first.role_defaults, first.role_defines]
    empties += [first.sockets, first.env]
    assert all(len(mapping) == 0 for mapping in empties)
    assert len({id(mapping) for mapping in empties}) == 1
    for task in others:
        assert task.defaults is first.defaults and task.sockets is first.sockets
    assert first.defaults == {}  # compares as the empty dict it stands for


def test_tasks_running_one_program_share_its_name() -> None:
    program = "/opt/" + "worker" * 3  # not a constant of this module: built at run time
    tasks = {
        f"t{i}": {"commands": {"start": [program, f"--n={i}"], "stop": [program]}} for i in range(3)
    }
    tasks["other"] = {"commands": {"start": ["/bin/other", "x"]}}
    text = json.dumps({"tasks": tasks})
    config = validate_document(load_document(text, "t.conf"))
    starts = [task.commands["start"] for task in config.tasks.values()]
    assert starts == [[program, f"--n={i}"] for i in range(3)] + [["/bin/other", "x"]]
    programs = [start[0] for start in starts if isinstance(start, list)]
    stop = config.tasks["t1"].commands["stop"]
    assert isinstance(stop, list)
    assert programs[0] is programs[1] is programs[2] is stop[0]
