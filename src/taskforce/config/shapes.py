# Over 450 lines: one job, the value shapes every key is declared with (check and describe).
"""Declarative shapes of configuration values: one description, two uses.

A shape checks a loaded value, reporting every problem with its position and converting the
value to the type the model wants, and renders itself as JSON Schema. Validation
(:mod:`taskforce.config.validate`) and the published schema (:mod:`taskforce.config.schema`)
are both read off the same shapes, so they cannot drift apart.

This module holds the machinery and the single-value shapes; lists, maps and records of
fixed keys are in :mod:`taskforce.config.shapes_compound`.
"""

from __future__ import annotations

import marshal
import math
import re
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeGuard, TypeVar, cast

from taskforce.config.errors import Problem, format_path
from taskforce.config.model import MARSHAL_VERSION, Pick, Value
from taskforce.config.yaml_source import Document, Path

T = TypeVar("T")
E = TypeVar("E", bound=StrEnum)
JsonSchema = dict[str, Any]
# Named schemas shared by reference (`#/$defs/NAME`), filled in as shapes render.
Defs = dict[str, JsonSchema]


class Invalid:
    """The type of INVALID: what checking a value with (already reported) problems gives."""

    def __repr__(self) -> str:
        return "INVALID"


INVALID = Invalid()


class Memo:
    """Results of checks that found no problem, kept from one validation to the next.

    Entries are keyed by path and by the exact value checked, serialized so that (unlike
    with ``==``) 1, 1.0 and True differ. Only the entries a validation used or made are
    kept for the next one, so those of removed tasks go away.
    """

    def __init__(self) -> None:
        self._previous: dict[tuple[Path, bytes], object] = {}
        self._current: dict[tuple[Path, bytes], object] = {}
        # Values already serialized by the caller, by id (alive while it checks them): the
        # memo's keys then share those bytes instead of holding a copy (a task entry's
        # are kept by the composer too: 150 bytes a task).
        self.serialized: Mapping[int, bytes] = {}

    def dumps(self, value: Any) -> bytes:
        """`value` as the memo's keys write it; ValueError if it is not plain data."""
        found = self.serialized.get(id(value))
        return found if found is not None else marshal.dumps(value, MARSHAL_VERSION)

    def get(self, key: tuple[Path, bytes]) -> object | None:
        found = self._previous.get(key)
        if found is not None:
            self._current[key] = found
        return found

    def put(self, key: tuple[Path, bytes], result: object) -> None:
        self._current[key] = result

    def finish(self) -> None:
        """End a validation: the next one finds what this one used or made."""
        self._previous, self._current = self._current, {}

    def forget(self) -> None:
        """Drop what the latest validation used or made (the caller keeps it otherwise)."""
        self._previous = {}


class Reporter:
    """Collects problems, placing each at the value (or the key) its path names."""

    def __init__(
        self,
        document: Document,
        problems: list[Problem] | None = None,
        *,
        at_keys: bool = False,
        memo: Memo | None = None,
    ) -> None:
        self.document = document
        self.problems: list[Problem] = [] if problems is None else problems
        self._at_keys = at_keys
        self.memo = memo

    def error(self, at: Path, message: str) -> None:
        mark = self.document.key_mark_of(at) if self._at_keys else self.document.mark_of(at)
        self.problems.append(Problem(self.document.source_at(at), mark, format_path(at), message))

    def key_error(self, at: Path, message: str) -> None:
        """A problem with the key itself (misspelt, duplicated...), placed where it is written."""
        mark = self.document.key_mark_of(at)
        self.problems.append(Problem(self.document.source_at(at), mark, format_path(at), message))

    def for_keys(self) -> Reporter:
        """A reporter, sharing these problems, that places them at keys instead of values."""
        return Reporter(self.document, self.problems, at_keys=True, memo=self.memo)


QUOTE_IT = "quote it if you mean the word"


