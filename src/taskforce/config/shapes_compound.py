"""Compound shapes: lists, maps with keys of the user's choosing, and records of fixed keys.

See :mod:`taskforce.config.shapes` for what a shape is.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

from taskforce.config.shapes import (
    INVALID,
    Defs,
    Invalid,
    JsonSchema,
    Reporter,
    Shape,
    Text,
    describe,
    did_you_mean,
)
from taskforce.config.yaml_source import Path

T = TypeVar("T")


@dataclass(frozen=True)
class ListOf(Shape[tuple[T, ...]]):
    item: Shape[T]
    single_ok: bool = False  # a lone item may be written without the list

    def check(self, value: object, at: Path, report: Reporter) -> tuple[T, ...] | Invalid:
        if not isinstance(value, list):
            if self.single_ok:
                single = self.item.check(value, at, report)
                return INVALID if isinstance(single, Invalid) else (single,)
            report.error(at, f"expected a list, got {describe(value)}")
            return INVALID
        items = [self.item.check(item, (*at, index), report) for index, item in enumerate(value)]
        valid = tuple(item for item in items if not isinstance(item, Invalid))
        return valid if len(valid) == len(items) else INVALID

    def json_schema(self, defs: Defs) -> JsonSchema:
        item = self.item.json_schema(defs)
        many = {"type": "array", "items": item}
        return {"anyOf": [item, many]} if self.single_ok else many


@dataclass(frozen=True)
class Remembered(Shape[T]):
    """`shape`, whose results are kept in the reporter's memo (if it has one).

    A value that checked out without a problem gives the same result at the same path
    without being checked again: a task entry unchanged since the last load, say. The
    check of a value reads nothing but the value and its path, so this is exact.
    """

    shape: Shape[T]

    def check(self, value: object, at: Path, report: Reporter) -> T | Invalid:
        memo = report.memo
        if memo is None:
            return self.shape.check(value, at, report)
        try:
            key = (at, memo.dumps(value))
        except ValueError:  # not plain data (never from a document): check it each time
            return self.shape.check(value, at, report)
        found = memo.get(key)
        if found is not None:
            return cast(T, found)
        before = len(report.problems)
        result = self.shape.check(value, at, report)
        if len(report.problems) == before and not isinstance(result, Invalid):
            memo.put(key, result)
        return result

    def json_schema(self, defs: Defs) -> JsonSchema:
        return self.shape.json_schema(defs)


@dataclass(frozen=True)
class MapOf(Shape[dict[str, T]]):
    """A map with keys of the user's choosing (task names, context names...)."""

    value: Shape[T]
    key: Shape[str] = field(default_factory=Text)
    required: tuple[str, ...] = ()

    def check(self, value: object, at: Path, report: Reporter) -> dict[str, T] | Invalid:
        if not isinstance(value, dict):
            report.error(at, f"expected a map, got {describe(value)}")
            return INVALID
        before = len(report.problems)
        for name in self.required:
            if name not in value:
                report.error(at, f"missing the required {name!r} entry")
        result: dict[str, T] = {}
        keys_report = report.for_keys()
        for key, item in value.items():
            path = (*at, key)
            checked_key = self.key.check(key, path, keys_report)
            checked = self.value.check(item, path, report)
            if not isinstance(checked_key, Invalid) and not isinstance(checked, Invalid):
                result[checked_key] = checked
        return INVALID if len(report.problems) > before else result

    def json_schema(self, defs: Defs) -> JsonSchema:
        schema: JsonSchema = {
            "type": "object",
            "propertyNames": self.key.json_schema(defs),
            "additionalProperties": self.value.json_schema(defs),
        }
        if self.required:
            schema["required"] = list(self.required)
        return schema


class Rule(ABC):
    """A constraint between the keys of one Record."""

    @abstractmethod
    def check(self, value: Mapping[str, object], at: Path, report: Reporter) -> None: ...

    @abstractmethod
    def json_schema(self) -> JsonSchema: ...


