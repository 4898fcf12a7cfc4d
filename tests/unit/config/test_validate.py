"""Validating configurations: the specification's examples, and every kind of problem."""

from __future__ import annotations

import json
import pathlib
import signal
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskforce.config.errors import ConfigError
from taskforce.config.load import load_config, parse_config
from taskforce.config.model import (
    Config,
    EventConfig,
    OnExitConfig,
    Pick,
    RestartConfig,
    Settings,
)
from taskforce.core.vocabulary import Control, EventType

DATA = pathlib.Path(__file__).parent / "data"
REPO = pathlib.Path(__file__).parents[3]


def parse(text: str) -> Config:
    return parse_config(textwrap.dedent(text), "t.conf")


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    found = caught.value.problems
    assert all(problem.mark is not None for problem in found)
    return [str(problem) for problem in found]


def task(body: str, others: str = "") -> str:
    """A configuration holding task `t` with the keys in `body`, on one line."""
    return f'{{"tasks": {{"t": {{{body}}}{others}}}}}'


START = '"commands": {"start": ["prog"]}'


def task_problems(body: str, others: str = "") -> list[str]:
    """The problems of task `t`, without the 't.conf:1:NN: ' position prefix."""
    return [problem.split(": ", 1)[1] for problem in problems(task(body, others))]


# --- the specification's examples ------------------------------------------------------------


def test_spec_example_conf() -> None:
    config = load_config(str(DATA / "example.conf"))
    assert config.source == str(DATA / "example.conf")
    assert list(config.tasks) == ["timeset", "ntpd", "haproxy", "httpd", "ws_server", "db_server"]
    assert config.defaults["EXAMPLES_BASE"] == ""
    assert config.defines["wsurl"] == "wss://localhost:9000/"
    ntpd = config.tasks["ntpd"]
    assert ntpd.control is Control.WAIT
    assert ntpd.requires == ("timeset",)
    assert ntpd.onexit == (OnExitConfig("start", "timeset"),)
    assert ntpd.events == (
        EventConfig(EventType.FILE_CHANGE, path=["{ntpd_conf}", "{keys}"], command="stop"),
    )
    start = ntpd.commands["start"]
    assert isinstance(start, list)
    assert start[-1] == {
        "MINSLEEP": ["--min-sleep", "{MINSLEEP}", {"SLEEPRANGE": ["--sleep-range", "{SLEEPRANGE}"]}]
    }
    assert config.tasks["timeset"].control is Control.ONCE
    assert config.tasks["haproxy"].roles == ("frontend",)
    assert config.tasks["haproxy"].start_delay == 1.0
    assert config.tasks["httpd"].role_defines == {
        "frontend": {"conf": "{confdir}/httpd-outside.conf"}
    }
    assert config.tasks["ws_server"].count == 4
    assert config.tasks["db_server"].events[1] == EventConfig(
        EventType.FILE_CHANGE, path=["{conf}"], signal=int(signal.SIGHUP)
    )
    assert config.settings == Settings()


def test_repository_example_conf() -> None:
    example = REPO / "examples" / "example.conf"
    if not example.exists():
        pytest.skip("no examples/example.conf yet")
    assert "ntpd" in load_config(str(example)).tasks


def test_spec_first_example() -> None:
    config = parse("""
        {
            "tasks": {
                "sshd": {
                    "control": "wait",
                    "commands": { "start": [ "/usr/sbin/sshd", "-D" ] }
                },
                "ntpd": {
                    "control": "wait",
                    "requires": "sshd",
                    "defines": { "conf": "/etc/ntp.conf" },
                    "commands": { "start": [ "/usr/sbin/ntpd", "-c", "{conf}", "-n"] },
                    "events": [
                        { "type": "self", "command": "stop" },
                        { "type": "file_change", "path": "{conf}", "command": "stop" }
                    ]
                }
            }
        }
    """)
    ntpd = config.tasks["ntpd"]
    assert ntpd.requires == ("sshd",)
    assert ntpd.events[0] == EventConfig(EventType.SELF, command="stop")
    assert ntpd.events[1].path == "{conf}"
    assert config.tasks["sshd"].commands == {"start": ["/usr/sbin/sshd", "-D"]}