def describe(value: object) -> str:
    """Name a loaded value the way a message should mention it."""
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if value is None:
        return "nothing (null)"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value!r}"
    return "a list" if isinstance(value, list) else "a map"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when none is close."""
    import difflib  # only when reporting an error

    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _is_control(char: str) -> bool:
    # Unicode category Cc (C0, DEL, C1), without importing unicodedata for it.
    code = ord(char)
    return code < 0x20 or 0x7F <= code < 0xA0


def is_number(value: object) -> TypeGuard[int | float]:
    # YAML true/false load as bool, which Python counts as an int: not a number here.
    return isinstance(value, int | float) and not isinstance(value, bool)


class Shape(ABC, Generic[T]):
    """What one configuration value must look like."""

    @abstractmethod
    def check(self, value: object, at: Path, report: Reporter) -> T | Invalid:
        """Report what is wrong with `value` (found at `at`) or return it converted."""

    @abstractmethod
    def json_schema(self, defs: Defs) -> JsonSchema:
        """The JSON Schema of the values this shape accepts (never stricter than check)."""


@dataclass(frozen=True)
class Text(Shape[str]):
    """A non-empty string."""

    def check(self, value: object, at: Path, report: Reporter) -> str | Invalid:
        if not isinstance(value, str):
            report.error(at, f"expected a string, got {describe(value)}")
            return INVALID
        if not value:
            report.error(at, "must not be empty")
            return INVALID
        return value

    def json_schema(self, defs: Defs) -> JsonSchema:
        return {"type": "string", "minLength": 1}


@dataclass(frozen=True)
class Parsed(Text):
    """A string that `parse` accepts, kept as written: `parse` raises ValueError with a
    sentence saying what is wrong, which is reported as it is."""

    expected: str  # what a value of another type should have been: "a time zone name"
    parse: Callable[[str], object]
    strip: bool = False  # True: a string of blanks counts as empty
    pattern: str | None = None  # a JSON Schema pattern (the default: any non-empty string)

    def check(self, value: object, at: Path, report: Reporter) -> str | Invalid:
        if not isinstance(value, str) or not (value.strip() if self.strip else value):
            report.error(at, f"expected {self.expected}, got {describe(value)}")
            return INVALID
        return parsed(value, self.parse, at, report)

    def json_schema(self, defs: Defs) -> JsonSchema:
        if self.pattern is None:
            return super().json_schema(defs)
        return {"type": "string", "pattern": self.pattern}


def parsed(text: str, parse: Callable[[str], object], at: Path, report: Reporter) -> str | Invalid:
    """`text` if `parse` accepts it; else the ValueError's sentence is reported at `at`."""
    try:
        parse(text)
    except ValueError as err:
        report.error(at, str(err))
        return INVALID
    return text


@dataclass(frozen=True)
class Name(Shape[str]):
    """A name such as a task or role name: no whitespace, '/' or control characters."""

    what: str  # "task name", "role name"...

    def check(self, value: object, at: Path, report: Reporter) -> str | Invalid:
        if not isinstance(value, str):
            report.error(at, f"a {self.what} must be a string, got {describe(value)}")
            return INVALID
        flaw = name_flaw(value)
        if flaw:
            report.error(at, f"the {self.what} {value!r} {flaw}")
            return INVALID
        return value

    def json_schema(self, defs: Defs) -> JsonSchema:
        return {"type": "string", "pattern": r"^[^\s/\x00-\x1f\x7f-\x9f]+$"}


# ASCII names without any of these are fine: the usual case, told with one search.
_ASCII_FLAWS = re.compile(r"[\x00-\x20/\x7f]")


def name_flaw(name: str) -> str:
    """Why `name` cannot be a name, or '' if it can."""
    if name and name.isascii() and not _ASCII_FLAWS.search(name):
        return ""
    if not name:
        return "is empty"
    if any(char.isspace() for char in name):
        return "contains whitespace"
    if "/" in name:
        return "contains '/'"
    if not name.isprintable() and any(_is_control(char) for char in name):
        return "contains a control character"
    return ""


@dataclass(frozen=True)
class Whole(Shape[int]):
    """A whole number, at least `minimum` and, if given, at most `maximum`."""

    minimum: int = 1
    maximum: int | None = None

    def check(self, value: object, at: Path, report: Reporter) -> int | Invalid:
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and value >= self.minimum
            and (self.maximum is None or value <= self.maximum)
        ):
            return value
        if self.maximum is None:
            wanted = f"a whole number of at least {self.minimum}"
        else:
            wanted = f"a whole number from {self.minimum} to {self.maximum}"
        report.error(at, f"expected {wanted}, got {describe(value)}")
        return INVALID

    def json_schema(self, defs: Defs) -> JsonSchema:
        schema: JsonSchema = {"type": "integer", "minimum": self.minimum}
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        return schema


