"""The `limits`, `umask`, `nice`, `oom_score_adj` and `memory_restart` keys of a task.

`limits` holds two kinds of limit under one key: the process's rlimits (setrlimit, each
soft and hard, inherited by everything it runs) and its cgroup's (`memory`, `cpu`,
`pids`: shared by every process of the instance, where the controller exists). The rlimit
on CPU seconds is `cpu_time`, so that `cpu` can be the cgroup's share of CPUs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from taskforce.config.model import LimitsConfig
from taskforce.config.output import ByteSize, parse_size
from taskforce.config.shapes import (
    INVALID,
    Defs,
    Invalid,
    JsonSchema,
    Number,
    Reporter,
    Shape,
    Whole,
    describe,
)
from taskforce.config.shapes_compound import Field, Record
from taskforce.config.yaml_source import Path
from taskforce.core.spec import UNLIMITED

# rlimit key -> (what it limits, whether it is a size in bytes, so that 64M is allowed).
RLIMITS: dict[str, tuple[str, bool]] = {
    "as": ("address space (virtual memory) in bytes", True),
    "core": ("size of a core dump in bytes (0: none)", True),
    "cpu_time": ("CPU seconds, after which the process gets SIGXCPU", False),
    "data": ("data segment in bytes", True),
    "fsize": ("size of a file the process writes, in bytes", True),
    "locks": ("file locks", False),
    "memlock": ("locked memory in bytes", True),
    "msgqueue": ("bytes in POSIX message queues", True),
    "nofile": ("open file descriptors", False),
    "nproc": ("processes of the user (the real uid)", False),
    "rss": ("resident memory in bytes (ignored by Linux)", True),
    "rtprio": ("real-time priority", False),
    "rttime": ("microseconds of real-time CPU before blocking", False),
    "sigpending": ("queued signals", False),
    "stack": ("stack size in bytes", True),
}

_UNLIMITED_WORDS = ("unlimited", "infinity")
_WHOLE = r"[0-9]+"


@dataclass(frozen=True)
class RlimitValue(Shape[tuple[int, int]]):
    """`4096` (soft and hard), `[1024, 4096]`, `unlimited`; sizes as 64M where `sized`."""

    sized: bool

    def check(self, value: object, at: Path, report: Reporter) -> tuple[int, int] | Invalid:
        if isinstance(value, list):
            if len(value) != 2:
                report.error(at, f"expected [soft, hard], got a list of {len(value)}")
                return INVALID
            soft, hard = (self._one(item, (*at, i), report) for i, item in enumerate(value))
            if soft is INVALID or hard is INVALID:
                return INVALID
            assert isinstance(soft, int) and isinstance(hard, int)
            if hard != UNLIMITED and (soft == UNLIMITED or soft > hard):
                report.error(at, f"the soft limit {_show(soft)} is above the hard {_show(hard)}")
                return INVALID
            return soft, hard
        one = self._one(value, at, report)
        return INVALID if isinstance(one, Invalid) else (one, one)

    def _one(self, value: object, at: Path, report: Reporter) -> int | Invalid:
        if isinstance(value, str) and value.strip().lower() in _UNLIMITED_WORDS:
            return UNLIMITED
        if self.sized:
            size = parse_size(value)
            if size is not None:
                return size
        elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        elif isinstance(value, str) and re.fullmatch(_WHOLE, value.strip()):
            return int(value)
        example = "64M, 1G" if self.sized else "4096"
        report.error(
            at,
            f"expected a limit ({example} or unlimited) or [soft, hard], got {describe(value)}",
        )
        return INVALID

    def json_schema(self, defs: Defs) -> JsonSchema:
        one: JsonSchema = {
            "anyOf": [
                ByteSize().json_schema(defs) if self.sized else {"type": "integer", "minimum": 0},
                {"type": "string", "enum": list(_UNLIMITED_WORDS)},
            ]
        }
        return {"anyOf": [one, {"type": "array", "items": one, "minItems": 2, "maxItems": 2}]}


def _show(limit: int) -> str:
    return "unlimited" if limit == UNLIMITED else str(limit)


@dataclass(frozen=True)
class Umask(Shape[int]):
    """An octal string: "0022", "027". A YAML number is refused: 022 reads as twenty-two."""

    def check(self, value: object, at: Path, report: Reporter) -> int | Invalid:
        if isinstance(value, str) and re.fullmatch("0?[0-7]{3}", value.strip()):
            return int(value.strip(), 8)
        hint = " (quote it: YAML reads 022 as the number twenty-two)"
        report.error(
            at,
            f"expected an octal umask as a string, like '0022', got {describe(value)}"
            + (hint if isinstance(value, int) else ""),
        )
        return INVALID

    def json_schema(self, defs: Defs) -> JsonSchema:
        return {"type": "string", "pattern": "^ *0?[0-7]{3} *$"}


def _limits(at: Path, values: dict[str, Any]) -> LimitsConfig:
    rlimits = tuple((name, *values[name]) for name in sorted(values) if name in RLIMITS)
    return LimitsConfig(
        rlimits=rlimits,
        memory=values.get("memory"),
        cpu=values.get("cpu"),
        pids=values.get("pids"),
    )


LIMITS = Record(
    {
        **{
            name: Field(
                RlimitValue(sized),
                f"rlimit: {what}. One value for soft and hard, or [soft, hard]; unlimited.",
            )
            for name, (what, sized) in RLIMITS.items()
        },
        "memory": Field(
            ByteSize(),
            "cgroup: the memory of all the instance's processes together (512M, 2G); past "
            "it the kernel's OOM killer ends one, which is reported as an OOM kill.",
        ),
        "cpu": Field(
            Number(minimum=0, exclusive=True),
            "cgroup: CPUs' worth of time the instance's processes may use together (1.5: "
            "one and a half CPUs).",
        ),
        "pids": Field(
            Whole(1, 1 << 22),
            "cgroup: processes (and threads) the instance may have at once; fork fails past it.",
        ),
    },
    _limits,
    what="map of limits (nofile, nproc, core, as, memory, cpu, pids...)",
)
