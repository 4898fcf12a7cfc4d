"""The roles file: one role per line, optional `name=value`, comments and odd input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskforce.config.errors import ConfigError, Mark
from taskforce.config.roles import Roles, parse_roles


def problems_of(text: str | bytes) -> list[tuple[Mark | None, str]]:
    with pytest.raises(ConfigError) as caught:
        parse_roles(text, "roles.conf")
    assert all(p.source == "roles.conf" and p.path == "" for p in caught.value.problems)
    return [(p.mark, p.message) for p in caught.value.problems]


def test_one_role_per_line_in_file_order_without_repeats() -> None:
    roles = parse_roles("web\ndb\nweb\napp\n", "roles.conf")
    assert roles == Roles(("web", "db", "app"))
    assert "db" in roles
    assert "cache" not in roles


def test_blank_and_comment_lines_are_ignored() -> None:
    text = "\n# the roles of this host\n   \n  # indented comment\nweb\n\t\n"
    assert parse_roles(text, "r").names == ("web",)


def test_trailing_comment_on_a_name_line_is_stripped() -> None:
    assert parse_roles("web   # front end\ndb\t# data\n", "r").names == ("web", "db")


def test_whitespace_around_names_is_stripped() -> None:
    assert parse_roles("  web  \n\tdb\t\n", "r").names == ("web", "db")


def test_name_value_sets_a_role_value_kept_verbatim() -> None:
    roles = parse_roles("db = /srv/db # not a comment \nweb\n", "r")
    assert roles.names == ("db", "web")
    assert roles.values == {"db": " /srv/db # not a comment "}


def test_a_value_may_hold_equals_signs_and_be_empty() -> None:
    roles = parse_roles("opts=a=1,b=2\nempty=\n", "r")
    assert roles.values == {"opts": "a=1,b=2", "empty": ""}


def test_crlf_line_endings_do_not_leak_into_values() -> None:
    roles = parse_roles("web=front\r\ndb\r\n", "r")
    assert roles.names == ("web", "db")
    assert roles.values == {"web": "front"}


def test_no_final_newline() -> None:
    assert parse_roles("web\ndb=x", "r") == Roles(("web", "db"), {"db": "x"})


def test_empty_file_means_no_role_active() -> None:
    assert parse_roles("", "r") == Roles(())
    assert parse_roles(b"", "r") == Roles(())
    assert parse_roles("# nothing here\n\n", "r") == Roles(())


def test_the_same_value_twice_is_fine_two_different_values_are_not() -> None:
    assert parse_roles("db=1\ndb=1\n", "r").values == {"db": "1"}
    assert problems_of("db=1\n db=2\n") == [(Mark(2, 2), "role 'db' is given two different values")]


def test_utf8_bytes_and_a_byte_order_mark_are_accepted() -> None:
    roles = parse_roles("\ufeffcafé=crème\n".encode(), "r")
    assert roles == Roles(("café",), {"café": "crème"})


def test_inner_whitespace_is_reported_where_it_is() -> None:
    assert problems_of("web\n  front end\n") == [
        (Mark(2, 8), "role name 'front end' contains whitespace: write one role per line")
    ]


def test_control_characters_in_a_name_are_reported() -> None:
    [(mark, message)] = problems_of("we\x07b\n")
    assert mark == Mark(1, 3)
    assert "U+0007" in message


def test_invalid_utf8_is_reported_with_its_position() -> None:
    assert problems_of(b"web\nd\xffb\n") == [(Mark(2, 2), "invalid UTF-8 byte 0xFF")]


def test_invalid_utf8_in_a_value_is_reported_too() -> None:
    assert problems_of(b"db=\xc3(\n") == [(Mark(1, 4), "invalid UTF-8 byte 0xC3")]


def test_a_missing_name_is_reported() -> None:
    assert problems_of("=value\n") == [(Mark(1, 1), "a role name is missing before '='")]


def test_nul_in_a_value_is_reported() -> None:
    assert problems_of("db=a\0b\n") == [(Mark(1, 5), "a role value cannot hold a NUL")]


def test_every_problem_is_reported_at_once() -> None:
    marks = [mark for mark, _ in problems_of("a b\nok\nc d\n\xff\n".encode("latin-1"))]
    assert marks == [Mark(1, 2), Mark(3, 2), Mark(4, 1)]


def test_a_huge_line_is_reported_briefly() -> None:
    [(mark, message)] = problems_of("x" * 1_000_000 + " y\n")
    assert mark == Mark(1, 1_000_001)
    assert len(message) < 200


def test_roles_are_hashable_and_compare_by_value() -> None:
    assert hash(Roles(("a",), {"a": "1"})) == hash(Roles(("a",), {"a": "1"}))
    assert Roles(("a",), {"a": "1"}) != Roles(("a",), {"a": "2"})


@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_roles_or_a_config_error(data: bytes) -> None:
    try:
        roles = parse_roles(data, "r")
    except ConfigError as err:
        assert err.problems
    else:
        for name in roles.names:
            assert name and name == name.strip() and name.isprintable()


@given(st.text(max_size=300))
def test_arbitrary_text_gives_roles_or_a_config_error(text: str) -> None:
    try:
        parse_roles(text, "r")
    except ConfigError as err:
        assert err.problems