@dataclass(frozen=True)
class Number(Shape[float]):
    """A number of seconds, a factor...: int or float, but not a boolean."""

    minimum: float = 0
    exclusive: bool = False  # True: the minimum itself is not allowed

    def check(self, value: object, at: Path, report: Reporter) -> float | Invalid:
        if not is_number(value):
            report.error(at, f"expected a number, got {describe(value)}")
            return INVALID
        try:
            number = float(value)
        except OverflowError:  # an integer too large for a float
            number = math.inf
        if not math.isfinite(number):
            report.error(at, f"must be a finite number, got {value}")
            return INVALID
        if number < self.minimum or (self.exclusive and number == self.minimum):
            relation = "greater than" if self.exclusive else "at least"
            report.error(at, f"must be {relation} {self.minimum:g}, got {value}")
            return INVALID
        return number

    def json_schema(self, defs: Defs) -> JsonSchema:
        bound = "exclusiveMinimum" if self.exclusive else "minimum"
        return {"type": "number", bound: self.minimum}


@dataclass(frozen=True)
class Choice(Shape[T]):
    """One of a fixed set of words, converted (to an enum member, say) once accepted."""

    options: tuple[str, ...]
    convert: Callable[[str], T]

    def check(self, value: object, at: Path, report: Reporter) -> T | Invalid:
        listed = ", ".join(self.options)
        if not isinstance(value, str):
            hint = f"; {QUOTE_IT}" if isinstance(value, bool) else ""
            report.error(at, f"expected one of {listed}, got {describe(value)}{hint}")
            return INVALID
        if value not in self.options:
            suggestion = did_you_mean(value, self.options)
            report.error(at, f"{value!r} is not one of {listed}{suggestion}")
            return INVALID
        return self.convert(value)

    def json_schema(self, defs: Defs) -> JsonSchema:
        return {"type": "string", "enum": list(self.options)}


def enum_choice(enum: type[E]) -> Choice[E]:
    return Choice(tuple(member.value for member in enum), enum)


@dataclass(frozen=True)
class Scalar(Shape[Value]):
    """A single context value: string, number, boolean or null."""

    def check(self, value: object, at: Path, report: Reporter) -> Value | Invalid:
        if isinstance(value, list | dict):
            report.error(at, f"expected a single value (string or number), got {describe(value)}")
            return INVALID
        assert value is None or isinstance(value, str | int | float)
        return value

    def json_schema(self, defs: Defs) -> JsonSchema:
        return {"type": ["string", "number", "boolean", "null"]}


CONDITIONAL_DEF = "conditional"


@dataclass(frozen=True)
class Conditional(Shape[Value]):
    """A value that may hold conditional maps (see "Values and Lists" in the specification).

    Leaves are strings or numbers; a list holds such values; a map's keys are context names
    and its values are included only when the name is in the context.
    """

    allow_scalar: bool = True  # False: the outermost value is a list or a map
    # A command: its first word, the program, is kept once for every task that names it
    # (sys.intern: thousands of tasks often run one program; 100 bytes a task).
    program: bool = False
    non_empty: bool = False  # the outermost list needs at least one item

    def check(self, value: object, at: Path, report: Reporter) -> Value | Invalid:
        if not self.allow_scalar and not isinstance(value, list | dict):
            report.error(
                at,
                f'expected a list of words such as ["/usr/sbin/sshd", "-D"], got {describe(value)}',
            )
            return INVALID
        if self.non_empty and value == []:
            report.error(at, "must not be an empty list")
            return INVALID
        before = len(report.problems)
        self._check_tree(value, at, report)
        if len(report.problems) > before:
            return INVALID
        # The tree checked out: only strings, numbers, lists and maps are left.
        if self.program and isinstance(value, list) and value and isinstance(value[0], str):
            program = sys.intern(value[0])
            if program is not value[0]:
                return [program, *value[1:]]
        return cast(Value, value)

    def _check_tree(self, value: object, at: Path, report: Reporter) -> None:
        if isinstance(value, list):
            for index, item in enumerate(value):
                self._check_tree(item, (*at, index), report)
        elif isinstance(value, dict):
            for key, item in value.items():
                self._check_tree(item, (*at, key), report)
        elif value is None:
            report.error(at, "expected a string or number, got nothing (null)")
        elif isinstance(value, bool):
            report.error(at, f"expected a string or number, got {describe(value)}; {QUOTE_IT}")

    def json_schema(self, defs: Defs) -> JsonSchema:
        reference = {"$ref": f"#/$defs/{CONDITIONAL_DEF}"}
        defs[CONDITIONAL_DEF] = {
            "description": "A string or number; a list of such values; or a map from context "
            "names to values that are used only when the name is in the task's context.",
            "anyOf": [
                {"type": ["string", "number"]},
                {"type": "array", "items": reference},
                {"type": "object", "additionalProperties": reference},
            ],
        }
        if self.allow_scalar and not self.non_empty:
            return reference
        items: JsonSchema = {"type": "array", "items": reference}
        if self.non_empty:
            items["minItems"] = 1
        outer = [items, {"type": "object", "additionalProperties": reference}]
        if self.allow_scalar:
            outer.insert(0, {"type": ["string", "number"]})
        return {"anyOf": outer}


