"""The plain JSON fast path: whatever it accepts, the YAML loader reads the same way."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from taskforce.config.errors import ConfigError, Mark
from taskforce.config.json_fast import Known, load_json
from taskforce.config.yaml_source import HAVE_LIBYAML, MAX_DEPTH, Document, load_document

pytestmark = pytest.mark.skipif(not HAVE_LIBYAML, reason="the fast path stands in for libyaml")

# Characters where JSON and YAML part ways, with ordinary ones.
_ODD = (
    "\t\n\r\x00\x1f\x7f\x85\x9f\xa0\u2028\u2029\ufeff\ufffe\uffff\ud83d\U0001f600"
    "\"\\/{}[]:,#&*!|>'%@`"
)
TEXT = st.text(max_size=12) | st.text(alphabet=st.sampled_from(_ODD) | st.characters(), max_size=6)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | TEXT
    | st.integers(min_value=10**990, max_value=10**1010)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)
DOCUMENTS = st.dictionaries(TEXT, VALUES, max_size=5)


def _yaml(text: str) -> Document | None:
    try:
        return load_document(text, "t.conf", use_libyaml=True, fast=False)
    except ConfigError:
        return None


def _agrees(text: str) -> None:
    """The fast path gives up, or gives exactly the data and positions of libyaml."""
    fast = load_json(text.removeprefix("\ufeff"), MAX_DEPTH)
    if fast is None:
        return
    full = _yaml(text)
    assert full is not None, "the fast path accepted what the YAML loader refuses"
    assert repr(fast) == repr(full.data)  # repr: 1, 1.0 and True are all different
    lazy = load_document(text, "t.conf")
    assert lazy.value_marks == full.value_marks
    assert lazy.key_marks == full.key_marks


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    DOCUMENTS,
    st.sampled_from([None, 0, 1, 4]),
    st.booleans(),
    st.sampled_from([(", ", ": "), (",", ":"), (" , ", " : ")]),
)
def test_generated_json_loads_as_yaml_does(
    document: dict[str, Any], indent: int | None, ascii_only: bool, separators: tuple[str, str]
) -> None:
    text = json.dumps(document, indent=indent, ensure_ascii=ascii_only, separators=separators)
    _agrees(text)


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "a": 2}',  # duplicate keys: YAML reports them
        '{"a": {"b": ": x", "b": 2}}',
        '{"a": {"b": "\\": x", "b": 2}}',
        '{"a": NaN}',
        '{"a": -Infinity}',
        '{"a"\n: 1}',  # an implicit key's colon must be on its line
        '{"a"\r: 1}',
        '{"a"\r\n  : 1}',
        '{"a"' + " " * 1100 + ": 1}",
        '{"' + "k" * 1100 + '": 1}',
        '{"a": "\\ud83d\\ude00"}',  # libyaml refuses escapes of surrogates
        '{"a": "x\u2028y"}',  # a line break to YAML, folded to a space
        '{"a": "\x85"}',
        '{"a": "\x7f"}',
        '{"a":\t1}',
        '{"a": 1' + "0" * 1001 + "}",
        '{"a": ' + "[" * MAX_DEPTH + "1" + "]" * MAX_DEPTH + "}",
        '["a"]',
        "",
        "{}  # a comment",
        '{"a": 1,}',
    ],
)
def test_gives_way_where_yaml_may_differ(text: str) -> None:
    assert load_json(text, MAX_DEPTH) is None


@example('{"a": ' + "[" * (MAX_DEPTH - 1) + "1" + "]" * (MAX_DEPTH - 1) + "}")
@example('{"a": "\\u0000\\/\\b\\f\\n\\r\\t\\"\\\\"}')
@example('{\r\n "a" : [1, 2.5e3, -0, -0.0, 1E400, true, false, null, ""]\r\n}\r\n')
@example('\ufeff{"é€": ["ü", {"x": {}}]}')
@given(st.just("{}"))
def test_examples_load_as_yaml_does(text: str) -> None:
    assert load_json(text.removeprefix("\ufeff"), MAX_DEPTH) is not None
    _agrees(text)


TASKS = st.dictionaries(st.sampled_from(["a", "b", "c"]), VALUES, max_size=3)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(TASKS, st.sampled_from([None, 1])), min_size=1, max_size=4))
def test_a_text_loads_the_same_after_others_of_its_file(
    versions: list[tuple[dict[str, Any], int | None]],
) -> None:
    """What was learnt from earlier texts (equal task entries) changes nothing."""
    known = Known()
    for tasks, indent in versions:
        text = json.dumps({"tasks": tasks}, indent=indent)
        assert repr(load_json(text, MAX_DEPTH, known)) == repr(load_json(text, MAX_DEPTH))
        _agrees(text)


@pytest.mark.parametrize(
    "text",
    [
        '{"tasks": {"a": {"x": 0, "x": 1}}}',  # equal to before once loaded: written twice
        '{"tasks": {"a": {"x": 1}, "a": {"x": 1}}}',
        '{"tasks": {"a": {"x": 1}}, "tasks": {"a": {"x": 1}}}',
        '{"tasks": {"a": {"x": 1}, "b": {"y": "\\": z", "y": 2}}}',
        '{"tasks": {"a": [], "b": {"y": 1, "y": 2}}}',  # one key fewer, one twice
        '{"tasks": {"a": ' + "[" * MAX_DEPTH + "1" + "]" * MAX_DEPTH + "}}",
    ],
)
def test_an_earlier_text_hides_no_mistake(text: str) -> None:
    known = Known()
    assert load_json('{"tasks": {"a": {"x": 1}, "b": {"y": 2}}}', MAX_DEPTH, known)
    assert load_json(text, MAX_DEPTH, known) is None


def test_positions_of_a_fast_document_are_found_when_needed() -> None:
    document = load_document('{\n "tasks": {\n  "a": {"count": "x"}\n }\n}\n', "t.conf")
    assert document.mark_of(("tasks", "a", "count")) == Mark(3, 18)
    assert document.key_mark_of(("tasks", "a")) == Mark(3, 3)
