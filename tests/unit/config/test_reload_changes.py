"""A reload resolves only the tasks of the files that changed, and gives what a fresh
load of the same files gives; the desired state it makes names every task that differs."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from taskforce.config.errors import ConfigError
from taskforce.config.host import HostFacts, UserInfo
from taskforce.config.pipeline import Loaded, Pipeline
from taskforce.config.roles import Roles
from taskforce.core.spec import DesiredState, differing

USERS = {"www": UserInfo("www", 33, 34)}
HOST = HostFacts(
    "box", "box.example.com", 4242, 1000, 1001, lambda key: USERS.get(str(key)), lambda key: None
)
ENV = {"HOME": "/root"}
NAMES = [f"t{i}" for i in range(8)]
FILES = ["main", "a", "b", "c"]

# What a task entry may be: plain, linked to another task, out of scope for some roles,
# with a user looked up, unresolvable (a substitution loop), run once.
VARIANTS: list[Callable[[str], dict[str, Any]]] = [
    lambda other: {"commands": {"start": ["/bin/true", "1"]}},
    lambda other: {"commands": {"start": ["/bin/true", "2"]}},
    lambda other: {"commands": {"start": ["/bin/true"]}, "requires": other},
    lambda other: {"commands": {"start": ["/bin/true"]}, "requires": [{"r1": other}]},
    lambda other: {"commands": {"start": ["/bin/true"]}, "roles": "r1"},
    lambda other: {"commands": {"start": ["/bin/true", "{HOME}"]}, "user": "www"},
    lambda other: {"commands": {"start": ["{A}"]}, "defines": {"A": "{B}", "B": "{A}"}},
    lambda other: {"commands": {"start": ["/bin/true"]}, "count": "{N}"},
    lambda other: {"commands": {"start": ["/bin/true"]}, "control": "once"},
    # Wrong alone (an unknown key), or where the file defines D (two values chosen).
    lambda other: {"commands": {"start": ["/bin/true"]}, "contol": "once"},
    lambda other: {"commands": {"start": ["/bin/true"]}, "control": {"D": "once", "E": "wait"}},
    lambda other: {
        "commands": {"start": ["/bin/true"]},
        "onexit": {"type": "start", "task": other},
    },
]

Layout = dict[str, list[tuple[str, dict[str, Any]]]]


def write(root: Path, layout: Layout) -> list[Path]:
    paths = []
    for file, tasks in layout.items():
        # A file's `defines` is in its list of tasks under the name "defines".
        document: dict[str, Any] = {"tasks": {n: e for n, e in tasks if n != "defines"}}
        for name, entry in tasks:
            if name == "defines":
                document["defines"] = entry
        if file == "main":
            path = root / "main.conf"
            document["include"] = "conf.d/*.conf"
        else:
            path = root / "conf.d" / f"{file}.conf"
        path.write_text(json.dumps(document))
        paths.append(path)
    for gone in (root / "conf.d").glob("*.conf"):
        if gone.stem not in layout:
            gone.unlink()
            paths.append(gone)
    return paths


def edit(layout: Layout, step: tuple[str, int, int, int, int]) -> None:
    op, file, name, variant, other = step
    where = FILES[file]
    tasks = layout.setdefault(where, [])
    entry = VARIANTS[variant](NAMES[other])
    named = NAMES[name]
    if op == "set":
        for index, (task, _) in enumerate(tasks):
            if task == named:
                tasks[index] = (named, entry)
                return
        tasks.insert(other % (len(tasks) + 1), (named, entry))
    elif op == "remove":
        tasks[:] = [item for item in tasks if item[0] != named]
    elif op == "move":
        for source in layout.values():
            moved = [item for item in source if item[0] == named]
            source[:] = [item for item in source if item[0] != named]
            tasks.extend(moved)
    elif op == "reverse":
        tasks.reverse()
    elif op == "drop file" and where != "main":
        del layout[where]
    elif op == "defines":
        toggled = [item for item in tasks if item[0] != "defines"]
        if len(toggled) == len(tasks):
            toggled.append(("defines", {"D": "1", "E": "2"} if variant % 2 else {"D": "1"}))
        tasks[:] = toggled
    elif op == "users":
        USERS["www"] = UserInfo("www", 33 + variant, 34)


def load(pipeline: Pipeline, roles: Roles, previous: Loaded | None) -> Loaded | list[str]:
    try:
        return pipeline.run(None, None, lambda: roles, ENV, HOST, previous=previous)
    except ConfigError as exc:
        return [str(p) for p in exc.problems]


def outcome(loaded: Loaded | list[str]) -> object:
    if isinstance(loaded, list):
        return loaded
    return loaded.desired, loaded.problems, dict(loaded.refused), list(loaded.desired.tasks)


STEPS = st.tuples(
    st.sampled_from(
        ["set", "set", "set", "remove", "move", "reverse", "drop file", "defines", "users"]
    ),
    st.integers(0, len(FILES) - 1),
    st.integers(0, len(NAMES) - 1),
    st.integers(0, len(VARIANTS) - 1),
    st.integers(0, len(NAMES) - 1),
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(STEPS, st.sampled_from(["", "r1"])), min_size=1, max_size=12),
)
def test_any_sequence_of_reloads_gives_what_a_fresh_load_gives(
    steps: list[tuple[tuple[str, int, int, int, int], str]],
) -> None:
    USERS["www"] = UserInfo("www", 33, 34)
    layout: Layout = {"main": [("t0", VARIANTS[0]("t1"))], "a": [("t1", VARIANTS[1]("t0"))]}
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        (root / "conf.d").mkdir()
        write(root, layout)
        pipeline = Pipeline(str(root / "main.conf"))
        last = load(pipeline, Roles(()), None)
        good = last if isinstance(last, Loaded) else None
        for step, role in steps:
            edit(layout, step)
            pipeline.composer.changed(str(p) for p in write(root, layout))
            roles = Roles((role,) if role else ())
            got = load(pipeline, roles, good)
            expected = load(Pipeline(str(root / "main.conf")), roles, good)
            assert outcome(got) == outcome(expected)
            if isinstance(got, Loaded):
                if good is not None:
                    assert_names_what_differs(good.desired, got.desired)
                good = got


def assert_names_what_differs(old: DesiredState, new: DesiredState) -> None:
    before, after = old.tasks, new.tasks
    really = {n for n in before.keys() | after.keys() if before.get(n) is not after.get(n)}
    assert really <= set(differing(old, new))


def test_an_unchanged_entry_is_checked_again_when_the_names_its_file_defines_change(
    tmp_path: Path,
) -> None:
    chooses = VARIANTS[-2]("t0")  # control: {D: once, E: wait}
    layout: Layout = {"main": [], "a": [("defines", {"D": "1"}), ("t1", chooses)]}
    (tmp_path / "conf.d").mkdir()
    write(tmp_path, layout)
    pipeline = Pipeline(str(tmp_path / "main.conf"))
    assert isinstance(load(pipeline, Roles(()), None), Loaded)
    layout["a"][0] = ("defines", {"D": "1", "E": "2"})
    pipeline.composer.changed(str(p) for p in write(tmp_path, layout))
    problems = load(pipeline, Roles(()), None)
    assert isinstance(problems, list)
    assert [p.split(": ", 1)[1] for p in problems] == [
        "tasks.t1.control: gives 2 values in every context, where one is expected (a map "
        "chooses the values of the names in the task's context; a list, all of them)"
    ]


def test_a_file_fixed_after_a_mistake_keeps_the_tasks_it_kept_before(tmp_path: Path) -> None:
    layout: Layout = {"main": [(name, VARIANTS[0]("t0")) for name in NAMES]}
    (tmp_path / "conf.d").mkdir()
    write(tmp_path, layout)
    pipeline = Pipeline(str(tmp_path / "main.conf"))
    first = load(pipeline, Roles(()), None)
    assert isinstance(first, Loaded)
    for variant in (-3, 1):  # a mistake (an unknown key), then another good entry
        layout["main"][3] = ("t3", VARIANTS[variant]("t0"))
        pipeline.composer.changed(str(p) for p in write(tmp_path, layout))
        last = load(pipeline, Roles(()), first)
    assert isinstance(last, Loaded)
    for name in NAMES:
        same = last.config.tasks[name] is first.config.tasks[name]
        assert same == (name != "t3")