def test_spec_values_and_lists_examples() -> None:
    config = parse("""
        {"tasks": {
            "verbose": {
                "pidfile": "/var/run/{Task_name}.pid",
                "commands": {
                    "start": [ "{Task_name}", {"VERBOSE": "-v"}, "-p", "{Task_pidfile}" ]
                }
            },
            "db_server": {
                "pidfile": "/var/run/{Task_name}.pid",
                "commands": {
                    "start": [
                        "{Task_name}",
                            {"DEBUG": [
                                "-d", "{DEBUG}",
                                {"LOGFILE": ["-l": "{LOGFILE}"]}
                            ]},
                            "-p", "{Task_pidfile}"
                    ]
                }
            }
        }}
    """)
    assert config.tasks["verbose"].commands["start"] == [
        "{Task_name}",
        {"VERBOSE": "-v"},
        "-p",
        "{Task_pidfile}",
    ]
    assert config.tasks["db_server"].commands["start"] == [
        "{Task_name}",
        {"DEBUG": ["-d", "{DEBUG}", {"LOGFILE": ["-l", "{LOGFILE}"]}]},
        "-p",
        "{Task_pidfile}",
    ]


def test_spec_events_example_with_a_named_command() -> None:
    config = parse("""
        "tasks": {
            "db_server": {
                "defines": { "conf": "/etc/db_server.conf" },
                "pidfile": "/var/run/{Task_name}.pid",
                "commands": {
                    "start": [ "{Task_name}", "-p", "{Task_pidfile}", "-f", "{conf}" ],
                    "reconfig": [ "{Task_name}_ctl", "-p", "{Task_pidfile}", "reload" ]
                },
                "events": [
                    { "type": "file_change", "path": [ "{conf}" ], "command": "reconfig" },
                    { "type": "self", "command": "stop" }
                ]
            }
        }
    """)
    assert config.tasks["db_server"].events[0].command == "reconfig"


def test_block_style_config() -> None:
    config = parse("""
        defaults:
          PATH: /usr/bin:/bin
        role_defaults:
          backend: {DB: main}
        tasks:
          web:
            control: off          # YAML 1.1 would make this false
            count: 2
            user: 1000
            group: www
            cwd: /srv
            procname: web-{Task_instance}
            time_limit: 3600
            roles: frontend
            onexit: {type: start, task: setup}
            commands:
              start: [web, --port, 8000]
              stop:
                - webctl
                - stop
          setup:
            control: once
            commands: {start: [setup]}
        settings:
          restart: {min_uptime: 2, initial_delay: 0.1, factor: 1.5, max_delay: 10}
          stop_timeout: 2.5
    """)
    web = config.tasks["web"]
    assert web.control is Control.OFF
    assert (web.count, web.user, web.group, web.cwd) == (2, 1000, "www", "/srv")
    assert web.procname == "web-{Task_instance}"
    assert web.time_limit == 3600.0
    assert web.roles == ("frontend",)
    assert web.onexit == (OnExitConfig("start", "setup"),)
    assert web.commands == {"start": ["web", "--port", 8000], "stop": ["webctl", "stop"]}
    assert config.role_defaults == {"backend": {"DB": "main"}}
    assert config.settings == Settings(RestartConfig(2.0, 0.1, 1.5, 10.0), stop_timeout=2.5)


def test_json_config() -> None:
    document = {
        "defines": {"N": 3, "FLAG": True, "EMPTY": None, "RATIO": 0.5},
        "tasks": {"a": {"commands": {"start": ["a"]}, "count": "{N}", "requires": []}},
    }
    config = parse_config(json.dumps(document, indent=4), "t.json")
    assert config.defines == {"N": 3, "FLAG": True, "EMPTY": None, "RATIO": 0.5}
    assert config.tasks["a"].count == "{N}"


def test_defaults_of_a_minimal_task() -> None:
    config = parse(task(START))
    t = config.tasks["t"]
    assert t.name == "t"
    assert t.control is Control.WAIT
    assert (t.count, t.requires, t.roles, t.events, t.onexit) == (1, (), None, (), ())
    assert (t.cwd, t.pidfile, t.procname, t.user, t.group) == (None,) * 5
    assert (t.start_delay, t.time_limit) == (0.0, None)


def test_an_empty_configuration_map_is_valid() -> None:
    assert parse("{}") == Config(source="t.conf")


# --- scalars that YAML 1.1 would have turned into booleans -----------------------------------


def test_unquoted_off_is_the_off_control() -> None:
    assert parse("tasks: {t: {control: off, commands: {start: [p]}}}").tasks["t"].control == "off"


@pytest.mark.parametrize("word", ["yes", "no", "on"])
def test_unquoted_yes_no_on_stay_words(word: str) -> None:
    config = parse(f"defines: {{A: {word}}}\ntasks: {{t: {{commands: {{start: [p, {word}]}}}}}}")
    assert config.defines == {"A": word}
    assert config.tasks["t"].commands["start"] == ["p", word]


