"""resolve(): conditional values of the keys below the task level (events, ready, output,
onexit, requires) and of the settings, as the specification's "Values and Lists" allows.

Each family of keys is described once (how to write a conditional for it, where its
resolved value is read, two distinct values and what "not written" gives); the rules are
then checked for every family: one value, none, several, nested, and each context layer.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest
from test_resolve import HOST, run, task

from support.config import CONTEXT_LAYERS
from taskforce.config.load import parse_config
from taskforce.config.model import (
    Config,
    EventConfig,
    OnExitConfig,
    OutputConfig,
    Pick,
    ReadyConfig,
    RestartConfig,
    Settings,
    TaskConfig,
    Value,
)
from taskforce.config.resolve import resolve
from taskforce.config.reuse import ResolveCache
from taskforce.config.roles import Roles
from taskforce.core.spec import DesiredState, TaskSpec
from taskforce.core.vocabulary import Control, EventType

COMMANDS: dict[str, Value] = {
    "start": ["prog"],
    "reload": ["prog", "--reload"],
    "rotate": ["prog", "--rotate"],
}
OTHERS = (
    TaskConfig("a", {"start": ["a"]}, control=Control.ONCE),
    TaskConfig("b", {"start": ["b"]}, control=Control.ONCE),
)


@dataclass(frozen=True)
class Family:
    """A key that may be conditional: `make` gives the task's fields (or, with `settings`,
    the Settings) for a value; `read` finds the resolved value in the desired state."""

    make: Callable[[Any], dict[str, Any]]
    read: Callable[[DesiredState], object]
    values: tuple[Any, Any]  # two values the key may take (as written = as resolved)
    absent: object  # what `read` gives when the key chooses nothing
    path: str  # the key path of a problem
    settings: bool = False


def spec(state: DesiredState) -> TaskSpec:
    return state.tasks["t"]


def output(key: str) -> Callable[[DesiredState], object]:
    return lambda state: getattr(spec(state).instances[0].output, key)


def ready_of(state: DesiredState) -> Any:
    return spec(state).ready


FAMILIES: dict[str, Family] = {
    "events[].command": Family(
        lambda v: {"events": (EventConfig(EventType.SELF, command=v),)},
        lambda s: spec(s).events[0].command if spec(s).events else None,
        ("reload", "rotate"),
        None,  # an event whose command chooses nothing does nothing: it is left out
        "tasks.t.events[0].command",
    ),
    "events[].signal": Family(
        lambda v: {"events": (EventConfig(EventType.SELF, signal=v),)},
        lambda s: spec(s).events[0].signal if spec(s).events else None,
        (1, 10),
        None,
        "tasks.t.events[0].signal",
    ),
    "ready.tcp": Family(
        lambda v: {"ready": ReadyConfig(tcp=v)},
        lambda s: ready_of(s) and ready_of(s).target,
        ("127.0.0.1:80", "127.0.0.1:81"),
        None,  # no probe at all
        "tasks.t.ready.tcp",
    ),
    "ready.http": Family(
        lambda v: {"ready": ReadyConfig(http=v)},
        lambda s: ready_of(s) and ready_of(s).target,
        ("http://127.0.0.1/a", "http://127.0.0.1/b"),
        None,
        "tasks.t.ready.http",
    ),
    "ready.pidfile": Family(
        lambda v: {"ready": ReadyConfig(pidfile=v), "pidfile": "/run/t.pid"},
        lambda s: ready_of(s) and ready_of(s).kind,
        ("pidfile", "pidfile"),  # as written: true (see make_value)
        None,
        "tasks.t.ready.pidfile",
    ),
    "ready.interval": Family(
        lambda v: {"ready": ReadyConfig(tcp=":80", interval=v)},
        lambda s: ready_of(s).interval,
        (2.0, 3.0),
        0.1,
        "tasks.t.ready.interval",
    ),
    "ready.timeout": Family(
        lambda v: {"ready": ReadyConfig(tcp=":80", timeout=v)},
        lambda s: ready_of(s).timeout,
        (2.0, 3.0),
        None,
        "tasks.t.ready.timeout",
    ),
    "output.stdout": Family(
        lambda v: {"output": OutputConfig(stdout=v)},
        output("stdout"),
        ("/log/a", "/log/b"),
        "null",
        "tasks.t.output.stdout",
    ),
    "output.stderr": Family(
        lambda v: {"output": OutputConfig(stderr=v)},
        output("stderr"),
        ("/log/a", "syslog"),
        "stdout",
        "tasks.t.output.stderr",
    ),
    "output.max_bytes": Family(
        lambda v: {"output": OutputConfig(max_bytes=v)},
        output("max_bytes"),
        (1024, 2048),
        10 * 1024 * 1024,
        "tasks.t.output.max_bytes",
    ),
    "output.backups": Family(
        lambda v: {"output": OutputConfig(backups=v)},
        output("backups"),
        (1, 2),
        5,
        "tasks.t.output.backups",
    ),
    "onexit[].task": Family(
        lambda v: {"onexit": (OnExitConfig("start", v),)},
        lambda s: spec(s).onexit_start or None,
        ("a", "b"),
        None,
        "tasks.t.onexit[0].task",
    ),
    "settings.output.stdout": Family(
        lambda v: {"output": OutputConfig(stdout=v)},
        output("stdout"),
        ("/log/a", "/log/b"),
        "null",
        "settings.output.stdout",
        settings=True,
    ),
    "settings.stop_timeout": Family(
        lambda v: {"stop_timeout": v},
        lambda s: s.policy.stop_timeout,
        (7.0, 8.0),
        5.0,
        "settings.stop_timeout",
        settings=True,
    ),
    "settings.check_interval": Family(
        lambda v: {"check_interval": v},
        lambda s: s.policy.check_interval,
        (7.0, 8.0),
        10.0,
        "settings.check_interval",
        settings=True,
    ),
    "settings.restart.max_delay": Family(
        lambda v: {"restart": RestartConfig(max_delay=v)},
        lambda s: s.policy.restart.max_delay,
        (7.0, 8.0),
        30.0,
        "settings.restart.max_delay",
        settings=True,
    ),
}
IDS = list(FAMILIES)


def make_value(family: Family, value: Value) -> Value:
    # ready.pidfile takes a boolean; its resolved value is the probe's kind.
    return True if value == "pidfile" else value


def resolved(family: Family, tree: Value, **context: Any) -> tuple[object, DesiredState, Any]:
    """The value `family` resolves to with `tree` as its conditional, the state and the
    problems."""
    written: Pick[Any] = Pick(_written(family, tree))
    if family.settings:
        fields = family.make(written)
        settings = (
            Settings(**fields) if "output" not in fields else Settings(output=fields["output"])
        )
        state, problems = run(TaskConfig("t", COMMANDS), *OTHERS, settings=settings, **context)
    else:
        state, problems = run(TaskConfig("t", COMMANDS, **family.make(written)), *OTHERS, **context)
    value = family.read(state) if "t" in state.tasks else None
    return value, state, problems


def _written(family: Family, tree: Value) -> Value:
    if isinstance(tree, list):
        return [_written(family, item) for item in tree]
    if isinstance(tree, dict):
        return {key: _written(family, item) for key, item in tree.items()}
    return make_value(family, tree)


def expected(family: Family, value: Any) -> object:
    return (value,) if family.path.startswith("tasks.t.onexit") else value


@pytest.mark.parametrize("family", FAMILIES.values(), ids=IDS)
def test_a_conditional_giving_one_value_gives_it(family: Family) -> None:
    first, second = family.values
    value, _, problems = resolved(family, {"A": first, "NOPE": second}, env={"A": ""})
    assert problems == ()
    assert value == expected(family, first)


@pytest.mark.parametrize("family", FAMILIES.values(), ids=IDS)
def test_a_conditional_giving_none_is_as_if_not_written(family: Family) -> None:
    first, second = family.values
    value, _, problems = resolved(family, [{"NOPE": first}, {"NEITHER": second}])
    assert problems == ()
    assert value == family.absent


@pytest.mark.parametrize("family", FAMILIES.values(), ids=IDS)
def test_a_conditional_giving_several_is_a_problem_of_its_task_only(family: Family) -> None:
    first, second = family.values
    value, state, problems = resolved(family, {"A": first, "B": [second]}, env={"A": "", "B": ""})
    assert [(p.path, p.message.split(" (")[0]) for p in problems] == [
        (family.path, "expands to 2 values")
    ]
    if family.path == "settings.output.stdout":
        # Chosen in each task's context: every task it applies to is left out (once told).
        assert state.tasks == {}
    elif family.settings:
        assert value == family.absent  # settings belong to no task: the default is used
        assert "t" in state.tasks
    else:
        assert set(state.tasks) == {"a", "b"}  # the others run


@pytest.mark.parametrize("family", FAMILIES.values(), ids=IDS)
def test_a_nested_conditional_chooses_through_every_level(family: Family) -> None:
    first, second = family.values
    tree: Value = [{"A": [{"B": first}, {"C": second}]}, {"D": first}]
    assert resolved(family, tree, env={"A": "", "C": ""})[0] == expected(family, second)
    assert resolved(family, tree, env={"B": "", "D": ""})[0] == expected(family, first)


# Each layer of the context, with the name it makes present; and the host's facts.
LAYERS = {**CONTEXT_LAYERS, "a host fact": ("Task_host", {})}


@pytest.mark.parametrize(("name", "layer"), LAYERS.values(), ids=LAYERS)
@pytest.mark.parametrize("family", FAMILIES.values(), ids=IDS)
def test_a_conditional_sees_every_layer_of_the_context(
    family: Family, name: str, layer: dict[str, Any]
) -> None:
    first, second = family.values
    value, _, problems = resolved(family, {name: first, "ELSEWHERE": second}, **layer)
    assert problems == ()
    assert value == expected(family, first)


TASK_LAYERS = {
    "a task define": {"defines": {"WHERE": "x"}},
    "a task role define": {"role_defines": {"r": {"WHERE": "x"}}},
    "a task default": {"defaults": {"WHERE": "x"}},
}


@pytest.mark.parametrize("fields", TASK_LAYERS.values(), ids=TASK_LAYERS)
@pytest.mark.parametrize(
    "family",
    [f for f in FAMILIES.values() if not f.settings],
    ids=[name for name, f in FAMILIES.items() if not f.settings],
)
def test_a_task_key_sees_the_tasks_own_layers(family: Family, fields: dict[str, Any]) -> None:
    first, second = family.values
    written = family.make(Pick(_written(family, {"WHERE": first, "ELSEWHERE": second})))
    state, problems = run(
        TaskConfig("t", COMMANDS, **written, **fields), *OTHERS, roles=Roles(("r",))
    )
    assert problems == ()
    assert family.read(state) == expected(family, first)


def test_the_settings_do_not_see_a_tasks_context() -> None:
    settings = Settings(stop_timeout=Pick({"Task_name": 1.0, "MINE": 2.0}))
    state, problems = run(task(defines={"MINE": "x"}), settings=settings)
    assert (state.policy.stop_timeout, problems) == (5.0, ())


def test_chosen_names_and_paths_are_substituted() -> None:
    state, problems = run(
        TaskConfig(
            "t",
            COMMANDS,
            events=(EventConfig(EventType.SELF, command=Pick({"CMD": "{CMD}"})),),
            onexit=(OnExitConfig("start", Pick({"NEXT": "{NEXT}"})),),
            output=OutputConfig(stdout=Pick({"LOGS": "{LOGS}/{Task_name}.log"})),
            ready=ReadyConfig(tcp=Pick({"PORT": "127.0.0.1:{PORT}"})),
        ),
        *OTHERS,
        env={"CMD": "rotate", "NEXT": "b", "LOGS": "/var/log", "PORT": "99"},
    )
    assert problems == ()
    t = state.tasks["t"]
    assert (t.events[0].command, t.onexit_start) == ("rotate", ("b",))
    assert (t.instances[0].output.stdout, t.ready and t.ready.target) == (
        "/var/log/t.log",
        "127.0.0.1:99",
    )


@pytest.mark.parametrize(
    ("fields", "path", "message"),
    [
        (
            {"events": (EventConfig(EventType.SELF, command=Pick({"X": "{X}"})),)},
            "tasks.t.events[0].command",
            "the task has no command 'nope'",
        ),
        (
            {"onexit": (OnExitConfig("start", Pick({"X": "{X}"})),)},
            "tasks.t.onexit[0].task",
            "there is no task 'nope'",
        ),
        ({"requires": (Pick({"X": "{X}"}).tree,)}, "tasks.t.requires", "there is no task 'nope'"),
    ],
    ids=["an event command", "an onexit task", "a requirement"],
)
def test_a_substituted_name_that_names_nothing_is_a_problem(
    fields: dict[str, Any], path: str, message: str
) -> None:
    state, problems = run(TaskConfig("t", COMMANDS, **fields), *OTHERS, env={"X": "nope"})
    assert [(p.path, p.message) for p in problems] == [(path, message)]
    assert "t" not in state.tasks


def test_a_reused_spec_whose_substituted_link_was_removed_is_a_problem() -> None:
    # The task entry is unchanged (its spec is reused), but the task its names give is gone.
    t = task(requires=("{NEED}",), onexit=(OnExitConfig("start", "{NEXT}"),))
    cache = ResolveCache()
    env = {"NEED": "a", "NEXT": "b"}
    config = Config(source="tf.yaml", tasks={"t": t, "a": OTHERS[0], "b": OTHERS[1]})
    state, problems = resolve(config, None, env, HOST, cache)
    assert problems == () and state.tasks["t"].requires == ("a",)
    for gone, path in (("a", "tasks.t.requires"), ("b", "tasks.t.onexit[0].task")):
        kept = {name: other for name, other in config.tasks.items() if name != gone}
        state, problems = resolve(replace(config, tasks=kept), None, env, HOST, cache)
        assert [(p.path, p.message) for p in problems] == [(path, f"there is no task {gone!r}")]
        assert "t" not in state.tasks


def test_a_ready_command_that_gives_nothing_means_no_probe() -> None:
    ready = ReadyConfig(command=[{"CHECK": ["check", "{CHECK}"]}])
    assert run(task(ready=ready))[0].tasks["t"].ready is None
    spec = run(task(ready=ready), env={"CHECK": "x"})[0].tasks["t"]
    assert spec.ready is not None and spec.ready.kind == "command"
    assert spec.instances[0].ready_command == ("check", "x")


# --- requires: a list, whose conditionals give any number of names --------------------------


@pytest.mark.parametrize(
    ("env", "required"),
    [
        ({}, ("a",)),
        ({"B": ""}, ("a", "b")),
        ({"B": "", "DB": "", "TOO": ""}, ("a", "b", "db")),
        ({"DB": ""}, ("a",)),  # db only with B: nested
    ],
)
def test_requires_is_a_list_with_conditionals(env: dict[str, str], required: tuple[str]) -> None:
    requires: tuple[Value, ...] = ("a", {"B": ["b", {"DB": "db"}, {"NOPE": "zzz"}]})
    db = TaskConfig("db", {"start": ["db"]})
    state, problems = run(task(requires=requires), *OTHERS, db, env=env)
    assert problems == ()
    assert state.tasks["t"].requires == required


def test_requires_from_a_role() -> None:
    requires: tuple[Value, ...] = ({"Task_role_primary": "a", "Task_role_replica": "b"},)
    roles = Roles(("replica",), {"replica": "1"})
    assert run(task(requires=requires), *OTHERS, roles=roles)[0].tasks["t"].requires == ("b",)


def test_a_conditional_requirement_of_itself_is_a_problem() -> None:
    _, problems = run(task(requires=({"X": "t"},)), env={"X": ""})
    assert [(p.path, p.message) for p in problems] == [
        ("tasks.t.requires", "a task cannot require itself")
    ]


def test_a_requires_cycle_made_by_conditionals_leaves_its_tasks_out() -> None:
    tasks = (
        task("a", requires=({"LOOP": "b"},)),
        task("b", requires=("a",)),
        task("c", requires=("a",)),
        task("d"),
    )
    state, problems = run(*tasks, env={"LOOP": ""})
    assert [(p.path, p.message) for p in problems] == [
        ("tasks.a.requires", "requires cycle here: a -> b -> a"),
        ("tasks.b.requires", "requires cycle here: a -> b -> a"),
    ]
    assert set(state.tasks) == {"c", "d"}  # c waits for nothing that will run here
    assert set(run(*tasks)[0].tasks) == {"a", "b", "c", "d"}


# --- onexit: the target must be a once task, decided once its control is resolved ------------


def onexit_case(control: Any, **context: Any) -> tuple[DesiredState, Any]:
    target = TaskConfig("next", {"start": ["n"]}, control=control)
    owner = task(onexit=(OnExitConfig("start", "next"),))
    return run(owner, target, task("other"), **context)


def test_onexit_to_a_task_whose_conditional_control_is_once_here() -> None:
    state, problems = onexit_case(
        Pick({"BATCH": Control.ONCE, "DAEMON": Control.WAIT}), env={"BATCH": ""}
    )
    assert problems == ()
    assert state.tasks["t"].onexit_start == ("next",)


def test_onexit_to_a_task_whose_conditional_control_is_not_once_here() -> None:
    state, problems = onexit_case(
        Pick({"BATCH": Control.ONCE, "DAEMON": Control.WAIT}), env={"DAEMON": ""}
    )
    assert [(p.path, p.message) for p in problems] == [
        (
            "tasks.t.onexit[0].task",
            "onexit can only start a 'once' task, and 'next' has control 'wait' here",
        )
    ]
    assert set(state.tasks) == {"next", "other"}  # only the task with the onexit is left out


def test_onexit_to_a_conditional_control_that_chooses_nothing_is_wait() -> None:
    _, problems = onexit_case(Pick({"BATCH": Control.ONCE}))
    assert [p.path for p in problems] == ["tasks.t.onexit[0].task"]


def test_a_temporary_control_override_does_not_undo_onexit() -> None:
    # A plain control is checked when the file is loaded; `taskforce control next wait`
    # replaces it for a while and must not make the task with the onexit go.
    state, problems = onexit_case(Control.WAIT)
    assert problems == () and "t" in state.tasks


# --- the README's example ---------------------------------------------------------------------


@pytest.mark.parametrize("canary", [True, False])
def test_the_readme_example_of_nested_conditionals(canary: bool) -> None:
    readme = (pathlib.Path(__file__).parents[3] / "README.md").read_text()
    example = readme.split("The same holds below the task level", 1)[1].split("```yaml\n", 1)[1]
    config = parse_config(example.split("```", 1)[0], "/etc/tf.conf")
    roles = Roles(("canary",) if canary else ())
    state, problems = resolve(config, roles, {}, HOST)
    assert problems == ()
    app = state.tasks["app"]
    if canary:
        assert app.requires == ("db", "metrics")
        assert [(e.signal, e.command) for e in app.events] == [(10, None), (None, "reload")]
        assert app.instances[0].output.stdout == "/var/log/app-canary.log"
        assert app.ready is not None and app.ready.target == "127.0.0.1:8081"
        assert app.onexit_start == ("report",)
    else:
        assert app.requires == ("db",)
        assert app.events == ()  # STEADY is not defined either
        assert app.instances[0].output.stdout == "null"
        assert (app.ready, app.onexit_start) == (None, ())
