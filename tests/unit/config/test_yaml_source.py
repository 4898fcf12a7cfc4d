"""Loading configuration text: YAML 1.2 core scalars, positions, duplicate keys, errors."""

from __future__ import annotations

import math

import pytest

from taskforce.config.errors import ConfigError, Mark
from taskforce.config.yaml_source import HAVE_LIBYAML, Document, load_document

# Every test runs with both parsers: they must agree on data and positions.
LOADERS = [
    pytest.param(
        True, id="libyaml", marks=pytest.mark.skipif(not HAVE_LIBYAML, reason="no libyaml")
    ),
    pytest.param(False, id="pure-python"),
]


@pytest.fixture(params=LOADERS)
def use_libyaml(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def load(text: str, use_libyaml: bool) -> Document:
    return load_document(text, "t.conf", use_libyaml=use_libyaml)


def problems(text: str, use_libyaml: bool) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(text, use_libyaml)
    return [str(problem) for problem in caught.value.problems]


def value(scalar: str, use_libyaml: bool) -> object:
    return load(f"v: {scalar}\n", use_libyaml).data["v"]


# --- styles -------------------------------------------------------------------------------


def test_flow_style_with_comments_quotes_and_trailing_commas(use_libyaml: bool) -> None:
    text = """
    {
        # a comment
        'tasks': {
            "sshd": { 'commands': { "start": [ "/usr/sbin/sshd", "-D", ], }, },  # trailing
        },
    }
    """
    assert load(text, use_libyaml).data == {
        "tasks": {"sshd": {"commands": {"start": ["/usr/sbin/sshd", "-D"]}}}
    }


def test_block_style(use_libyaml: bool) -> None:
    text = "tasks:\n  sshd:\n    control: wait\n    commands:\n      start:\n        - sshd\n"
    assert load(text, use_libyaml).data == {
        "tasks": {"sshd": {"control": "wait", "commands": {"start": ["sshd"]}}}
    }


def test_plain_json(use_libyaml: bool) -> None:
    text = '{"tasks":{"a":{"count":2,"start_delay":0.5,"x":null,"y":true,"z":[]}}}'
    assert load(text, use_libyaml).data == {
        "tasks": {"a": {"count": 2, "start_delay": 0.5, "x": None, "y": True, "z": []}}
    }


@pytest.mark.skipif(not HAVE_LIBYAML, reason="no libyaml")
def test_tab_indented_json_loads_with_libyaml() -> None:
    text = '{\n\t"tasks": {\n\t\t"a": {"count": 1}\n\t}\n}\n'
    assert load(text, True).data == {"tasks": {"a": {"count": 1}}}


def test_json_unicode_escapes(use_libyaml: bool) -> None:
    assert load('{"A": "caf\\u00e9"}', use_libyaml).data == {"A": "café"}


def test_json_surrogate_pair_escapes_are_rejected_by_both_parsers(use_libyaml: bool) -> None:
    # YAML escapes name code points; JSON's UTF-16 pairs (an emoji, say) are not YAML.
    (problem,) = problems('{"A": "\\ud83d\\ude00"}', use_libyaml)
    assert problem.startswith("t.conf:1:")


def test_anchors_and_aliases_are_copied(use_libyaml: bool) -> None:
    text = "base: &cmd [prog, -v]\nother: *cmd\n"
    assert load(text, use_libyaml).data == {"base": ["prog", "-v"], "other": ["prog", "-v"]}


# --- YAML 1.2 core schema scalars ------------------------------------------------------------


@pytest.mark.parametrize(
    ("scalar", "expected"),
    [
        # YAML 1.1 booleans stay strings: `control: off` means the control named off.
        ("off", "off"),
        ("on", "on"),
        ("yes", "yes"),
        ("no", "no"),
        ("y", "y"),
        ("n", "n"),
        ("Off", "Off"),
        ("true", True),
        ("True", True),
        ("TRUE", True),
        ("false", False),
        ("FALSE", False),
        ("tRue", "tRue"),
        # No sexagesimal numbers, and 0755 is decimal.
        ("1:30", "1:30"),
        ("0755", 755),
        ("0o755", 0o755),
        ("0x1F", 31),
        ("+12", 12),
        ("-3", -3),
        ("1_000", "1_000"),
        ("0b101", "0b101"),
        ("1.5", 1.5),
        ("-1.5e3", -1500.0),
        ("1e3", 1000.0),
        (".5", 0.5),
        ("1.", 1.0),
        (".inf", math.inf),
        ("-.INF", -math.inf),
        ("+.Inf", math.inf),
        ("~", None),
        ("null", None),
        ("NULL", None),
        ("", None),
        ("nil", "nil"),
        ("2001-12-14", "2001-12-14"),
        ("'012'", "012"),
        ('"true"', "true"),
        ("'off'", "off"),
        ("!!str 12", "12"),
        ("!!int '12'", 12),
        ("!!float 1", 1.0),
        ("!!bool 'false'", False),
    ],
)
def test_core_schema_scalars(scalar: str, expected: object, use_libyaml: bool) -> None:
    loaded = value(scalar, use_libyaml)
    assert loaded == expected
    assert type(loaded) is type(expected)


def test_nan(use_libyaml: bool) -> None:
    loaded = value(".nan", use_libyaml)
    assert isinstance(loaded, float)
    assert math.isnan(loaded)


def test_bad_explicit_tags_are_problems(use_libyaml: bool) -> None:
    text = "a: !foo x\nb: !!int abc\nc: !!set {x}\nd: !!float 1_0\n"
    assert problems(text, use_libyaml) == [
        "t.conf:1:4: a: unsupported tag '!foo'",
        "t.conf:2:4: b: 'abc' is not a valid integer",
        "t.conf:3:4: c: unsupported tag '!!set' on a map",
        "t.conf:4:4: d: '1_0' is not a valid number",
    ]


# --- positions ------------------------------------------------------------------------------


POSITIONS_TEXT = """\
{
  "tasks": {
    "ntpd": {
      "events": [
        { "type": "self",
          "command": "stop" }
      ]
    }
  }
}
"""


def test_value_and_key_positions(use_libyaml: bool) -> None:
    document = load(POSITIONS_TEXT, use_libyaml)
    assert document.mark_of(()) == Mark(1, 1)
    assert document.mark_of(("tasks", "ntpd")) == Mark(3, 13)
    assert document.key_mark_of(("tasks", "ntpd")) == Mark(3, 5)
    assert document.mark_of(("tasks", "ntpd", "events", 0)) == Mark(5, 9)
    assert document.mark_of(("tasks", "ntpd", "events", 0, "command")) == Mark(6, 22)
    assert document.key_mark_of(("tasks", "ntpd", "events", 0, "command")) == Mark(6, 11)


@pytest.mark.parametrize(
    "text",
    [
        POSITIONS_TEXT,
        "tasks:\n  a:\n    commands: {start: [prog, -v]}\n    count: 2\n",
        'x: &a [p, {"A": "a"}]\ny: *a\nz: ["-l": "{L}", k]\n',
        "\ufeff# comment\r\ntasks:\r\n  \u00e9: {commands: {start: [\u00fc]}}\r\n",
    ],
)
def test_positions_read_when_needed_are_those_read_while_loading(
    text: str, use_libyaml: bool
) -> None:
    lazy = load_document(text, "t.conf", use_libyaml=use_libyaml)
    eager = load_document(text, "t.conf", use_libyaml=use_libyaml, fast=False)
    assert repr(lazy.data) == repr(eager.data)
    assert lazy.value_marks == eager.value_marks
    assert lazy.key_marks == eager.key_marks


def test_positions_fall_back_to_the_nearest_ancestor(use_libyaml: bool) -> None:
    document = load(POSITIONS_TEXT, use_libyaml)
    missing = ("tasks", "ntpd", "events", 0, "signal", 3)
    assert document.mark_of(missing) == Mark(5, 9)
    # A list item has no key: its key position is its value position.
    assert document.key_mark_of(("tasks", "ntpd", "events", 0)) == Mark(5, 9)
    assert document.mark_of(("nothing", "here")) == Mark(1, 1)


def test_positions_count_characters_not_bytes(use_libyaml: bool) -> None:
    document = load('{"é€": ["ü", "x"]}', use_libyaml)
    assert document.mark_of(("é€", 1)) == Mark(1, 14)


def test_a_byte_order_mark_is_not_a_column(use_libyaml: bool) -> None:
    document = load('\ufeff{"x": [{"A": "a"}]}', use_libyaml)
    assert document.data == {"x": [{"A": "a"}]}
    assert document.mark_of(("x", 0)) == Mark(1, 8)


def test_get_walks_the_raw_data(use_libyaml: bool) -> None:
    document = load(POSITIONS_TEXT, use_libyaml)
    assert document.get(("tasks", "ntpd", "events", 0, "type")) == "self"
    assert document.get(("tasks", "ntpd", "events", 5)) is None
    assert document.get(("tasks", 0)) is None


# --- the compact pair quirk -----------------------------------------------------------------


def test_compact_pair_in_a_flow_sequence_is_two_items(use_libyaml: bool) -> None:
    document = load('{"LOGFILE": ["-l": "{LOGFILE}", "-v"]}', use_libyaml)
    assert document.data == {"LOGFILE": ["-l", "{LOGFILE}", "-v"]}
    assert document.mark_of(("LOGFILE", 0)) == Mark(1, 14)
    assert document.mark_of(("LOGFILE", 1)) == Mark(1, 20)
    assert document.mark_of(("LOGFILE", 2)) == Mark(1, 33)


def test_pair_with_braces_stays_a_conditional_map(use_libyaml: bool) -> None:
    assert load('{"x": [{"A": "a"}, { "B": "b" }]}', use_libyaml).data == {
        "x": [{"A": "a"}, {"B": "b"}]
    }


def test_block_sequence_pair_stays_a_map(use_libyaml: bool) -> None:
    assert load("x:\n  - A: a\n", use_libyaml).data == {"x": [{"A": "a"}]}


def test_spec_nested_conditional_with_compact_pair(use_libyaml: bool) -> None:
    text = """
    "start": [
        "{Task_name}",
            {"DEBUG": [
                "-d", "{DEBUG}",
                {"LOGFILE": ["-l": "{LOGFILE}"]}
            ]},
            "-p", "{Task_pidfile}"
    ]
    """
    assert load(text, use_libyaml).data == {
        "start": [
            "{Task_name}",
            {"DEBUG": ["-d", "{DEBUG}", {"LOGFILE": ["-l", "{LOGFILE}"]}]},
            "-p",
            "{Task_pidfile}",
        ]
    }


# --- problems -------------------------------------------------------------------------------


def test_duplicate_keys_name_both_places(use_libyaml: bool) -> None:
    text = "a: 1\nb: {c: 1, c: 2}\na: 3\n"
    assert problems(text, use_libyaml) == [
        "t.conf:2:11: b.c: duplicate key 'c' (first written at line 2, column 5)",
        "t.conf:3:1: a: duplicate key 'a' (first written at line 1, column 1)",
    ]


def test_duplicate_keys_in_json(use_libyaml: bool) -> None:
    assert problems('{"tasks": {"a": {}, "a": {}}}', use_libyaml) == [
        "t.conf:1:21: tasks.a: duplicate key 'a' (first written at line 1, column 12)"
    ]


def test_keys_must_be_strings(use_libyaml: bool) -> None:
    assert problems("{1: a, null: b, [x]: c, '2': d}\n", use_libyaml) == [
        "t.conf:1:2: keys must be strings; quote the key if you mean the text '1'",
        "t.conf:1:8: keys must be strings; quote the key if you mean the text 'null'",
        "t.conf:1:17: keys must be strings, not lists or maps",
    ]


NOT_A_MAP = "the configuration must be a map with keys such as 'tasks'"
TWO_DOCUMENTS = "the file holds more than one YAML document; expected a single one"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "t.conf:1:1: the configuration is empty"),
        ("# only a comment\n", "t.conf:1:1: the configuration is empty"),
        ("- a\n", f"t.conf:1:1: {NOT_A_MAP}, not a list"),
        ("hello\n", f"t.conf:1:1: {NOT_A_MAP}, not a single value"),
        ("a: 1\n---\nb: 2\n", f"t.conf:2:1: {TWO_DOCUMENTS}"),
        ("a: 'x\x07'\n", "t.conf:1:6: the character '\\x07' is not allowed in YAML"),
        ("é: 'x\x07'\n", "t.conf:1:6: the character '\\x07' is not allowed in YAML"),
        ("a: &x [1, *x]\n", "t.conf:1:4: a[1]: an alias refers to a value that contains it"),
    ],
)
def test_document_problems(text: str, expected: str, use_libyaml: bool) -> None:
    assert problems(text, use_libyaml) == [expected]


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ('{\n  "a": 1\n  "b": 2\n}\n', "t.conf:3:6: ", "expected ',' or '}'"),
        ('{\n  "tasks": {\n    "x": [1, 2\n  }\n', "t.conf:4:3: ", "expected ',' or ']'"),
        ('{"a": 1,, }', "t.conf:1:9: ", "node content"),
        ("a:\n\t- b\n", "t.conf:2:1: ", "cannot start any token"),
        ("a: *nope\n", "t.conf:1:4: ", "found undefined alias"),
    ],
)
def test_malformed_yaml_is_one_positioned_problem(
    text: str, where: str, what: str, use_libyaml: bool
) -> None:
    (problem,) = problems(text, use_libyaml)
    assert problem.startswith(where)
    assert what in problem


def test_malformed_yaml_names_where_the_construct_opened(use_libyaml: bool) -> None:
    (problem,) = problems('{\n  "a": 1\n  "b": 2\n}\n', use_libyaml)
    assert problem.endswith("(while parsing a flow mapping at line 1, column 1)")


def test_pure_python_message_is_pyyamls_problem_text() -> None:
    (problem,) = problems('{"a": 1 "b": 2}', False)
    assert problem.startswith("t.conf:1:12: expected ',' or '}', but got ':'")