def test_a_boolean_control_says_to_quote_it() -> None:
    assert task_problems(f'"control": true, {START}') == [
        "tasks.t.control: expected one of wait, once, off, suspend, nowait, adopt, event, "
        "got the boolean true; quote it if you mean the word"
    ]


# --- shape problems, with exact positions ----------------------------------------------------


def test_problem_format_with_position_path_and_suggestion() -> None:
    text = """\
        {
          "tasks": {
            "ntpd": {
              "control": "wiat",
              "comands": { "start": ["ntpd"] }
            }
          }
        }
    """
    assert problems(text) == [
        "t.conf:3:13: tasks.ntpd: missing the required key 'commands'",
        "t.conf:4:18: tasks.ntpd.control: 'wiat' is not one of wait, once, off, suspend, "
        "nowait, adopt, event (did you mean 'wait'?)",
        "t.conf:5:7: tasks.ntpd.comands: unknown key 'comands' (did you mean 'commands'?)",
    ]


def test_all_problems_are_reported_at_once_in_file_order() -> None:
    text = """\
        tasks:
          a:
            commands: {start: [a]}
            requires: [nobody]
            count: -1
          b:
            commands: {}
        setings: {}
    """
    assert problems(text) == [
        "t.conf:4:16: tasks.a.requires[0]: there is no task 'nobody'",
        "t.conf:5:12: tasks.a.count: expected a whole number of processes (0 or more) or a "
        "{name} substitution, got the integer -1",
        "t.conf:7:15: tasks.b.commands: missing the required 'start' entry",
        "t.conf:8:1: setings: unknown key 'setings' (did you mean 'settings'?)",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"task": {}}', "task: unknown key 'task' (did you mean 'tasks'?)"),
        ('{"colour": {}}', "colour: unknown key 'colour' (known keys: defines, role_defines, "
         "defaults, role_defaults, tasks, settings, include, env_file)"),
        ('{"tasks": []}', "tasks: expected a map, got a list"),
        ('{"tasks": {"t": "x"}}',
         "tasks.t: expected a task (a map with at least 'commands'), got the string 'x'"),
        ('{"defines": {"A": [1]}}',
         "defines.A: expected a single value (string or number), got a list"),
        ('{"defines": {"A=B": 1}}', "defines.A=B: the context name 'A=B' contains '='"),
        ('{"defines": {"": 1}}', "defines.: the context name '' is empty"),
        ('{"defaults": []}', "defaults: expected a map, got a list"),
        ('{"role_defines": {"web": {"A": {}}}}',
         "role_defines.web.A: expected a single value (string or number), got a map"),
        ('{"role_defaults": {"web": 1}}', "role_defaults.web: expected a map, got the integer 1"),
        ('{"role_defaults": {"a b": {}}}',
         "role_defaults.a b: the role name 'a b' contains whitespace"),
        ('{"tasks": {"a b": {}}}', "tasks.a b: the task name 'a b' contains whitespace"),
        ('{"tasks": {"a/b": {}}}', "tasks.a/b: the task name 'a/b' contains '/'"),
        ('{"tasks": {"a\\u0001": {}}}',
         "tasks.a\x01: the task name 'a\\x01' contains a control character"),
        ('{"tasks": {"": {}}}', "tasks.: the task name '' is empty"),
    ],
)  # fmt: skip
def test_top_level_problems(text: str, expected: str) -> None:
    found = [problem.split(": ", 1)[1] for problem in problems(text)]
    assert expected in found


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('"commands": []', "expected a map, got a list"),
        ('"commands": {"stop": ["x"]}', "missing the required 'start' entry"),
        ('"commands": {"start": "prog -v"}',
         'expected a list of words such as ["/usr/sbin/sshd", "-D"], got the string \'prog -v\''),
        ('"commands": {"start": []}', "must not be an empty list"),
        ('"commands": {"start": ["p", true]}',
         "expected a string or number, got the boolean true; quote it if you mean the word"),
        ('"commands": {"start": ["p", null]}', "expected a string or number, got nothing (null)"),
        ('"commands": {"start": ["p", {"A": [null]}]}',
         "expected a string or number, got nothing (null)"),
        ('"commands": {"start": ["p"], "a b": ["q"]}',
         "the command name 'a b' contains whitespace"),
        ('"comands": {}', "unknown key 'comands' (did you mean 'commands'?)"),
        ('"contorl": "wait"', "unknown key 'contorl' (did you mean 'control'?)"),
        ('"control": "always"',
         "'always' is not one of wait, once, off, suspend, nowait, adopt, event"),
        ('"count": true', "expected a whole number of processes (0 or more) or a {name} "
         "substitution, got the boolean true"),
        ('"count": 1.5', "expected a whole number of processes (0 or more) or a {name} "
         "substitution, got the number 1.5"),
        ('"count": "many"', "expected a whole number of processes (0 or more) or a {name} "
         "substitution, got the string 'many'"),
        ('"cwd": ""', "must not be empty"),
        ('"cwd": 7', "expected a string, got the integer 7"),
        ('"pidfile": ["a", "b"]', "gives 2 values in every context, where one is expected "
         "(a map chooses the values of the names in the task's context; a list, all of them)"),
        ('"procname": {"A": 7}', "expected a string, got the integer 7"),
        ('"control": {"A": "sometimes"}',
         "'sometimes' is not one of wait, once, off, suspend, nowait, adopt, event"),
        ('"start_delay": [{"A": -1}]', "must be at least 0, got -1"),
        ('"user": {"A": [true]}',
         "expected a name or a numeric id (0 or more), got the boolean true"),
        ('"defines": "A=1"', "expected a map, got the string 'A=1'"),
        ('"user": -1', "expected a name or a numeric id (0 or more), got the integer -1"),
        ('"group": false', "expected a name or a numeric id (0 or more), got the boolean false"),
        ('"user": ""', "expected a name or a numeric id (0 or more), got the string ''"),
        ('"requires": [1]', "expected a string, got the integer 1"),
        ('"requires": {"a": 1}', "requires.a: expected a string, got the integer 1"),
        ('"roles": ["front end"]', "the role name 'front end' contains whitespace"),
        ('"roles": [true]', "a role name must be a string, got the boolean true"),
        ('"start_delay": -1', "must be at least 0, got -1"),
        ('"start_delay": "1"', "expected a number, got the string '1'"),
        ('"start_delay": true', "expected a number, got the boolean true"),
        ('"start_delay": .inf', "must be a finite number, got inf"),
        ('"start_delay": 1' + "0" * 400, "must be a finite number, got 1" + "0" * 400),
        ('"count": "²"', "expected a whole number of processes (0 or more) or a {name} "
         "substitution, got the string '²'"),
        ('"count": "4\\n"', "expected a whole number of processes (0 or more) or a {name} "
         "substitution, got the string '4\\n'"),
        ('"time_limit": 0', "must be greater than 0, got 0"),
        ('"onexit": "setup"',
         "expected a onexit entry (a map with 'type' and 'task'), got the string 'setup'"),
        ('"onexit": [{"type": "stop", "task": "t"}]', "'stop' is not one of start"),
        ('"onexit": [{"type": "start"}]', "missing the required key 'task'"),
        ('"events": {"type": "self", "command": "stop"}', "expected a list, got a map"),
        ('"events": [{"command": "stop"}]', "missing the required key 'type'"),
        ('"events": [{"type": "selff", "command": "stop"}]',
         "'selff' is not one of file_change, python, restart, self (did you mean 'self'?)"),
        ('"events": [{"type": "file_change", "command": "stop"}]',
         "type 'file_change' needs a 'path'"),
        ('"events": [{"type": "self", "path": "/x", "command": "stop"}]',
         "'path' is only used when type is 'file_change'"),
        ('"events": [{"type": "self"}]', "needs one of 'command' or 'signal'"),
        ('"events": [{"type": "self", "command": "stop", "signal": 1}]',
         "give only one of 'command' or 'signal', not both"),
        ('"events": [{"type": "self", "signal": "HUPP"}]',
         "the string 'HUPP' is not a signal name or number (did you mean 'HUP'?)"),
        ('"events": [{"type": "self", "signal": 0}]',
         "the integer 0 is not a signal name or number"),
        ('"events": [{"type": "self", "signal": 100000}]',
         "the integer 100000 is not a signal name or number"),
        ('"events": [{"type": "self", "signal": "²"}]',
         "the string '²' is not a signal name or number"),
        # More digits than int() converts: refused as any other number out of range.
        ('"events": [{"type": "self", "signal": "' + "9" * 5000 + '"}]',
         "is not a signal name or number"),
        ('"events": [{"type": "self", "signal": true}]',
         "the boolean true is not a signal name or number"),
        ('"events": [{"type": "file_change", "path": [true], "command": "stop"}]',
         "expected a string or number, got the boolean true; quote it if you mean the word"),
        ('"events": [{"type": "self", "command": "stopp"}]',
         "the task has no command 'stopp' (did you mean 'stop'?); it has start, stop"),
        ('"events": [{"type": "self", "command": "reload"}]',
         "the task has no command 'reload'; it has start, stop"),
    ],
)  # fmt: skip
def test_task_problems(body: str, expected: str) -> None:
    body = body if '"commands"' in body else f"{START}, {body}"
    found = task_problems(body)
    assert any(problem.endswith(expected) for problem in found), found


