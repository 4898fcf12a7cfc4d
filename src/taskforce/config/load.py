"""Read a configuration file: text to a validated :class:`~taskforce.config.model.Config`."""

from __future__ import annotations

import re

from taskforce.config.errors import ConfigError, Mark, Problem
from taskforce.config.model import Config
from taskforce.config.validate import validate_document
from taskforce.config.yaml_source import load_document


def parse_config(text: str, source: str = "<config>") -> Config:
    """Load and validate configuration `text`; `source` names it in problems.

    Raises ConfigError listing every problem found.
    """
    return validate_document(load_document(text, source))


def load_config(path: str) -> Config:
    """Read, load and validate the configuration file at `path`; raise ConfigError."""
    return parse_config(read_text(path), path)


def read_text(path: str) -> str:
    """The UTF-8 text of the file at `path`, with problems reading it as ConfigError."""
    try:
        with open(path, "rb") as stream:
            data = stream.read()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError([Problem(path, None, "", f"cannot read the file: {reason}")]) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        good = data[: exc.start].decode("utf-8")
        lines = re.split("\r\n|\n|\r", good)
        mark = Mark(len(lines), len(lines[-1]) + 1)
        raise ConfigError([Problem(path, mark, "", "the file is not UTF-8 text")]) from None
