"""The `output` key: where a task's stdout and stderr go, checked and then resolved.

Validation (the Record here, used by :mod:`taskforce.config.description` for a task and
for `settings`) keeps what the file says; :func:`resolve_output` merges a task's keys
over the ones under `settings`, substitutes file paths with the instance's context and
gives the :class:`~taskforce.core.spec.OutputSpec` the runtime works from.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from taskforce.config.context import ContextError, choose, substitute
from taskforce.config.model import OutputConfig
from taskforce.config.shapes import (
    INVALID,
    Defs,
    Invalid,
    JsonSchema,
    OneOf,
    Reporter,
    Shape,
    Text,
    Whole,
    describe,
    did_you_mean,
)
from taskforce.config.shapes_compound import Field, Record
from taskforce.config.yaml_source import Path
from taskforce.core.spec import (
    NO_OUTPUT,
    NULL,
    SAME_AS_STDOUT,
    STDERR,
    SYSLOG,
    TASK_PID_MARKER,
    OutputSpec,
)

_WORDS = (NULL, STDERR, SYSLOG)
_SUBSTITUTION = r"\{[^{}]+\}"
# What makes a destination a file path rather than a word.
_FILE_PATH = rf"[/.]|{_SUBSTITUTION}"
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_SIZE = r"[0-9]+ *([kKmMgG]i?[bB]?)?"
MAX_BACKUPS = 1000  # more rotated files than this is a typo


@dataclass(frozen=True)
class Destination(Shape[str]):
    """null (or YAML null), stderr, syslog, a file path, and for stderr also `stdout`.

    A file path is anything with a '/', a '.' or a {name} substitution: `app.log` is a
    file beside the configuration. A bare word is one of the words above, so that a
    misspelt one (`sylog`) is an error rather than a file of that name.
    """

    for_stderr: bool = False

    @property
    def words(self) -> tuple[str, ...]:
        return (*_WORDS, SAME_AS_STDOUT) if self.for_stderr else _WORDS

    def check(self, value: object, at: Path, report: Reporter) -> str | Invalid:
        if value is None:
            return NULL
        if isinstance(value, str) and (value in self.words or re.search(_FILE_PATH, value)):
            if "\0" in value:
                report.error(at, "a file path cannot contain a NUL character")
                return INVALID
            return value
        words = ", ".join(self.words)
        if isinstance(value, str) and value:
            hint = did_you_mean(value, self.words) or f" (write ./{value} for a file of that name)"
            report.error(at, f"expected {words} or a file path, got {describe(value)}{hint}")
        else:
            report.error(at, f"expected {words} or a file path, got {describe(value)}")
        return INVALID

    def json_schema(self, defs: Defs) -> JsonSchema:
        return {
            "anyOf": [
                {"type": "null"},
                {"type": "string", "enum": list(self.words)},
                {"type": "string", "pattern": _FILE_PATH},
            ]
        }


@dataclass(frozen=True)
class ByteSize(Shape[int]):
    """A size in bytes: a whole number, or a string such as 512k, 10M or 1GiB."""

    def check(self, value: object, at: Path, report: Reporter) -> int | Invalid:
        size = parse_size(value)
        if size is not None:
            return size
        report.error(at, f"expected a size in bytes (as 1048576, 512k, 10M), got {describe(value)}")
        return INVALID

    def json_schema(self, defs: Defs) -> JsonSchema:
        return {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": f"^ *{_SIZE} *$"},
            ]
        }


def parse_size(value: object) -> int | None:
    """Bytes for 1048576, '512k', '10M' or '1GiB'; None for anything else."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and re.fullmatch(_SIZE, value.strip()):
        digits = re.match("[0-9]+", value.strip())
        assert digits is not None
        unit = value.strip()[digits.end() :].strip()[:1].lower()
        return int(digits[0]) * _UNITS[unit]
    return None


def _build(at: Path, values: dict[str, Any]) -> OutputConfig:
    return OutputConfig(**values)


OUTPUT = Record(
    {
        "stdout": Field(
            OneOf(Destination()),
            "Where the task's standard output goes: null (/dev/null, the default), stderr "
            "(taskforce's own stderr, each line prefixed with task[instance]), syslog, or a "
            "file path (anything with a '/', a '.' or a {name} substitution such as "
            "{Task_instance}; a relative one is taken from the configuration file's "
            "directory).",
        ),
        "stderr": Field(
            OneOf(Destination(for_stderr=True)),
            "Where the task's standard error goes: the same choices as stdout, or stdout "
            "(the default: into the same pipe, in order, wherever stdout goes).",
        ),
        "max_bytes": Field(
            OneOf(ByteSize()),
            "A file destination is rotated when it would grow past this size (bytes, or "
            "with a k, M or G suffix); 0 never rotates. Default 10M.",
        ),
        "backups": Field(
            OneOf(Whole(0, MAX_BACKUPS)),
            "How many rotated files to keep, as PATH.1 (the newest) to PATH.N. Default 5.",
        ),
        "syslog_socket": Field(
            OneOf(Text()),
            "The syslog socket for the syslog destination; default the first of /dev/log, "
            "/var/run/syslog and /var/run/log that exists.",
        ),
    },
    _build,
    what="map (with stdout, stderr, max_bytes, backups, syslog_socket)",
)


def resolve_output(
    own: OutputConfig | None,
    default: OutputConfig,
    context: Mapping[str, str],
    base_dir: str,
    path: str,
) -> OutputSpec:
    """The output of one instance: `own` keys over `default` ones, paths substituted.

    A conditional value (of the task's or of the default) is chosen in the instance's
    context; one that chooses nothing is as if not written. A relative file path is taken
    from `base_dir` (the configuration file's directory, as event paths are). Raises
    ContextError with the key path of a bad value.
    """
    if own is None and default == NO_OUTPUT_CONFIG:
        return NO_OUTPUT  # the usual case, without work
    own = own or NO_OUTPUT_CONFIG

    def pick(key: str) -> Any:
        value = choose(getattr(own, key), context, f"{path}.{key}")
        if value is None:
            value = choose(getattr(default, key), context, f"settings.output.{key}")
        return value

    stdout = _target(pick("stdout") or NULL, context, base_dir, f"{path}.stdout", False)
    stderr = _target(pick("stderr") or SAME_AS_STDOUT, context, base_dir, f"{path}.stderr", True)
    max_bytes, backups = pick("max_bytes"), pick("backups")
    return OutputSpec(
        stdout=stdout,
        stderr=stderr,
        max_bytes=NO_OUTPUT.max_bytes if max_bytes is None else max_bytes,
        backups=NO_OUTPUT.backups if backups is None else backups,
        syslog_socket=pick("syslog_socket"),
    )


NO_OUTPUT_CONFIG = OutputConfig()


def _target(value: str, context: Mapping[str, str], base_dir: str, path: str, err: bool) -> str:
    text = substitute(value, context)
    if text in _WORDS or (err and text == SAME_AS_STDOUT):
        return text
    if not text:
        raise ContextError("expands to an empty string", path)
    unknown = re.search(_SUBSTITUTION, text)
    if unknown is not None:
        raise ContextError(f"expands to {text!r}: {unknown[0]} is not defined", path)
    if TASK_PID_MARKER in text:
        raise ContextError("cannot use {Task_pid}: it is not known before the start", path)
    return posixpath.normpath(posixpath.join(base_dir, text))