# --- values that are accepted in several spellings -------------------------------------------


@pytest.mark.parametrize(
    ("written", "number"),
    [('"HUP"', 1), ('"SIGHUP"', 1), ('"hup"', 1), ('"sigterm"', 15), ("1", 1), ('"1"', 1),
     ('"SIGKILL"', 9), ('"Term"', 15)],
)  # fmt: skip
def test_signal_spellings(written: str, number: int) -> None:
    config = parse(task(f'{START}, "events": [{{"type": "self", "signal": {written}}}]'))
    assert config.tasks["t"].events[0].signal == number


@pytest.mark.parametrize(
    ("written", "count"), [("0", 0), ("4", 4), ('"4"', 4), ('"{N}"', "{N}"), ('"{N}0"', "{N}0")]
)
def test_count_spellings(written: str, count: int | str) -> None:
    assert parse(task(f'{START}, "count": {written}')).tasks["t"].count == count


def test_single_names_need_no_list() -> None:
    config = parse(
        task(
            f'{START}, "requires": "o", "roles": "web", "onexit": {{"type": "start", "task": "o"}}',
            ', "o": {"control": "once", "commands": {"start": ["o"]}}',
        )
    )
    t = config.tasks["t"]
    assert (t.requires, t.roles, t.onexit) == (("o",), ("web",), (OnExitConfig("start", "o"),))