@dataclass(frozen=True)
class ExactlyOne(Rule):
    keys: tuple[str, ...]

    def check(self, value: Mapping[str, object], at: Path, report: Reporter) -> None:
        present = [key for key in self.keys if key in value]
        either = " or ".join(repr(key) for key in self.keys)
        if not present:
            report.error(at, f"needs one of {either}")
        for extra in present[1:]:
            report.key_error((*at, extra), f"give only one of {either}, not both")

    def json_schema(self) -> JsonSchema:
        return {"oneOf": [{"required": [key]} for key in self.keys]}


@dataclass(frozen=True)
class OnlyWhen(Rule):
    """`key` is required when `selector` is `selected`, and not allowed otherwise."""

    key: str
    selector: str
    selected: str

    def check(self, value: Mapping[str, object], at: Path, report: Reporter) -> None:
        kind = value.get(self.selector)
        if not isinstance(kind, str):
            return  # the selector's own check reports it
        if kind == self.selected and self.key not in value:
            report.error(at, f"{self.selector} {self.selected!r} needs a {self.key!r}")
        elif kind != self.selected and self.key in value:
            report.key_error(
                (*at, self.key),
                f"{self.key!r} is only used when {self.selector} is {self.selected!r}",
            )

    def json_schema(self) -> JsonSchema:
        return {
            "if": {
                "properties": {self.selector: {"const": self.selected}},
                "required": [self.selector],
            },
            "then": {"required": [self.key]},
            "else": {"not": {"required": [self.key]}},
        }


@dataclass(frozen=True)
class Field(Generic[T]):
    shape: Shape[T]
    description: str
    required: bool = False


@dataclass(frozen=True)
class Record(Shape[T]):
    """A map with a fixed set of keys, built into a model object once all of them check out.

    `build` receives the record's path (its last part is the key naming it, a task name say)
    and the checked values of the keys present, each already of its field's type.
    """

    fields: Mapping[str, Field[Any]]
    build: Callable[[Path, dict[str, Any]], T]
    rules: tuple[Rule, ...] = ()
    what: str = "map"  # for messages: "task", "event"...
    # Keys people write by habit from elsewhere, and the key that does it here.
    habits: Mapping[str, str] = field(default_factory=dict)

    def check(self, value: object, at: Path, report: Reporter) -> T | Invalid:
        if not isinstance(value, dict):
            report.error(at, f"expected a {self.what}, got {describe(value)}")
            return INVALID
        before = len(report.problems)
        self._check_keys(value, at, report)
        checked = {
            key: self.fields[key].shape.check(item, (*at, key), report)
            for key, item in value.items()
            if key in self.fields
        }
        for rule in self.rules:
            rule.check(value, at, report)
        if len(report.problems) > before:
            return INVALID
        return self.build(at, checked)

    def _check_keys(self, value: Mapping[str, object], at: Path, report: Reporter) -> None:
        for key in value:
            if key not in self.fields:
                hint = did_you_mean(key, self.fields) or f" (known keys: {', '.join(self.fields)})"
                if isinstance(key, str) and key in self.habits:
                    hint = f" (did you mean {self.habits[key]!r}?)"
                report.key_error((*at, key), f"unknown key {key!r}{hint}")
        for key, spec in self.fields.items():
            if spec.required and key not in value:
                report.error(at, f"missing the required key {key!r}")

    def json_schema(self, defs: Defs) -> JsonSchema:
        schema: JsonSchema = {
            "type": "object",
            "properties": {
                key: {**spec.shape.json_schema(defs), "description": spec.description}
                for key, spec in self.fields.items()
            },
            "additionalProperties": False,
        }
        required = [key for key, spec in self.fields.items() if spec.required]
        if required:
            schema["required"] = required
        if self.rules:
            schema["allOf"] = [rule.json_schema() for rule in self.rules]
        return schema
