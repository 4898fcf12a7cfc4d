"""Context building: precedence of each layer, substitution, loops and conditionals."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskforce.config.context import (
    ContextError,
    MultipleValuesError,
    SharedContext,
    SubstitutionLoop,
    build_context,
    expand,
    expand_one,
    scalar_text,
    select,
    substitute,
)
from taskforce.config.host import HostFacts, UserInfo
from taskforce.config.model import Config, Pick, TaskConfig, Value
from taskforce.config.roles import Roles
from taskforce.core.spec import TASK_PID_MARKER

USERS = {"www": UserInfo("www", 33, 34), "db": UserInfo("db", 70, 71)}
GROUPS = {"staff": 50, "wheel": 0}


def find_user(key: str | int) -> UserInfo | None:
    # Like the system lookup: a name, else a numeric id.
    if isinstance(key, int) or (key not in USERS and key.isdigit()):
        return next((u for u in USERS.values() if u.uid == int(key)), None)
    return USERS.get(key)


def find_group(key: str | int) -> int | None:
    if isinstance(key, int) or (key not in GROUPS and key.isdigit()):
        return int(key)
    return GROUPS.get(key)


HOST = HostFacts("box", "box.example.com", 4242, 1000, 1001, find_user, find_group)


def context(
    top: Mapping[str, Any] | None = None,
    roles: Roles | None = None,
    env: Mapping[str, str] | None = None,
    instance: int = 0,
    **task: Any,
) -> dict[str, str]:
    """The context of instance `instance` of task "t" (start: ["prog"])."""
    config = Config(
        tasks={"t": TaskConfig(name="t", commands={"start": ["prog"]}, **task)},
        **(top or {}),
    )
    return build_context(config, "t", roles, env or {}, HOST, instance)


# --- substitution ------------------------------------------------------------------------


def test_known_names_are_replaced() -> None:
    assert substitute("{a}/{b}.pid", {"a": "/run", "b": "x"}) == "/run/x.pid"


@pytest.mark.parametrize(
    "text",
    ["{unknown}", "{", "}", "a{b", "{}", "{0}", "{a.b}", "{a:>5}", '{"k": [1, {"v": 2}]}'],
)
def test_everything_but_known_names_is_kept_as_written(text: str) -> None:
    assert substitute(text, {"a": "A", "k": "K", "v": "V"}) == text


def test_doubled_braces_are_not_an_escape() -> None:
    # str.format (the original) read {{a}} as a literal {a}; here braces are never special.
    assert substitute("{{a}}", {"a": "A"}) == "{A}"


def test_substitution_is_one_pass_over_the_text() -> None:
    # A value that looks like a reference is not substituted again.
    assert substitute("{a}", {"a": "{b}", "b": "B"}) == "{b}"


def test_scalars_render_as_text() -> None:
    assert [scalar_text(v) for v in (None, True, False, 3, 1.5, 2.0, "s")] == [
        "",
        "true",
        "false",
        "3",
        "1.5",
        "2.0",
        "s",
    ]
    assert scalar_text(["a"]) is None
    assert scalar_text({"a": "b"}) is None


# --- conditional values ------------------------------------------------------------------


def test_a_string_is_one_word_and_a_number_its_text() -> None:
    assert expand("{a}", {"a": "x y"}) == ["x y"]
    assert expand(8080, {}) == ["8080"]
    assert expand(None, {}) == []


def test_a_list_concatenates_and_a_map_keeps_present_keys_in_order() -> None:
    value: Value = ["a", {"X": "-x", "MISSING": "-m", "Y": ["-y", "{Y}"]}, "z"]
    assert expand(value, {"X": "", "Y": "2"}) == ["a", "-x", "-y", "2", "z"]


def test_presence_counts_not_truth() -> None:
    assert expand({"EMPTY": "-e"}, {"EMPTY": ""}) == ["-e"]


def test_map_keys_are_looked_up_literally() -> None:
    assert expand({"{K}": "a", "K": "b"}, {"K": "x"}) == ["b"]


def test_a_map_value_may_itself_be_a_map() -> None:
    value: Value = {"A": {"B": "ab", "C": "ac"}}
    assert expand(value, {"A": "1", "C": "1"}) == ["ac"]
    assert expand(value, {"C": "1"}) == []


def test_none_elements_contribute_nothing() -> None:
    assert expand(["a", None, {"A": None}], {"A": "1"}) == ["a"]


def test_deep_nesting_does_not_recurse() -> None:
    value: Value = "leaf"
    for _ in range(20_000):
        value = [{"K": value}]
    assert expand(value, {"K": "1"}) == ["leaf"]


def test_select_does_not_substitute() -> None:
    assert select(["{a}", {"a": 1}], {"a"}) == ["{a}", 1]


def test_expand_one() -> None:
    assert expand_one({"A": "x"}, {}) is None
    assert expand_one({"A": "{A}"}, {"A": "x"}) == "x"
    with pytest.raises(MultipleValuesError) as caught:
        expand_one(["a", "b"], {})
    assert caught.value.words == ["a", "b"]


# --- precedence, one rule at a time -----------------------------------------------------


def test_defines_override_the_environment() -> None:
    assert context({"defines": {"A": "define"}}, env={"A": "env"})["A"] == "define"


def test_the_environment_is_the_base() -> None:
    assert context(env={"A": "env"})["A"] == "env"


def test_task_defines_override_top_level_defines() -> None:
    assert context({"defines": {"A": "top"}}, defines={"A": "task"})["A"] == "task"


def test_top_level_role_defines_override_top_level_defines() -> None:
    top = {"defines": {"A": "top"}, "role_defines": {"web": {"A": "role"}}}
    assert context(top, Roles(("web",)))["A"] == "role"


def test_task_defines_override_top_level_role_defines() -> None:
    top = {"role_defines": {"web": {"A": "top role"}}}
    assert context(top, Roles(("web",)), defines={"A": "task"})["A"] == "task"


def test_task_role_defines_override_task_defines() -> None:
    roles = Roles(("web",))
    ctx = context(roles=roles, defines={"A": "task"}, role_defines={"web": {"A": "task role"}})
    assert ctx["A"] == "task role"


def test_role_defines_of_inactive_roles_do_not_apply() -> None:
    ctx = context(roles=Roles(("db",)), defines={"A": "task"}, role_defines={"web": {"A": "x"}})
    assert ctx["A"] == "task"


def test_with_several_roles_the_last_active_role_defines_win() -> None:
    maps = {"web": {"A": "web"}, "db": {"A": "db"}}
    assert context(roles=Roles(("web", "db")), role_defines=maps)["A"] == "db"
    assert context(roles=Roles(("db", "web")), role_defines=maps)["A"] == "web"


def test_defaults_do_not_override_the_environment_or_defines() -> None:
    top = {"defaults": {"E": "default", "D": "default"}, "defines": {"D": "define"}}
    ctx = context(top, env={"E": "env"}, defaults={"E": "task default", "D": "task default"})
    assert (ctx["E"], ctx["D"]) == ("env", "define")


def test_defaults_fill_what_is_absent() -> None:
    assert context({"defaults": {"A": "top"}})["A"] == "top"


DEFAULTS_TOP = {
    "defaults": {"A": "top default"},
    "role_defaults": {"web": {"A": "top role default"}},
}


def test_task_role_defaults_win_over_every_other_default() -> None:
    ctx = context(
        DEFAULTS_TOP,
        Roles(("web",)),
        defaults={"A": "task default"},
        role_defaults={"web": {"A": "task role default"}},
    )
    assert ctx["A"] == "task role default"


def test_task_defaults_win_over_top_level_defaults() -> None:
    ctx = context(DEFAULTS_TOP, Roles(("web",)), defaults={"A": "task default"})
    assert ctx["A"] == "task default"


def test_top_level_role_defaults_win_over_top_level_defaults() -> None:
    assert context(DEFAULTS_TOP, Roles(("web",)))["A"] == "top role default"
    assert context(DEFAULTS_TOP, Roles(("db",)))["A"] == "top default"


def test_with_several_roles_the_first_active_role_default_wins() -> None:
    maps = {"web": {"A": "web"}, "db": {"A": "db"}}
    assert context(roles=Roles(("web", "db")), role_defaults=maps)["A"] == "web"


@pytest.mark.parametrize("roles", [None, Roles(())])
def test_without_active_roles_no_role_map_applies(roles: Roles | None) -> None:
    top = {"role_defines": {"web": {"A": "x"}}, "role_defaults": {"web": {"B": "x"}}}
    ctx = context(top, roles, role_defines={"web": {"C": "x"}}, role_defaults={"web": {"D": "x"}})
    assert not {"A", "B", "C", "D"} & set(ctx)


def test_task_values_override_defines() -> None:
    ctx = context(
        {"defines": {"Task_name": "top", "Task_host": "top"}},
        defines={"Task_instance": "9", "Task_pidfile": "define"},
        pidfile="/run/{Task_name}.pid",
    )
    assert ctx["Task_name"] == "t"
    assert ctx["Task_host"] == "box"
    assert ctx["Task_instance"] == "0"
    assert ctx["Task_pidfile"] == "/run/t.pid"


def test_generated_names_are_not_inherited_from_the_environment() -> None:
    ctx = context(env={"Task_name": "outer", "Task_pidfile": "/outer.pid", "Task_role_x": "y"})
    assert ctx["Task_name"] == "t"
    assert "Task_pidfile" not in ctx
    assert "Task_role_x" not in ctx


# --- task values -------------------------------------------------------------------------


def test_task_values() -> None:
    ctx = context(instance=3)
    assert {k: v for k, v in ctx.items() if k.startswith("Task_")} == {
        "Task_name": "t",
        "Task_pid": TASK_PID_MARKER,
        "Task_ppid": "4242",
        "Task_instance": "3",
        "Task_host": "box",
        "Task_fqdn": "box.example.com",
        "Task_uid": "1000",
        "Task_gid": "1001",
    }


def test_field_values_are_substituted_with_the_context() -> None:
    ctx = context(
        {"defines": {"run": "/run/{Task_name}"}},
        instance=2,
        pidfile="{run}-{Task_instance}.pid",
        cwd="/srv/{Task_name}",
    )
    assert ctx["Task_pidfile"] == "/run/t-2.pid"
    assert ctx["Task_cwd"] == "/srv/t"


def test_defines_may_refer_to_task_values() -> None:
    ctx = context(defines={"arg": "--pidfile={Task_pidfile}"}, pidfile="/run/{Task_name}.pid")
    assert ctx["arg"] == "--pidfile=/run/t.pid"


def test_user_gives_uid_and_primary_gid() -> None:
    ctx = context(defines={"who": "www"}, user="{who}")
    assert (ctx["Task_user"], ctx["Task_uid"], ctx["Task_gid"]) == ("www", "33", "34")
    assert "Task_group" not in ctx


def test_group_overrides_the_users_gid() -> None:
    ctx = context(user="db", group="staff")
    assert (ctx["Task_uid"], ctx["Task_group"], ctx["Task_gid"]) == ("70", "staff", "50")


def test_numeric_user_and_group() -> None:
    ctx = context(user=33, group=0)
    assert (ctx["Task_user"], ctx["Task_uid"], ctx["Task_gid"]) == ("33", "33", "0")


def test_group_alone_keeps_taskforces_uid() -> None:
    ctx = context(group="wheel")
    assert (ctx["Task_uid"], ctx["Task_gid"]) == ("1000", "0")


@pytest.mark.parametrize(("field", "value"), [("user", "nobody-here"), ("group", "nogroup")])
def test_unknown_user_or_group_leaves_the_ids_unset(field: str, value: str) -> None:
    # Not a configuration error: the account may appear later; starting the task fails
    # (and is retried with backoff) until it does.
    keys: dict[str, Any] = {field: value}  # Any: either keyword of TaskConfig
    ctx = context(**keys)
    assert ctx[f"Task_{field}"] == value
    assert "Task_gid" not in ctx
    if field == "user":
        assert "Task_uid" not in ctx


def test_a_user_cannot_depend_on_its_own_uid() -> None:
    with pytest.raises(SubstitutionLoop) as caught:
        context(defines={"who": "u{Task_uid}"}, user="{who}")
    assert caught.value.chain == ("Task_user", "who", "Task_uid", "Task_user")


def test_a_group_may_depend_on_the_users_uid() -> None:
    ctx = context(defines={"g": "{Task_uid}"}, user="db", group="{g}")
    assert (ctx["Task_group"], ctx["Task_gid"]) == ("70", "70")


def test_roles_file_values_are_task_values() -> None:
    roles = Roles(("db",), {"db": "/srv/{Task_name}"})
    ctx = context({"defines": {"Task_role_db": "define"}}, roles)
    assert ctx["Task_role_db"] == "/srv/t"


@pytest.mark.parametrize(
    ("pidfile", "expected"),
    [({"P": "/run/{P}.pid"}, "/run/p.pid"), ({"NOPE": "/run/x.pid"}, None)],
)
def test_a_conditional_field_may_choose_nothing(pidfile: Value, expected: str | None) -> None:
    chosen = context({"defines": {"P": "p"}}, pidfile=Pick(pidfile)).get("Task_pidfile")
    assert chosen == expected


def test_a_field_choosing_two_values_is_an_error() -> None:
    with pytest.raises(MultipleValuesError) as caught:
        context(cwd=Pick(["/a", "/b"]))
    assert caught.value.path == "tasks.t.cwd"


def test_a_field_expanding_to_an_empty_string_is_an_error() -> None:
    with pytest.raises(ContextError) as caught:
        context(user="{who}", defines={"who": ""})
    assert (caught.value.path, caught.value.message) == (
        "tasks.t.user",
        "expands to an empty string",
    )


# --- values and chains -------------------------------------------------------------------


def test_define_values_render_as_text() -> None:
    ctx = context(defines={"n": None, "t": True, "f": False, "i": 3, "x": 1.5})
    assert [ctx[k] for k in "ntfix"] == ["", "true", "false", "3", "1.5"]


def test_a_list_define_is_an_error_naming_it() -> None:
    with pytest.raises(ContextError) as caught:
        context(defines={"l": ["a"]})
    assert caught.value.path == "tasks.t.defines.l"


def test_chained_values_expand_fully() -> None:
    top = {"defines": {"piddir": "{EXAMPLES_BASE}/var/run", "pid": "{piddir}/{Task_name}.pid"}}
    assert context(top, env={"EXAMPLES_BASE": "/ex"})["pid"] == "/ex/var/run/t.pid"
    top["defaults"] = {"EXAMPLES_BASE": ""}
    assert context(top)["pid"] == "/var/run/t.pid"


def test_environment_values_are_literal() -> None:
    ctx = context({"defines": {"d": "<{E}>"}}, env={"E": "{H}", "H": "home"})
    assert (ctx["E"], ctx["d"]) == ("{H}", "<{H}>")


def test_unknown_names_stay_literal_in_values() -> None:
    assert context(defines={"a": "{nope}/{Task_name}"})["a"] == "{nope}/t"


def test_a_reference_loop_is_reported_with_its_chain() -> None:
    with pytest.raises(SubstitutionLoop) as caught:
        context({"defines": {"a": "{b}", "b": "x{a}"}})
    assert caught.value.chain == ("a", "b", "a")
    assert caught.value.path == "defines.a"
    assert caught.value.message == "substitution loop: a -> b -> a"


def test_a_long_chain_does_not_recurse() -> None:
    defines: dict[str, Value] = {f"v{i}": f"{{v{i + 1}}}" for i in range(5000)}
    defines["v5000"] = "end"
    assert context(defines=defines)["v0"] == "end"
    defines["v5000"] = "{v0}"
    with pytest.raises(SubstitutionLoop) as caught:
        context(defines=defines)
    assert len(caught.value.chain) == 5002


def test_a_task_override_can_break_a_top_level_loop() -> None:
    top = {"defines": {"a": "{b}", "b": "{a}"}}
    assert context(top, defines={"b": "fixed"})["a"] == "fixed"


def test_the_pid_marker_may_reach_values_but_no_other_nul() -> None:
    assert context(defines={"p": "--pid={Task_pid}"})["p"] == f"--pid={TASK_PID_MARKER}"
    with pytest.raises(ContextError):
        context(defines={"p": "a\0b"})


def test_a_pidfile_cannot_use_the_pid() -> None:
    with pytest.raises(ContextError) as caught:
        context(pidfile="/run/{Task_pid}.pid")
    assert caught.value.path == "tasks.t.pidfile"


# --- a define refers by its own name to the value it overrides --------------------------


def test_a_define_extends_the_environment_value() -> None:
    ctx = context({"defines": {"PATH": "/opt/app/bin:{PATH}"}}, env={"PATH": "/usr/bin"})
    assert ctx["PATH"] == "/opt/app/bin:/usr/bin"
    ctx = context(
        defines={"LD_LIBRARY_PATH": "{LD_LIBRARY_PATH}:/opt/lib"}, env={"LD_LIBRARY_PATH": "/lib"}
    )
    assert ctx["LD_LIBRARY_PATH"] == "/lib:/opt/lib"


def test_top_level_and_task_defines_compose() -> None:
    ctx = context(
        {"defines": {"PATH": "/a:{PATH}"}}, env={"PATH": "/usr/bin"}, defines={"PATH": "/b:{PATH}"}
    )
    assert ctx["PATH"] == "/b:/a:/usr/bin"


def test_role_defines_compose_in_map_order() -> None:
    top = {"defines": {"P": "1:{P}"}, "role_defines": {"web": {"P": "2:{P}"}, "db": {"P": "3:{P}"}}}
    task: dict[str, Any] = {
        "defines": {"P": "4:{P}"},
        "role_defines": {"web": {"P": "5:{P}"}, "db": {"P": "6:{P}"}},
    }
    assert context(top, Roles(("web", "db")), env={"P": "e"}, **task)["P"] == "6:5:4:3:2:1:e"
    assert context(top, Roles(("db", "web")), env={"P": "e"}, **task)["P"] == "5:6:4:2:3:1:e"
    assert context(top, Roles(("web",)), env={"P": "e"}, **task)["P"] == "5:4:2:1:e"
    assert context(top, Roles(("web",)), env={"P": "e"})["P"] == "2:1:e"


def test_a_define_extends_a_define_that_does_not_extend() -> None:
    top = {"defines": {"P": "/top"}, "role_defines": {"web": {"P": "/role:{P}"}}}
    assert context(top, Roles(("web",)), env={"P": "e"}, defines={"P": "/t:{P}"})["P"] == (
        "/t:/role:/top"
    )


def test_a_define_over_nothing_keeps_its_own_name_as_written() -> None:
    # Like any unknown name: neither the environment, nor a define, nor a default has it.
    assert context(defines={"PATH": "/a:{PATH}"})["PATH"] == "/a:{PATH}"
    ctx = context({"defines": {"P": "/a:{P}"}}, defines={"P": "/b:{P}"})
    assert ctx["P"] == "/b:/a:{P}"


def test_a_define_refers_to_its_own_name_any_number_of_times() -> None:
    assert context(defines={"X": "{X}:{X}"}, env={"X": "e"})["X"] == "e:e"
    assert context({"defines": {"X": "a{X}"}}, env={"X": "e"}, defines={"X": "{X}|{X}"})["X"] == (
        "ae|ae"
    )
    assert context(defines={"X": "{X}:{X}"})["X"] == "{X}:{X}"


def test_a_define_extends_the_default_that_would_apply() -> None:
    top = {"defines": {"PATH": "/a:{PATH}"}, "defaults": {"PATH": "/usr/bin"}}
    assert context(top)["PATH"] == "/a:/usr/bin"
    assert context(top, env={"PATH": "/bin"})["PATH"] == "/a:/bin"
    assert context(top, defaults={"PATH": "/task/bin"})["PATH"] == "/a:/task/bin"
    assert context(top, env={"PATH": "/bin"}, defaults={"PATH": "/task/bin"})["PATH"] == "/a:/bin"


def test_extended_values_are_substituted_as_usual() -> None:
    top = {"defines": {"PATH": "{base}/bin:{PATH}", "base": "/opt/{Task_name}"}}
    ctx = context(top, env={"PATH": "/usr/bin"}, defines={"PATH": "{PATH}:{extra}", "extra": "/x"})
    assert ctx["PATH"] == "/opt/t/bin:/usr/bin:/x"
    ctx = context(defines={"other": "<{PATH}>", "PATH": "/a:{PATH}"}, env={"PATH": "/e"})
    assert ctx["other"] == "</a:/e>"  # other names see the final value


def test_an_extended_environment_value_stays_literal() -> None:
    ctx = context(defines={"PATH": "/a:{PATH}", "H": "home"}, env={"PATH": "{H}/bin"})
    assert ctx["PATH"] == "/a:{H}/bin"


def test_an_indirect_loop_through_a_define_is_still_a_loop() -> None:
    with pytest.raises(SubstitutionLoop) as caught:
        context(defines={"PATH": "/a:{PATH}:{X}", "X": "{PATH}"}, env={"PATH": "/e"})
    assert caught.value.chain == ("PATH", "X", "PATH")
    assert caught.value.path == "tasks.t.defines.PATH"


def test_an_overridden_define_cannot_refer_to_the_final_value_either() -> None:
    # The top-level define refers to X, and X to the task's PATH (that includes it).
    with pytest.raises(SubstitutionLoop) as caught:
        context({"defines": {"PATH": "{X}:{PATH}", "X": "{PATH}"}}, defines={"PATH": "/b:{PATH}"})
    assert caught.value.chain == ("PATH", "PATH", "X", "PATH")
    assert caught.value.path == "tasks.t.defines.PATH"


@pytest.mark.parametrize(
    ("top", "task", "path"),
    [
        ({"defaults": {"X": "{X}:/x"}}, {}, "defaults.X"),
        ({}, {"role_defaults": {"web": {"X": "/x:{X}"}}}, "tasks.t.role_defaults.web.X"),
        ({"defines": {"X": "/a:{X}"}, "defaults": {"X": "{X}"}}, {}, "defaults.X"),
        ({}, {"cwd": "{Task_cwd}/x"}, "tasks.t.cwd"),
    ],
)
def test_a_default_or_field_referring_to_its_own_name_is_a_loop(
    top: dict[str, Any], task: dict[str, Any], path: str
) -> None:
    # Nothing lies beneath a default: it applies only where the name has no value.
    with pytest.raises(SubstitutionLoop) as caught:
        context(top, Roles(("web",)), **task)
    assert (caught.value.chain, caught.value.path) == ((caught.value.chain[0],) * 2, path)


def test_a_default_referring_to_its_own_name_is_harmless_when_unused() -> None:
    assert context({"defaults": {"X": "{X}:/x"}}, env={"X": "e"})["X"] == "e"
    assert context({"defaults": {"X": "{X}:/x"}, "defines": {"X": "d"}})["X"] == "d"


def test_a_roles_file_value_referring_to_its_own_name_is_a_loop() -> None:
    with pytest.raises(SubstitutionLoop) as caught:
        context(roles=Roles(("db",), {"db": "{Task_role_db}"}))
    assert caught.value.chain == ("Task_role_db", "Task_role_db")


# --- values shared between tasks are computed once but stay per task -------------------


def two_tasks(
    top: Mapping[str, Any], roles: Roles | None = None, **b: Any
) -> tuple[dict[str, str], dict[str, str]]:
    config = Config(
        tasks={
            "a": TaskConfig(name="a", commands={"start": ["p"]}),
            "b": TaskConfig(name="b", commands={"start": ["p"]}, **b),
        },
        **top,
    )
    return (
        build_context(config, "a", roles, {"E": "env"}, HOST),
        build_context(config, "b", roles, {"E": "env"}, HOST),
    )


def test_a_shared_value_follows_a_task_define() -> None:
    a, b = two_tasks({"defines": {"conf": "{dir}/x", "dir": "/etc"}}, defines={"dir": "/opt"})
    assert (a["conf"], b["conf"]) == ("/etc/x", "/opt/x")


def test_a_shared_value_follows_a_task_default() -> None:
    top = {"defines": {"conf": "{dir}/x"}, "defaults": {"dir": "/etc"}}
    a, b = two_tasks(top, defaults={"dir": "/opt"})
    assert (a["conf"], b["conf"]) == ("/etc/x", "/opt/x")


def test_a_shared_value_follows_task_values() -> None:
    a, b = two_tasks({"defines": {"log": "/log/{Task_name}-{E}"}})
    assert (a["log"], b["log"]) == ("/log/a-env", "/log/b-env")


def test_a_shared_value_follows_an_override_of_the_environment() -> None:
    a, b = two_tasks({"defines": {"path": "{E}:/x"}}, defines={"E": "task"})
    assert (a["path"], b["path"]) == ("env:/x", "task:/x")


def test_a_shared_extending_define_follows_a_task_define_of_the_value_it_extends() -> None:
    a, b = two_tasks({"defines": {"E": "/x:{E}"}}, defines={"E": "/b:{E}"})
    assert (a["E"], b["E"]) == ("/x:env", "/b:/x:env")


def test_a_shared_extending_define_follows_a_task_default_beneath_it() -> None:
    top = {"defines": {"P": "/x:{P}"}, "defaults": {"P": "/top"}}
    a, b = two_tasks(top, defaults={"P": "/task"})
    assert (a["P"], b["P"]) == ("/x:/top", "/x:/task")


def test_a_shared_extending_define_follows_what_an_overridden_define_refers_to() -> None:
    # The final value refers to none of the task's names, the define it extends does.
    top = {"defines": {"E": "{dir}:{E}", "dir": "/etc"}, "role_defines": {"web": {"E": "/r:{E}"}}}
    a, b = two_tasks(top, Roles(("web",)), defines={"dir": "/opt"})
    assert (a["E"], b["E"]) == ("/r:/etc:env", "/r:/opt:env")


def test_an_extending_top_level_define_is_expanded_once_for_all_tasks() -> None:
    config = Config(
        tasks={"t": TaskConfig(name="t", commands={"start": ["p"]})},
        defines={"PATH": "/a:{PATH}"},
        role_defines={"web": {"PATH": "/w:{PATH}"}},
    )
    shared = SharedContext(config, Roles(("web",)), {"PATH": "/usr/bin"}, HOST)
    assert shared.done["PATH"] == "/w:/a:/usr/bin"
    assert "PATH" not in shared.unstable


def test_a_define_of_a_field_value_stays_when_the_task_does_not_set_the_field() -> None:
    assert context(defines={"Task_cwd": "/d"})["Task_cwd"] == "/d"
    assert context({"defines": {"Task_cwd": "/d"}})["Task_cwd"] == "/d"
    assert context(defines={"Task_cwd": "/d"}, cwd="/c")["Task_cwd"] == "/c"


NAMES = st.sampled_from(["a", "b", "c", "d", "Task_name", "Task_instance", "nope"])
TEMPLATES = st.lists(st.one_of(NAMES.map("{{{}}}".format), st.sampled_from(["x", "{", "}"])))


@given(st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), TEMPLATES.map("".join)))
def test_defines_expand_fully_or_report_a_loop(defines: dict[str, str]) -> None:
    try:
        ctx = context(defines=dict(defines))
    except SubstitutionLoop as err:
        assert err.chain[0] == err.chain[-1]
        assert len(set(err.chain)) > 1  # referring to one's own name is no loop
        assert set(err.chain) <= set(defines)
    else:
        # Each value is its template with every known name replaced by its final value,
        # but its own: there is nothing beneath (no environment, no other layer).
        for key, template in defines.items():
            others = {k: v for k, v in ctx.items() if k != key}
            assert ctx[key] == substitute(template, others)


class ModelLoopError(Exception):
    pass


def layered_model(
    env: Mapping[str, str],
    defaults: list[Mapping[str, str]],
    layers: list[Mapping[str, str]],
    names: list[str],
) -> dict[str, str]:
    """The rule, recursively: a name in a define layer refers to the layers beneath,
    then the environment, then the first default that has it; a default to nothing."""
    final: dict[str, str | None] = {}
    busy: set[str] = set()

    def text(template: str, name: str, own: Callable[[], str | None]) -> str:
        def one(match: re.Match[str]) -> str:
            found = own() if match[1] == name else value(match[1])
            return match[0] if found is None else found

        return re.sub(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", one, template)

    def loop() -> str | None:
        raise ModelLoopError

    def beneath(name: str, depth: int) -> str | None:
        for index in reversed(range(depth)):
            if name in layers[index]:
                return text(layers[index][name], name, partial(beneath, name, index))
        if name in env:
            return env[name]
        default = next((d[name] for d in defaults if name in d), None)
        return None if default is None else text(default, name, loop)

    def value(name: str) -> str | None:
        if name in busy:
            raise ModelLoopError
        if name not in final:
            busy.add(name)
            final[name] = beneath(name, len(layers))
            busy.discard(name)
        return final[name]

    return {name: found for name in names if (found := value(name)) is not None}


LAYER_NAMES = st.sampled_from(["a", "b", "c"])
LAYER_TEXT = st.lists(st.sampled_from(["{a}", "{b}", "{c}", "x", ":", "{", "}"]), max_size=4)
LAYER_MAP = st.dictionaries(LAYER_NAMES, LAYER_TEXT.map("".join), max_size=3)


@given(
    st.dictionaries(LAYER_NAMES, st.sampled_from(["E", "{a}"]), max_size=2),
    st.lists(LAYER_MAP, min_size=6, max_size=6),
)
def test_layers_agree_with_the_recursive_rule(
    env: dict[str, str], maps: list[dict[str, str]]
) -> None:
    top_defines, top_role, task_defines, task_role, top_defaults, task_defaults = maps
    top = {
        "defines": top_defines,
        "role_defines": {"web": top_role},
        "defaults": top_defaults,
    }
    try:
        expected = layered_model(
            env,
            [task_defaults, top_defaults],
            [top_defines, top_role, task_defines, task_role],
            ["a", "b", "c"],
        )
    except ModelLoopError:
        with pytest.raises(SubstitutionLoop):
            context(
                top,
                Roles(("web",)),
                env,
                defines=task_defines,
                role_defines={"web": task_role},
                defaults=task_defaults,
            )
        return
    ctx = context(
        top,
        Roles(("web",)),
        env,
        defines=task_defines,
        role_defines={"web": task_role},
        defaults=task_defaults,
    )
    assert {k: v for k, v in ctx.items() if k in ("a", "b", "c")} == expected


# --- what a task inherits ------------------------------------------------------------------

ROOTS_ENV = {
    "HOME": "/root",
    "USER": "root",
    "LOGNAME": "root",
    "SHELL": "/bin/bash",
    "TASKFORCE_TOKEN": "s3cret",
    "TASKFORCE_ETCD_PASSWORD": "hunter2",
    "LANG": "C.UTF-8",
}
ACCOUNT = ("HOME", "USER", "LOGNAME", "SHELL")


def test_taskforces_own_variables_are_never_inherited() -> None:
    ctx = context(env=ROOTS_ENV)
    assert not [k for k in ctx if k.startswith("TASKFORCE_")]
    assert ctx["LANG"] == "C.UTF-8" and ctx["HOME"] == "/root"
    # A define may still give one to a task (it is the configuration's own choice).
    assert context(env=ROOTS_ENV, defines={"TASKFORCE_SERVER": "x"})["TASKFORCE_SERVER"] == "x"


def test_a_task_with_a_user_gets_that_users_account_variables() -> None:
    USERS["svc"] = UserInfo("svc", 900, 900, "/srv/svc", "/usr/sbin/nologin")
    try:
        ctx = context(env=ROOTS_ENV, user="svc", defines={"CACHE": "{HOME}/cache"})
        assert [ctx[k] for k in ACCOUNT] == ["/srv/svc", "svc", "svc", "/usr/sbin/nologin"]
        assert ctx["CACHE"] == "/srv/svc/cache"
        # Also under a top-level define that refers to HOME, shared by every task.
        top = {"defines": {"CACHE": "{HOME}/cache"}}
        assert context(top, env=ROOTS_ENV, user="svc")["CACHE"] == "/srv/svc/cache"
        # Over the environment and defaults, not over defines.
        ctx = context(env=ROOTS_ENV, user="svc", defines={"HOME": "/data"})
        assert ctx["HOME"] == "/data" and ctx["USER"] == "svc"
        top = {"defines": {"SHELL": "/bin/zsh"}}
        assert context(top, env={}, user="svc", defaults={"HOME": "/x"})["HOME"] == "/srv/svc"
        assert context(top, env={}, user="svc")["SHELL"] == "/bin/zsh"
        # Without `user`, the environment's.
        assert [context(env=ROOTS_ENV)[k] for k in ACCOUNT] == [
            "/root",
            "root",
            "root",
            "/bin/bash",
        ]
    finally:
        del USERS["svc"]