def test_a_defined_stop_command_and_named_commands_can_be_events() -> None:
    body = (
        '"commands": {"start": ["p"], "stop": ["pctl", "stop"], "reload": ["pctl", "hup"]}, '
        '"events": [{"type": "self", "command": "stop"}, '
        '{"type": "restart", "command": "reload"}]'
    )
    assert [event.command for event in parse(task(body)).tasks["t"].events] == ["stop", "reload"]


def test_numbers_in_commands_and_paths_are_kept() -> None:
    body = (
        '"commands": {"start": ["p", 8080, 1.5]}, '
        '"events": [{"type": "file_change", "path": [{"CONF": "{CONF}"}, 7], "signal": 1}]'
    )
    t = parse(task(body)).tasks["t"]
    assert t.commands["start"] == ["p", 8080, 1.5]
    assert t.events[0].path == [{"CONF": "{CONF}"}, 7]


def test_a_command_may_be_one_conditional_map() -> None:
    body = '"commands": {"start": ["p"], "debug": {"DEBUG": ["p", "-d"]}}'
    assert parse(task(body)).tasks["t"].commands["debug"] == {"DEBUG": ["p", "-d"]}


# --- conditional values for keys that take one value ------------------------------------------


def test_a_key_taking_one_value_may_be_conditional() -> None:
    config = parse(
        """
        tasks:
          t:
            commands: {start: [prog]}
            cwd: {STAGING: /srv/staging, PROD: [/srv/prod]}
            user: [{WEB: www}, {DB: 70}]
            count: {N: "{N}"}
            control: {MANUAL: "off"}
            start_delay: {SLOW: 2}
            procname: "{Task_name}"
        """
    )
    t = config.tasks["t"]
    assert t.cwd == Pick({"STAGING": "/srv/staging", "PROD": ["/srv/prod"]})
    assert t.user == Pick([{"WEB": "www"}, {"DB": 70}])
    assert t.count == Pick({"N": "{N}"})
    assert t.control == Pick({"MANUAL": Control.OFF})
    assert t.start_delay == Pick({"SLOW": 2.0})
    assert t.procname == "{Task_name}"  # a plain value stays plain


@pytest.mark.parametrize(
    "value",
    [
        '["/a", "/b"]',  # a list: both, always
        '["/a", {"Task_name": "/b"}]',  # Task_name is in every context
        '{"Task_host": "/a", "TOP": "/b"}',  # TOP: a top-level define
        '[{"MINE": ["/a", "/b"]}]',  # MINE: one of the task's defines, nested
    ],
)
def test_a_conditional_giving_several_values_everywhere_is_an_error_at_load(value: str) -> None:
    text = (
        f'{{"defines": {{"TOP": "1"}}, "tasks": {{"t": {{{START}, '
        f'"defines": {{"MINE": "1"}}, "cwd": {value}}}}}}}'
    )
    found = problems(text)
    assert len(found) == 1 and "tasks.t.cwd: gives 2 values in every context" in found[0]
    assert found[0].startswith("t.conf:1:")


