"""The roles file: the roles this host plays, one per line.

A line is a role name, optionally followed by ``=value``; the value becomes the context
entry ``Task_role_<name>``. Blank lines and lines starting with ``#`` are ignored, and on
a line without ``=`` a ``#`` after whitespace starts a comment. A value is everything
after the first ``=`` up to the end of the line, kept as written (comments included), so
that any text can be passed to tasks.

Role processing can be off altogether (no roles file): callers represent that by
``None`` instead of a :class:`Roles`. An empty file is ``Roles(())``: no role is active.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from taskforce.config.errors import ConfigError, Mark, Problem

# A trailing comment on a name-only line: "web   # the front end".
_COMMENT = re.compile(r"\s#")
# Lone surrogates: bytes that were not UTF-8 (decoded with surrogateescape) or a str
# that cannot be encoded. Neither can reach a process environment.
_SURROGATE = re.compile("[\ud800-\udfff]")
_SHOW_MAX = 40


@dataclass(frozen=True, slots=True)
class Roles:
    """The active roles, in file order without repeats, and the values some of them set."""

    names: tuple[str, ...] = ()
    # Role name -> value, for roles written as `name=value`. Not part of the hash (a dict
    # is not hashable); equal objects still hash equal since `names` is compared too.
    values: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __contains__(self, name: object) -> bool:
        return name in self.names


class _LineError(Exception):
    def __init__(self, column: int, message: str) -> None:
        super().__init__(message)
        self.column = column
        self.message = message


def parse_roles(text: str | bytes, source: str) -> Roles:
    """Parse the contents of a roles file; raise :class:`ConfigError` listing every problem.

    Bytes are decoded as UTF-8; an invalid byte is reported with its line and column.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="surrogateescape")
    text = text.removeprefix("\ufeff")  # a BOM left by some editors
    names: dict[str, None] = {}  # an ordered set
    values: dict[str, str] = {}
    problems: list[Problem] = []
    # Only "\n" ends a line: str.splitlines() would also split on \v, \f, U+2028...,
    # which would cut a value short instead of keeping it verbatim.
    for number, line in enumerate(text.split("\n"), start=1):
        try:
            entry = _parse_line(line.removesuffix("\r"))
            if entry is not None:
                _add(entry, names, values)
        except _LineError as err:
            problems.append(Problem(source, Mark(number, err.column), "", err.message))
    if problems:
        raise ConfigError(problems)
    return Roles(tuple(names), values)


def _parse_line(line: str) -> tuple[str, str | None, int] | None:
    """(name, value or None, column of the name), or None for a blank or comment line."""
    odd = _SURROGATE.search(line)
    if odd is not None:
        raise _LineError(odd.start() + 1, _undecodable(odd.group()))
    stripped = line.lstrip()
    if not stripped or stripped.startswith("#"):
        return None
    value: str | None = None
    if "=" in line:
        raw_name, value = line.split("=", 1)
    else:
        comment = _COMMENT.search(line)
        raw_name = line if comment is None else line[: comment.start()]
    column = len(raw_name) - len(raw_name.lstrip()) + 1
    name = raw_name.strip()
    _check_name(name, column)
    if value is not None and "\0" in value:
        raise _LineError(len(raw_name) + 2 + value.index("\0"), "a role value cannot hold a NUL")
    return name, value, column


def _check_name(name: str, column: int) -> None:
    if not name:
        raise _LineError(column, "a role name is missing before '='")
    for offset, char in enumerate(name):
        if char.isspace():
            raise _LineError(
                column + offset,
                f"role name {_show(name)} contains whitespace: write one role per line",
            )
        if not char.isprintable():
            raise _LineError(
                column + offset,
                f"role name {_show(name)} contains the control character U+{ord(char):04X}",
            )


def _add(
    entry: tuple[str, str | None, int], names: dict[str, None], values: dict[str, str]
) -> None:
    name, value, column = entry
    names[name] = None
    if value is None:
        return
    previous = values.setdefault(name, value)
    if previous != value:
        # Two values for one role would make the context depend on line order.
        raise _LineError(column, f"role {_show(name)} is given two different values")


def _undecodable(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape's image of one undecodable byte
        return f"invalid UTF-8 byte 0x{code - 0xDC00:02X}"
    return f"invalid character U+{code:04X}"


def _show(name: str) -> str:
    """Quote a name for a message, cut short: a roles file line can be huge."""
    if len(name) > _SHOW_MAX:
        return repr(name[:_SHOW_MAX] + "...")
    return repr(name)