def _checked_tree(inner: Shape[Any], value: object, at: Path, report: Reporter) -> Value:
    """A conditional with its leaves converted by `inner`, each checked (recursion: the
    document's depth is bounded by the loader)."""
    if isinstance(value, list):
        return [
            _checked_tree(inner, item, (*at, index), report) for index, item in enumerate(value)
        ]
    if isinstance(value, dict):
        return {key: _checked_tree(inner, item, (*at, key), report) for key, item in value.items()}
    leaf = inner.check(value, at, report)
    # Leaves of the model's scalar types (str, int, float, bool and their enums) fit a Value.
    return None if isinstance(leaf, Invalid) else cast(Value, leaf)


def _tree_schema(inner: Shape[Any], defs: Defs) -> JsonSchema:
    conditional = Conditional().json_schema(defs)
    return {
        "anyOf": [
            inner.json_schema(defs),
            {"type": "array", "items": conditional},
            {"type": "object", "additionalProperties": conditional},
        ]
    }


@dataclass(frozen=True)
class OneOf(Shape[T | Pick[T]]):
    """`inner`, or a conditional that chooses one such value per task (a :class:`Pick`).

    The specification lets a map stand wherever a scalar may ("Values and Lists"): each
    of its keys that is in the task's context contributes its value, looked at again
    (a list, another map). Every leaf must satisfy `inner`; which one is used, if any,
    is decided when the task is resolved.
    """

    inner: Shape[T]

    def check(self, value: object, at: Path, report: Reporter) -> T | Pick[T] | Invalid:
        if not isinstance(value, list | dict):
            return self.inner.check(value, at, report)
        before = len(report.problems)
        tree = _checked_tree(self.inner, value, at, report)
        return INVALID if len(report.problems) > before else Pick(tree)

    def json_schema(self, defs: Defs) -> JsonSchema:
        return _tree_schema(self.inner, defs)


@dataclass(frozen=True)
class Choices(Shape[Value]):
    """An element of a list key (`requires`): `inner`, or a conditional giving any number
    of such values, each of its leaves checked by `inner`; kept as written."""

    inner: Shape[Any]

    def check(self, value: object, at: Path, report: Reporter) -> Value | Invalid:
        before = len(report.problems)
        tree = _checked_tree(self.inner, value, at, report)
        return INVALID if len(report.problems) > before else tree

    def json_schema(self, defs: Defs) -> JsonSchema:
        return _tree_schema(self.inner, defs)


def certain_leaves(value: object, present: Container[str]) -> int:
    """How many leaves a conditional gives at least, knowing only that the names in
    `present` are in every context: more than one is an error found at load time."""
    if isinstance(value, list):
        return sum(certain_leaves(item, present) for item in value)
    if isinstance(value, dict):
        return sum(certain_leaves(item, present) for key, item in value.items() if key in present)
    return 0 if value is None else 1


def every_leaf(value: object, at: Path) -> Iterator[tuple[Path, object]]:
    """Each leaf of a conditional, whatever the context, with the path it is written at."""
    if isinstance(value, list):
        for index, item in enumerate(value):
            yield from every_leaf(item, (*at, index))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from every_leaf(item, (*at, key))
    elif value is not None:
        yield at, value