@pytest.mark.parametrize(
    "value",
    [
        '{"A": "/a", "B": "/b"}',  # depends on the context: decided per host
        '[{"ROLE": "/a"}, "/b"]',  # a role define: not always there
        "[]",  # none: as if not written
    ],
)
def test_a_conditional_that_may_give_one_value_loads(value: str) -> None:
    text = (
        f'{{"role_defines": {{"r": {{"ROLE": "1"}}}}, "tasks": {{"t": {{{START}, '
        f'"cwd": {value}}}}}}}'
    )
    assert isinstance(parse(text).tasks["t"].cwd, Pick)


# --- conditional values below the task level ---------------------------------------------------

NESTED_KEYS = {
    "an event command": ('"events": [{"type": "self", "command": %s}]', "events[0].command"),
    "an event signal": ('"events": [{"type": "self", "signal": %s}]', "events[0].signal"),
    "a readiness address": ('"ready": {"tcp": %s}', "ready.tcp"),
    "a readiness interval": ('"ready": {"pidfile": true, "interval": %s}', "ready.interval"),
    "an output path": ('"output": {"stdout": %s}', "output.stdout"),
    "an output size": ('"output": {"max_bytes": %s}', "output.max_bytes"),
    "an onexit task": ('"onexit": {"type": "start", "task": %s}', "onexit.task"),
}
# Two values of each, and a third that is wrong for it.
NESTED_VALUES = {
    "an event command": ('"stop"', '"start"', "7"),
    "an event signal": ('"HUP"', "10", '"HUPP"'),
    "a readiness address": ('":80"', '":81"', "7"),
    "a readiness interval": ("1", "2", '"1s"'),
    "an output path": ('"/a"', '"/b"', '"here"'),
    "an output size": ('"1k"', "2", '"much"'),
    "an onexit task": ('"o"', '"o"', "7"),
}
ONCE = f', "o": {{{START}, "control": "once"}}'


@pytest.mark.parametrize("key", NESTED_KEYS)
def test_a_nested_key_may_be_conditional(key: str) -> None:
    written, _ = NESTED_KEYS[key]
    first, second, _ = NESTED_VALUES[key]
    value = f'[{{"A": {first}}}, {{"B": [{second}]}}]'
    parse(task(f"{START}, " + written % value, ONCE))  # loads


@pytest.mark.parametrize("key", NESTED_KEYS)
def test_a_nested_conditional_giving_several_everywhere_is_an_error_at_load(key: str) -> None:
    written, path = NESTED_KEYS[key]
    first, second, _ = NESTED_VALUES[key]
    value = f'[{first}, {{"Task_name": {second}}}]'
    assert task_problems(f"{START}, " + written % value, ONCE) == [
        f"tasks.t.{path}: gives 2 values in every context, where one is expected (a map "
        "chooses the values of the names in the task's context; a list, all of them)"
    ]


@pytest.mark.parametrize("key", NESTED_KEYS)
def test_each_value_of_a_nested_conditional_is_checked(key: str) -> None:
    written, path = NESTED_KEYS[key]
    first, _, wrong = NESTED_VALUES[key]
    found = task_problems(f"{START}, " + written % f'{{"A": {first}, "B": {wrong}}}', ONCE)
    assert len(found) == 1 and found[0].startswith(f"tasks.t.{path}.B: ")


def test_a_settings_conditional_giving_several_everywhere_is_an_error_at_load() -> None:
    # Settings are chosen in the top-level context: Task_name is not in it, Task_host is.
    text = """\
        defines: {TOP: "1"}
        settings:
          stop_timeout: [{Task_name: 1}, {Task_host: 2}]
          restart: {max_delay: {TOP: 1, Task_host: 2}}
          output: {stdout: [{Task_name: /a}, {Task_host: /b}]}
    """
    found = problems(text)
    assert [problem.split(": ")[1] for problem in found] == [
        "settings.restart.max_delay",
        "settings.output.stdout",
    ]
    assert "names in the top-level context" in found[0]
    assert "names in each task's context" in found[1]
    config = parse("settings: {stop_timeout: [{Task_name: 1}, {Task_host: 2}]}")
    assert config.settings.stop_timeout == Pick([{"Task_name": 1.0}, {"Task_host": 2.0}])


def test_requires_may_hold_conditionals() -> None:
    text = f"""\
        tasks:
          t:
            {START}
            requires: [a, {{DB: [b, {{REPLICA: c}}]}}]
          a: {{{START}}}
          b: {{{START}}}
          c: {{{START}}}
    """
    assert parse(text).tasks["t"].requires == ("a", {"DB": ["b", {"REPLICA": "c"}]})


