"""Environment files: the dotenv syntax, its quoting, and errors with their place."""

from __future__ import annotations

import pytest

from taskforce.config.envfile import parse_env
from taskforce.config.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A=1\nB=two\n", {"A": "1", "B": "two"}),
        ("export A=1\n", {"A": "1"}),
        ("  export   A = spaced out  \n", {"A": "spaced out"}),
        ("# a comment\n\n   \nA=1 # trailing comment\n", {"A": "1"}),
        ("A=no#comment\n", {"A": "no#comment"}),
        ("A=\n", {"A": ""}),
        ("A=#only a comment\n", {"A": ""}),
        ("A='single $quoted \\n'\n", {"A": "single $quoted \\n"}),
        ("A='it\\'s'\n", {"A": "it's"}),
        ('A="tab\\tnew\\nline \\"q\\" \\\\ \\$x"\n', {"A": 'tab\tnew\nline "q" \\ \\$x'}),
        ('A="# not a comment" # a comment\n', {"A": "# not a comment"}),
        ('A="first\nsecond"\nB=3\n', {"A": "first\nsecond", "B": "3"}),
        ("A='{NAME} and ${HOME} stay'\n", {"A": "{NAME} and ${HOME} stay"}),
        ("A=1\r\nB=2\r\n", {"A": "1", "B": "2"}),
        ("A=1\nA=2\n", {"A": "2"}),
        ("\ufeffA=1", {"A": "1"}),
        ("export=1\n", {"export": "1"}),
        ("A.b-c=1\n", {"A.b-c": "1"}),
        ("A=a = b\n", {"A": "a = b"}),
        ("", {}),
    ],
)
def test_values(text: str, expected: dict[str, str]) -> None:
    assert parse_env(text, "app.env") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A=1\nnot a line\n", "app.env:2:4: expected '=' after the name 'not'"),
        ("A\n", "app.env:1:2: expected '=' after the name 'A'"),
        ("1A=x\n", "app.env:1:1: expected KEY=VALUE (a name, '=', a value)"),
        ("A=1\nB='never closed\n", "app.env:2:3: the value's opening ' is never closed"),
        ('A="x" y\n', "app.env:1:6: only a comment may follow a quoted value"),
        ('A="\\0"\nB=1\n', ""),  # \0 is no escape: kept as written
    ],
)
def test_problems_name_their_place(text: str, expected: str) -> None:
    if not expected:
        assert parse_env(text, "app.env")["A"] == "\\0"
        return
    with pytest.raises(ConfigError) as raised:
        parse_env(text, "app.env")
    assert [str(p) for p in raised.value.problems] == [expected]


def test_every_bad_line_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_env("bad one\nA=1\nbad two\n", "x.env")
    assert [p.mark.line for p in raised.value.problems if p.mark] == [1, 3]
