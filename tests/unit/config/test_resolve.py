"""resolve(): scope by roles, count, instances, argv, events, and problems left out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import yaml

from support.config import CONTEXT_LAYERS
from taskforce.config.errors import Problem
from taskforce.config.model import (
    Config,
    EventConfig,
    OnExitConfig,
    Pick,
    RestartConfig,
    Settings,
    TaskConfig,
    Value,
)
from taskforce.config.resolve import MAX_COUNT, HostFacts, UserInfo, resolve
from taskforce.config.reuse import ResolveCache
from taskforce.config.roles import Roles
from taskforce.core.spec import TASK_PID_MARKER, DesiredState, Environ, EventSpec, TaskSpec
from taskforce.core.vocabulary import Control, EventType, Placement, RestartPolicy


def find_user(key: str | int) -> UserInfo | None:
    return UserInfo("www", 33, 34) if key in ("www", 33) else None


def find_group(key: str | int) -> int | None:
    return 7 if key in ("staff", 7) else None


HOST = HostFacts("box", "box.example.com", 4242, 1000, 1001, find_user, find_group)


def task(name: str = "t", start: Any = None, **fields: Any) -> TaskConfig:
    return TaskConfig(name=name, commands={"start": start or ["prog"]}, **fields)


def run(
    *tasks: TaskConfig,
    roles: Roles | None = None,
    env: Mapping[str, str] | None = None,
    **top: Any,
) -> tuple[DesiredState, tuple[Problem, ...]]:
    config = Config(source="tf.yaml", tasks={t.name: t for t in tasks}, **top)
    return resolve(config, roles, env or {}, HOST)


def one(*tasks: TaskConfig, **kwargs: Any) -> TaskSpec:
    state, problems = run(*tasks, **kwargs)
    assert problems == ()
    return state.tasks[tasks[0].name]


def argv(spec: TaskSpec, instance: int = 0) -> tuple[str, ...]:
    return spec.instances[instance].launch.argv


# --- the specification's examples --------------------------------------------------------

VERBOSE_EXAMPLE = """
"db_server": {
    "pidfile": "/var/run/{Task_name}.pid",
    "commands": {
        "start": [ "{Task_name}", {"VERBOSE": "-v"}, "-p", "{Task_pidfile}" ]
    }
}
"""

# As the specification prints it, but for `["-l": "{LOGFILE}"]`: see the test below.
DEBUG_EXAMPLE = """
"db_server": {
    "pidfile": "/var/run/{Task_name}.pid",
    "commands": {
        "start": [
            "{Task_name}",
                {"DEBUG": [
                    "-d", "{DEBUG}",
                    {"LOGFILE": ["-l", "{LOGFILE}"]}
                ]},
                "-p", "{Task_pidfile}"
        ]
    }
}
"""


def spec_task(text: str) -> TaskConfig:
    [(name, body)] = yaml.safe_load("{" + text + "}").items()
    return TaskConfig(name=name, commands=body["commands"], pidfile=body["pidfile"])


@pytest.mark.parametrize(
    ("env", "command"),
    [
        ({"VERBOSE": "1"}, "db_server -v -p /var/run/db_server.pid"),
        ({}, "db_server -p /var/run/db_server.pid"),
    ],
)
def test_spec_verbose_example(env: dict[str, str], command: str) -> None:
    assert " ".join(argv(one(spec_task(VERBOSE_EXAMPLE), env=env))) == command


@pytest.mark.parametrize(
    ("env", "command"),
    [
        ({"DEBUG": "2"}, "db_server -d 2 -p /var/run/db_server.pid"),
        (
            {"DEBUG": "2", "LOGFILE": "/tmp/db_server.out"},
            "db_server -d 2 -l /tmp/db_server.out -p /var/run/db_server.pid",
        ),
        ({"LOGFILE": "/tmp/db_server.out"}, "db_server -p /var/run/db_server.pid"),
    ],
)
def test_spec_debug_logfile_example(env: dict[str, str], command: str) -> None:
    assert " ".join(argv(one(spec_task(DEBUG_EXAMPLE), env=env))) == command


def test_spec_debug_example_as_printed_has_a_conditional_on_dash_l() -> None:
    # The specification prints ["-l": "{LOGFILE}"]: in YAML that is [{"-l": "{LOGFILE}"}],
    # a conditional on a context name "-l", so -l is dropped unless "-l" is defined.
    printed = spec_task(DEBUG_EXAMPLE.replace('["-l", "{LOGFILE}"]', '["-l": "{LOGFILE}"]'))
    env = {"DEBUG": "2", "LOGFILE": "/tmp/db_server.out"}
    assert " ".join(argv(one(printed, env=env))) == "db_server -d 2 -p /var/run/db_server.pid"


def test_spec_introduction_ntpd() -> None:
    spec = one(
        task(
            "ntpd",
            ["/usr/sbin/ntpd", "-c", "{conf}", "-n"],
            requires=("sshd",),
            defines={"conf": "/etc/ntp.conf"},
            events=(
                EventConfig(EventType.SELF, command="stop"),
                EventConfig(EventType.FILE_CHANGE, path="{conf}", command="stop"),
            ),
        ),
        task("sshd", ["/usr/sbin/sshd", "-D"]),
    )
    assert argv(spec) == ("/usr/sbin/ntpd", "-c", "/etc/ntp.conf", "-n")
    assert spec.requires == ("sshd",)
    assert spec.events == (
        EventSpec(EventType.SELF, (), command="stop"),
        EventSpec(EventType.FILE_CHANGE, ("/etc/ntp.conf",), command="stop"),
    )


# --- scope -------------------------------------------------------------------------------

SCOPED = (task("any"), task("web", roles=("frontend",)), task("both", roles=("frontend", "db")))


def test_without_role_processing_every_task_is_in_scope() -> None:
    state, _ = run(*SCOPED, roles=None)
    assert set(state.tasks) == {"any", "web", "both"}
    assert state.out_of_scope == frozenset()


def test_with_no_active_role_only_tasks_without_roles_run() -> None:
    state, _ = run(*SCOPED, roles=Roles(()))
    assert set(state.tasks) == {"any"}
    assert state.out_of_scope == {"web", "both"}


def test_any_matching_role_brings_a_task_in_scope() -> None:
    state, _ = run(*SCOPED, roles=Roles(("db",)))
    assert set(state.tasks) == {"any", "both"}
    assert state.out_of_scope == {"web"}


@pytest.mark.parametrize(
    ("active", "one_is_enough", "all_needed"),
    [
        ((), {"any"}, {"any"}),
        (("db",), {"any", "both"}, {"any"}),
        (("frontend",), {"any", "web", "both"}, {"any", "web"}),
        (("db", "frontend"), {"any", "web", "both"}, {"any", "web", "both"}),
    ],
)
def test_all_roles_needs_every_listed_role(
    active: tuple[str, ...], one_is_enough: set[str], all_needed: set[str]
) -> None:
    state, _ = run(*SCOPED, roles=Roles(active))
    assert set(state.tasks) == one_is_enough
    strict = Settings(all_roles=True)
    state, _ = run(*SCOPED, roles=Roles(active), settings=strict)
    assert set(state.tasks) == all_needed
    assert state.out_of_scope == {"web", "both"} - all_needed
    # Without role processing, every task runs either way.
    state, _ = run(*SCOPED, roles=None, settings=strict)
    assert set(state.tasks) == {"any", "web", "both"}


def test_all_roles_on_a_roles_change_with_the_same_cache() -> None:
    config = Config(source="tf.yaml", tasks={t.name: t for t in SCOPED})
    strict = Config(source="tf.yaml", tasks=config.tasks, settings=Settings(all_roles=True))
    cache = ResolveCache()
    scopes = [
        set(resolve(conf, Roles(active), {}, HOST, cache)[0].tasks)
        for conf, active in [
            (strict, ("frontend",)),
            (strict, ("frontend", "db")),  # db joins: both comes into scope
            (strict, ("db",)),  # frontend leaves: web and both go
            (config, ("db",)),  # all_roles off again: one role is enough for both
        ]
    ]
    assert scopes == [{"any", "web"}, {"any", "web", "both"}, {"any"}, {"any", "both"}]


def test_an_empty_roles_list_means_always_in_scope() -> None:
    state, _ = run(task("t", roles=()), roles=Roles(("db",)))
    assert set(state.tasks) == {"t"}


# --- count and instances -----------------------------------------------------------------


def test_count_gives_instances_each_with_its_own_values() -> None:
    spec = one(
        task(
            "ws_server",
            ["{Task_name}", "-p", "{Task_pidfile}"],
            count=4,
            pidfile="/run/{Task_name}-{Task_instance}.pid",
        )
    )
    assert spec.count == 4
    for number, instance in enumerate(spec.instances):
        pidfile = f"/run/ws_server-{number}.pid"
        assert instance.pidfile == pidfile
        assert instance.launch.argv == ("ws_server", "-p", pidfile)
        assert instance.launch.env_value("Task_instance") == str(number)


@pytest.mark.parametrize(("count", "expected"), [("{N}", 3), (" {N} ", 3), ("0", 0), (0, 0)])
def test_count_may_be_substituted(count: int | str, expected: int) -> None:
    assert one(task(count=count), defines={"N": "3"}).count == expected


@pytest.mark.parametrize(
    "count", ["{NOPE}", "abc", "-1", "1.5", "", -1, True, MAX_COUNT + 1, "9" * 5000]
)
def test_a_bad_count_leaves_the_task_out(count: int | str) -> None:
    state, problems = run(task("bad", count=count), task("good"))
    assert set(state.tasks) == {"good"}
    [problem] = problems
    assert (problem.source, problem.mark, problem.path) == ("tf.yaml", None, "tasks.bad.count")


def test_procname_replaces_argv0_but_not_the_program() -> None:
    spec = one(task(start=["/usr/bin/ws", "-x"], count=2, procname="ws-{Task_instance}"))
    assert [(i.launch.program, i.launch.argv) for i in spec.instances] == [
        ("/usr/bin/ws", ("ws-0", "-x")),
        ("/usr/bin/ws", ("ws-1", "-x")),
    ]


def test_instance_fields() -> None:
    spec = one(task(cwd="/srv/{Task_name}", user="www", group=7))
    launch = spec.instances[0].launch
    assert (launch.cwd, launch.user, launch.group) == ("/srv/t", "www", 7)
    assert (launch.env_value("Task_uid"), launch.env_value("Task_gid")) == ("33", "7")


def test_the_environment_is_the_sorted_context() -> None:
    spec = one(task(defines={"b": "{a}!"}), env={"a": "A", "Z": "z"})
    env = spec.instances[0].launch.env
    assert env == tuple(sorted(env))
    assert ("a", "A") in env and ("b", "A!") in env and ("Z", "z") in env
    assert ("Task_pid", TASK_PID_MARKER) in env


def test_other_commands_are_expanded_and_empty_ones_dropped() -> None:
    commands: dict[str, Value] = {
        "start": ["prog"],
        "stop": ["{Task_name}_ctl", "stop", "{Task_pid}"],
        "debug": {"DEBUG": ["prog", "--debug"]},
    }
    spec = one(TaskConfig(name="t", commands=commands))
    assert spec.instances[0].commands == {"stop": ("t_ctl", "stop", TASK_PID_MARKER)}


@pytest.mark.parametrize("start", [[{"NOPE": "x"}], ["{E}", "x"]])
def test_a_start_command_without_a_program_is_a_problem(start: Any) -> None:
    state, problems = run(task(start=start), env={"E": ""})
    assert state.tasks == {}
    assert [p.path for p in problems] == ["tasks.t.commands.start"]


# --- task-level fields -------------------------------------------------------------------


def test_task_fields_are_copied() -> None:
    spec = one(
        task(
            "t",
            control=Control.ONCE,
            requires=("r",),
            start_delay=1.5,
            time_limit=30.0,
            onexit=(OnExitConfig("start", "r"),),
        ),
        task("r"),
    )
    assert (spec.control, spec.requires, spec.start_delay, spec.time_limit) == (
        Control.ONCE,
        ("r",),
        1.5,
        30.0,
    )
    assert spec.onexit_start == ("r",)


def test_file_change_paths_are_expanded_with_conditionals() -> None:
    path: Value = ["{conf}", {"EXTRA": "{EXTRA}"}, {"NOPE": "/x"}]
    spec = one(
        task(
            defines={"conf": "/etc/{Task_name}.conf"},
            events=(EventConfig(EventType.FILE_CHANGE, path=path, signal=1),),
        ),
        env={"EXTRA": "/etc/extra"},
    )
    assert spec.events == (
        EventSpec(EventType.FILE_CHANGE, ("/etc/t.conf", "/etc/extra"), signal=1),
    )


def test_policy_comes_from_settings() -> None:
    restart = RestartConfig(min_uptime=2.0)
    state, _ = run(task(), settings=Settings(restart=restart, stop_timeout=9.0))
    assert (state.policy.restart, state.policy.stop_timeout) == (RestartPolicy(2.0), 9.0)


# --- conditional values for keys that take one value --------------------------------------

LAYERS = CONTEXT_LAYERS


@pytest.mark.parametrize(("name", "layer"), LAYERS.values(), ids=LAYERS)
def test_a_conditional_key_sees_every_layer_of_the_context(
    name: str, layer: dict[str, Any]
) -> None:
    cwd: Pick[str] = Pick({name: "/srv/{Task_name}", "ELSEWHERE": "/nowhere"})
    assert one(task(cwd=cwd), **layer).instances[0].launch.cwd == "/srv/t"
    # Without the layer, the conditional chooses nothing: no cwd at all.
    assert one(task(cwd=cwd)).instances[0].launch.cwd is None


@pytest.mark.parametrize(
    "fields",
    [{"defines": {"WHERE": "x"}}, {"role_defines": {"r": {"WHERE": "x"}}}],
    ids=["a task define", "a task role define"],
)
def test_a_conditional_key_sees_the_tasks_own_layers(fields: dict[str, Any]) -> None:
    spec = one(task(pidfile=Pick([{"WHERE": "/run/{WHERE}.pid"}]), **fields), roles=Roles(("r",)))
    assert spec.instances[0].pidfile == "/run/x.pid"


def test_a_conditional_key_sees_task_values() -> None:
    spec = one(task(procname=Pick({"Task_host": "{Task_name}@{Task_host}"}), count=2))
    assert [argv(spec, n)[0] for n in (0, 1)] == ["t@box", "t@box"]


def test_every_key_that_takes_one_value_may_be_conditional() -> None:
    spec = one(
        task(
            control=Pick({"MANUAL": Control.OFF}),
            count=Pick({"N": "{N}"}),
            start_delay=Pick([{"SLOW": 2.0}]),
            time_limit=Pick({"LIMIT": 9.0}),
            placement=Pick({"CLUSTER": Placement.CLUSTER}),
            user=Pick({"WEB": "www"}),
            group=Pick({"STAFF": 7}),
        ),
        env={"MANUAL": "1", "N": "3", "SLOW": "", "LIMIT": "1", "CLUSTER": "1", "WEB": "1"},
    )
    assert (spec.control, len(spec.instances), spec.start_delay, spec.time_limit) == (
        Control.OFF,
        3,
        2.0,
        9.0,
    )
    assert spec.cluster
    assert (spec.instances[0].launch.user, spec.instances[0].launch.group) == ("www", None)


def test_a_conditional_that_chooses_nothing_is_as_if_not_written() -> None:
    spec = one(
        task(
            control=Pick({"MANUAL": Control.OFF}),
            count=Pick([]),
            start_delay=Pick({"SLOW": 2.0}),
            time_limit=Pick({"LIMIT": 9.0}),
            procname=Pick({"NAME": "x"}),
        )
    )
    assert (spec.control, len(spec.instances), spec.start_delay, spec.time_limit) == (
        Control.WAIT,
        1,
        0.0,
        None,
    )
    assert argv(spec) == ("prog",)


def test_a_nested_conditional_chooses_through_every_level() -> None:
    cwd: Pick[str] = Pick([{"A": [{"B": "/a/b"}, {"C": "/a/c"}]}, {"D": "/d"}])
    assert one(task(cwd=cwd), env={"A": "", "C": ""}).instances[0].launch.cwd == "/a/c"
    assert one(task(cwd=cwd), env={"D": ""}).instances[0].launch.cwd == "/d"
    assert one(task(cwd=cwd), env={"B": "", "D": ""}).instances[0].launch.cwd == "/d"


@pytest.mark.parametrize("key", ["cwd", "procname", "control", "count", "user"])
def test_a_conditional_giving_several_values_leaves_only_its_task_out(key: str) -> None:
    values: dict[str, Any] = {
        "cwd": ("/a", "/b"),
        "procname": ("a", "b"),
        "control": (Control.OFF, Control.ONCE),
        "count": (1, 2),
        "user": ("www", 33),
    }
    first, second = values[key]
    bad = task("bad", **{key: Pick({"A": first, "B": [second]})})
    state, problems = run(bad, task("ok"), env={"A": "1", "B": "1"})
    assert set(state.tasks) == {"ok"}
    assert [(p.path, p.message.split(" (")[0]) for p in problems] == [
        (f"tasks.bad.{key}", "expands to 2 values")
    ]


def test_a_nowait_task_whose_pidfile_chooses_nothing_is_a_problem() -> None:
    bad = task(control=Control.NOWAIT, pidfile=Pick({"RUN": "/run/t.pid"}))
    state, problems = run(bad)
    assert state.tasks == {}
    assert [p.path for p in problems] == ["tasks.t.pidfile"]
    assert one(bad, env={"RUN": ""}).instances[0].pidfile == "/run/t.pid"


# --- problems ----------------------------------------------------------------------------


def test_problems_leave_only_their_task_out() -> None:
    state, problems = run(
        task("loop", defines={"a": "{b}", "b": "{a}"}),
        task("cwd", cwd=Pick({"A": "/a", "B": "/b"})),
        task("ok"),
        env={"A": "1", "B": "1"},
    )
    assert set(state.tasks) == {"ok"}
    assert [(p.source, p.mark, p.path) for p in problems] == [
        ("tf.yaml", None, "tasks.loop.defines.a"),
        ("tf.yaml", None, "tasks.cwd.cwd"),
    ]
    assert problems[0].message == "substitution loop: a -> b -> a"


def test_a_top_level_problem_is_reported_once() -> None:
    state, problems = run(task("a"), task("b"), defines={"x": "{y}", "y": "{x}"})
    assert state.tasks == {}
    assert [(p.path, p.message) for p in problems] == [
        ("defines.x", "substitution loop: x -> y -> x")
    ]


def test_a_path_cannot_use_the_pid() -> None:
    event = EventConfig(EventType.FILE_CHANGE, path="/proc/{Task_pid}/x", command="stop")
    _, problems = run(task(events=(event,)))
    assert [p.path for p in problems] == ["tasks.t.events[0].path"]


# --- scale -------------------------------------------------------------------------------


def test_a_thousand_tasks_resolve() -> None:
    tasks = [
        task(
            f"t{n}",
            ["{Task_name}", "-c", "{conf}", {"VERBOSE": "-v"}, "-p", "{Task_pidfile}"],
            defines={"conf": "{confdir}/{Task_name}.conf"},
            pidfile="{piddir}/{Task_name}.pid",
            roles=("web",) if n % 2 else None,
        )
        for n in range(1000)
    ]
    state, problems = run(
        *tasks,
        roles=Roles(("web",)),
        env={"BASE": "/b"},
        defines={"piddir": "{BASE}/run", "confdir": "{BASE}/etc"},
    )
    assert problems == ()
    assert len(state.tasks) == 1000
    assert argv(state.tasks["t999"]) == ("t999", "-c", "/b/etc/t999.conf", "-p", "/b/run/t999.pid")


def test_host_facts_from_the_system() -> None:
    import os

    host = HostFacts.from_system()
    assert (host.pid, host.uid, host.gid) == (os.getpid(), os.getuid(), os.getgid())
    assert host.hostname and "." not in host.hostname
    me = host.user_lookup(os.getuid())
    assert me is not None and me.uid == os.getuid()
    assert host.user_lookup(me.name) == me
    assert host.user_lookup(str(me.uid)) == me
    assert host.group_lookup(os.getgid()) == os.getgid()
    assert host.user_lookup("no-such-user-\u00e9") is None
    assert host.group_lookup("no-such-group-\u00e9") is None


def test_tasks_share_the_environment_pairs_they_have_in_common() -> None:
    """10,000 tasks inherit the same environment: each (name, value) pair is kept once, not
    once per task (a copy per task was 2.8 KB of taskforce's memory per task)."""
    state, problems = run(task("a"), task("b", count=2), env={"HOME": "/root", "LANG": "C"})
    assert problems == ()
    envs = [i.launch.env for t in ("a", "b") for i in state.tasks[t].instances]
    homes = [pair for env in envs for pair in env if pair[0] == "HOME"]
    assert homes[0] == ("HOME", "/root")
    assert all(pair is homes[0] for pair in homes)
    names = {dict(env)["Task_name"] for env in envs}
    assert names == {"a", "b"}


def test_instances_share_one_tuple_of_the_variables_they_have_in_common() -> None:
    """Beyond the pairs, the tuple of them is shared: an instance keeps only its name and
    number (a tuple of 50 pairs per instance was 4.4 MB with 10,000 tasks), yet reads as
    the sorted tuple of every pair it was."""
    state, problems = run(task("a"), task("b", count=2), env={"HOME": "/root", "LANG": "C"})
    assert problems == ()
    envs = [i.launch.env for t in ("a", "b") for i in state.tasks[t].instances]
    assert all(isinstance(env, Environ) for env in envs)
    commons = {id(env._common) for env in envs if isinstance(env, Environ)}
    assert len(commons) == 1
    for env, (name, number) in zip(envs, [("a", "0"), ("b", "0"), ("b", "1")], strict=True):
        pairs = tuple(env)
        assert pairs == tuple(sorted(pairs)) and env == pairs and hash(env) == hash(pairs)
        assert len(env) == len(pairs) and env[-1] == pairs[-1] and dict(env)["HOME"] == "/root"
        assert (dict(env)["Task_name"], dict(env)["Task_instance"]) == (name, number)
        assert env + (("X", "1"),) == (*pairs, ("X", "1"))  # noqa: RUF005 (the executor adds)
    assert envs[1] != envs[2] and envs[0] != envs[1]