def test_each_name_of_a_conditional_requirement_is_checked() -> None:
    found = task_problems(f'{START}, "requires": {{"A": ["t", "nobdy"], "B": "{{X}}"}}', ONCE)
    assert found == [
        "tasks.t.requires.A[0]: a task cannot require itself",
        "tasks.t.requires.A[1]: there is no task 'nobdy'",
    ]  # {X} is known only when resolved


def test_each_command_of_a_conditional_event_is_checked() -> None:
    event = '{"type": "self", "command": {"A": "stop", "B": "reloda"}}'
    assert task_problems(
        f'"commands": {{"start": ["p"], "reload": ["r"]}}, "events": [{event}]'
    ) == [
        "tasks.t.events[0].command.B: the task has no command 'reloda' (did you mean "
        "'reload'?); it has start, reload, stop"
    ]


@pytest.mark.parametrize(
    ("control", "error"),
    [
        ('{"BATCH": "once", "DAEMON": "wait"}', False),  # decided per host
        ('{"DAEMON": "wait", "MANUAL": "off"}', True),  # never once
        ('["wait"]', True),
    ],
)
def test_onexit_to_a_conditional_control(control: str, error: bool) -> None:
    text = task(
        f'{START}, "onexit": {{"type": "start", "task": "o"}}',
        f', "o": {{{START}, "control": {control}}}',
    )
    if not error:
        parse(text)
        return
    assert [problem.split(": ", 1)[1] for problem in problems(text)] == [
        "tasks.t.onexit.task: onexit can only start a 'once' task, and no value of 'o''s "
        "conditional control is 'once'"
    ]


def test_each_task_a_conditional_onexit_may_start_is_checked() -> None:
    body = f'{START}, "onexit": {{"type": "start", "task": {{"A": "o", "B": "w", "C": "x"}}}}'
    found = task_problems(body, f'{ONCE}, "w": {{{START}}}')
    assert found == [
        "tasks.t.onexit.task.B: onexit can only start a 'once' task, and 'w' has control 'wait'",
        "tasks.t.onexit.task.C: there is no task 'x'",
    ]


# --- links between tasks ---------------------------------------------------------------------


def test_requires_unknown_task_suggests_a_name() -> None:
    assert task_problems(f'{START}, "requires": ["sshdd"]', f', "sshd": {{{START}}}') == [
        "tasks.t.requires[0]: there is no task 'sshdd' (did you mean 'sshd'?)"
    ]


def test_requires_itself() -> None:
    assert problems(task(f'{START}, "requires": "t"')) == [
        "t.conf:1:63: tasks.t.requires: a task cannot require itself"
    ]


def test_requires_cycle_of_two() -> None:
    text = """\
        tasks:
          b: {commands: {start: [b]}, requires: a}
          a: {commands: {start: [a]}, requires: [x, b]}
          x: {commands: {start: [x]}}
    """
    assert problems(text) == ["t.conf:3:45: tasks.a.requires[1]: requires cycle: a -> b -> a"]


def test_requires_cycle_of_three_is_reported_once() -> None:
    text = """\
        tasks:
          c: {commands: {start: [c]}, requires: [a]}
          b: {commands: {start: [b]}, requires: [c]}
          a: {commands: {start: [a]}, requires: [b]}
          d: {commands: {start: [d]}, requires: [a, b, c]}
    """
    assert problems(text) == ["t.conf:4:42: tasks.a.requires[0]: requires cycle: a -> b -> c -> a"]


def test_separate_cycles_are_each_reported() -> None:
    text = """\
        tasks:
          a: {commands: {start: [a]}, requires: [b]}
          b: {commands: {start: [b]}, requires: [a, c]}
          c: {commands: {start: [c]}, requires: [d]}
          d: {commands: {start: [d]}, requires: [c]}
    """
    assert [problem.split(": ", 2)[2] for problem in problems(text)] == [
        "requires cycle: a -> b -> a",
        "requires cycle: c -> d -> c",
    ]


def test_a_diamond_is_not_a_cycle() -> None:
    text = """\
        tasks:
          a: {commands: {start: [a]}, requires: [b, c]}
          b: {commands: {start: [b]}, requires: [d]}
          c: {commands: {start: [c]}, requires: [d]}
          d: {commands: {start: [d]}}
    """
    assert parse(text).tasks["a"].requires == ("b", "c")


def test_onexit_must_start_a_once_task() -> None:
    text = """\
        tasks:
          a:
            commands: {start: [a]}
            onexit: [{type: start, task: b}, {type: start, task: c}]
          b: {commands: {start: [b]}}
          c: {commands: {start: [c]}, control: once}
    """
    assert problems(text) == [
        "t.conf:4:34: tasks.a.onexit[0].task: onexit can only start a 'once' task, "
        "and 'b' has control 'wait'"
    ]


