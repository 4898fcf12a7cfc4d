"""Configuration problems, reported with the place they come from.

Every problem names the file, line and column, the key path inside the document and a
sentence a person can act on. Problems are collected, not raised one at a time, so that a
check reports everything that is wrong in one pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Mark:
    """A position in a source file; line and column count from 1."""

    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Problem:
    source: str
    mark: Mark | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.source
        if self.mark is not None:
            where = f"{where}:{self.mark.line}:{self.mark.column}"
        if self.path:
            return f"{where}: {self.path}: {self.message}"
        return f"{where}: {self.message}"


class ConfigError(Exception):
    """One or more problems that make a configuration or roles file unusable."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def format_path(parts: Iterable[str | int]) -> str:
    """Render a key path as operators write it: ``tasks.ntpd.events[1].path``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out:
            out += f".{part}"
        else:
            out = part
    return out
