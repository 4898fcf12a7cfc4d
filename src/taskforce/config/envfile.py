"""Environment files (`env_file`): the dotenv format, read into a map of variables.

The format is the one python-dotenv, docker compose and systemd's EnvironmentFile= share:

* ``KEY=VALUE``, optionally preceded by ``export``; blank lines and ``#`` comments;
* an unquoted value ends at the end of the line (a `` #`` after whitespace starts a
  comment), surrounding whitespace removed;
* a value in single quotes is taken as written (``\\'`` and ``\\\\`` are the only escapes);
* a value in double quotes knows the escapes ``\\n \\t \\r \\\\ \\" \\' \\a \\b \\f \\v``;
* a quoted value may span lines; after the closing quote only a comment may follow.

Values are literal: there is no ``${VAR}`` expansion, as for the environment taskforce
starts with (``{NAME}`` in the configuration sees the variables, not the other way round).

python-dotenv itself is not used: importing its parser brings in its whole package
(tempfile, shutil, bz2, lzma...), 1.6 MB of resident memory measured here, which the
daemon's memory budget cannot spare; the grammar fits in this module.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from taskforce.config.errors import ConfigError, Mark, Problem

_BLANK = re.compile(r"[ \t]*(?:#[^\r\n]*)?(?:\r\n|\n|\r|$)")
_EXPORT = re.compile(r"export[ \t]+")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_EQUALS = re.compile(r"[ \t]*=[ \t]*")
_SINGLE = re.compile(r"'((?:\\.|[^'\\])*)'", re.DOTALL)
_DOUBLE = re.compile(r'"((?:\\.|[^"\\])*)"', re.DOTALL)
_UNQUOTED = re.compile(r"[^\r\n]*")
_SPACE_COMMENT = re.compile(r"[ \t]+#")
_END = re.compile(r"[ \t]*(?:#[^\r\n]*)?(?:\r\n|\n|\r|$)")
_DOUBLE_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "\\": "\\",
    '"': '"',
    "'": "'",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
}
_DOUBLE_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_SINGLE_ESCAPE = re.compile(r"\\([\\'])")


def parse_env(text: str, source: str) -> dict[str, str]:
    """The variables of environment file `text` (named `source` in problems), later lines
    winning; ConfigError listing every line that is not understood."""
    values: dict[str, str] = {}
    problems: list[Problem] = []
    for item in _statements(text):
        if isinstance(item, Problem):
            problems.append(Problem(source, item.mark, item.path, item.message))
        else:
            key, value = item
            values[key] = value
    if problems:
        raise ConfigError(problems)
    return values


def _statements(text: str) -> Iterator[tuple[str, str] | Problem]:
    text = text.removeprefix("\ufeff")
    at = 0
    size = len(text)
    while at < size:
        blank = _BLANK.match(text, at)
        if blank is not None and blank.end() > at:
            at = blank.end()
            continue
        start = at
        while text[at] in " \t":
            at += 1
        export = _EXPORT.match(text, at)
        if export is not None and _KEY.match(text, export.end()):
            at = export.end()
        key = _KEY.match(text, at)
        equals = _EQUALS.match(text, key.end()) if key is not None else None
        if key is None or equals is None:
            if key is None:
                yield _problem(text, at, "expected KEY=VALUE (a name, '=', a value)")
            else:
                yield _problem(text, key.end(), f"expected '=' after the name {key[0]!r}")
            at = _next_line(text, start)
            continue
        at = equals.end()
        value, at, error = _value(text, at)
        if error is not None:
            yield _problem(text, at, error)
            at = _next_line(text, at)
            continue
        if "\0" in value:
            yield _problem(text, equals.end(), f"{key[0]} cannot hold a NUL character")
        else:
            yield key[0], value


def _value(text: str, at: int) -> tuple[str, int, str | None]:
    """The value starting at `at`, where the statement ends, and what is wrong if it is
    malformed."""
    quote = text[at : at + 1]
    if quote in ("'", '"'):
        found = (_SINGLE if quote == "'" else _DOUBLE).match(text, at)
        if found is None:
            return "", at, f"the value's opening {quote} is never closed"
        end = _END.match(text, found.end())
        if end is None:
            return "", found.end(), "only a comment may follow a quoted value"
        if quote == "'":
            return _SINGLE_ESCAPE.sub(r"\1", found[1]), end.end(), None
        return _DOUBLE_ESCAPE.sub(_double_escape, found[1]), end.end(), None
    line = _UNQUOTED.match(text, at)
    assert line is not None  # matches the empty string too
    value = line[0]
    comment = _SPACE_COMMENT.search(value)
    if comment is not None:
        value = value[: comment.start()]
    elif value.startswith("#"):
        value = ""
    return value.strip(" \t"), _next_line(text, at), None


def _double_escape(match: re.Match[str]) -> str:
    return _DOUBLE_ESCAPES.get(match[1], match[0])


def _next_line(text: str, at: int) -> int:
    end = _UNQUOTED.match(text, at)
    assert end is not None
    at = end.end()
    if text.startswith("\r\n", at):
        return at + 2
    return at + 1 if at < len(text) else at


def _problem(text: str, at: int, message: str) -> Problem:
    before = text[:at]
    lines = re.split("\r\n|\n|\r", before)
    return Problem("", Mark(len(lines), len(lines[-1]) + 1), "", message)