def test_onexit_unknown_task() -> None:
    assert task_problems(f'{START}, "onexit": {{"type": "start", "task": "setpu"}}',
                         f', "setup": {{"control": "once", {START}}}') == [
        "tasks.t.onexit.task: there is no task 'setpu' (did you mean 'setup'?)"
    ]  # fmt: skip


def test_links_are_checked_even_when_another_task_is_invalid() -> None:
    found = task_problems(f'{START}, "requires": "nobody"', ', "u": {"count": -1}')
    assert "tasks.t.requires: there is no task 'nobody'" in found
    assert "tasks.u: missing the required key 'commands'" in found


# --- settings --------------------------------------------------------------------------------


def test_settings_defaults_and_partial_restart_policy() -> None:
    config = parse(f'{{"settings": {{"restart": {{"factor": 3}}}}, "tasks": {{"t": {{{START}}}}}}}')
    assert config.settings == Settings(RestartConfig(factor=3.0))


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ('{"restart": {"factor": 0.5}}', "settings.restart.factor: must be at least 1, got 0.5"),
        ('{"restart": {"max_delay": -1}}',
         "settings.restart.max_delay: must be at least 0, got -1"),
        ('{"restart": {"min_uptime": "1s"}}',
         "settings.restart.min_uptime: expected a number, got the string '1s'"),
        ('{"restart": {"initial_dealy": 1}}',
         "settings.restart.initial_dealy: unknown key 'initial_dealy' (did you mean "
         "'initial_delay'?)"),
        ('{"stop_timeout": 0}', "settings.stop_timeout: must be greater than 0, got 0"),
        ('{"http": {}}', "settings.http: missing the required key 'listen'"),
        ('[]', "settings: expected a map, got a list"),
    ],
)  # fmt: skip
def test_settings_problems(settings: str, expected: str) -> None:
    assert [problem.split(": ", 1)[1] for problem in problems(f'{{"settings": {settings}}}')] == [
        expected
    ]


# --- files -----------------------------------------------------------------------------------


def test_load_config_of_a_missing_file(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "nope.conf"
    with pytest.raises(ConfigError) as caught:
        load_config(str(missing))
    assert str(caught.value) == f"{missing}: cannot read the file: No such file or directory"


def test_load_config_of_a_file_that_is_not_utf8(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "bad.conf"
    bad.write_bytes(b'{"tasks": {}}\n# caf\xe9\n')
    with pytest.raises(ConfigError) as caught:
        load_config(str(bad))
    assert str(caught.value) == f"{bad}:2:6: the file is not UTF-8 text"


def test_load_config_reports_the_file_name(tmp_path: pathlib.Path) -> None:
    conf = tmp_path / "taskforce.conf"
    conf.write_text('{"tasks": {"ntpd": {"control": "wiat", "commands": {"start": ["n"]}}}}')
    with pytest.raises(ConfigError) as caught:
        load_config(str(conf))
    assert str(caught.value).startswith(f"{conf}:1:32: tasks.ntpd.control: 'wiat' is not one of")


# --- robustness ------------------------------------------------------------------------------

KEYS = st.sampled_from(
    ["tasks", "t", "commands", "start", "events", "type", "path", "command", "signal", "control",
     "count", "requires", "onexit", "task", "roles", "settings", "restart", "factor", "defines"]
)  # fmt: skip
JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), KEYS),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, JSONISH, max_size=4))
def test_any_document_gives_a_config_or_positioned_problems(data: dict[str, object]) -> None:
    try:
        parse_config(json.dumps(data), "t.json")
    except ConfigError as error:
        assert error.problems
        assert all(problem.mark is not None for problem in error.problems)


def test_the_readme_example_of_conditional_scalar_keys_loads() -> None:
    readme = (REPO / "README.md").read_text()
    example = readme.split("not only in command lists.", 1)[1].split("```yaml\n", 1)[1]
    config = parse(example.split("```", 1)[0])
    assert isinstance(config.tasks["web"].cwd, Pick)


def test_the_readme_example_of_nested_conditionals_loads() -> None:
    readme = (REPO / "README.md").read_text()
    example = readme.split("The same holds below the task level", 1)[1].split("```yaml\n", 1)[1]
    config = parse(example.split("```", 1)[0])
    app = config.tasks["app"]
    assert app.requires == ("db", {"CANARY": "metrics"})
    assert app.events[0].signal == Pick({"CANARY": 10, "STEADY": 1})
    assert isinstance(app.onexit[0].task, Pick)
