"""Read a configuration file: text to a validated :class:`~taskforce.config.model.Config`."""

from __future__ import annotations

import os
import re
import stat

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


# Far more than any configuration or roles file; a path that gives more is a mistake
# (a log file, a disk image), and reading it all would take taskforce's memory with it.
MAX_FILE_BYTES = 64 * 1024 * 1024
_CHUNK = 1024 * 1024
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def read_text(path: str) -> str:
    """The UTF-8 text of the file at `path`, with problems reading it as ConfigError."""
    try:
        data = read_file(path)
    except FileNotFoundError as exc:
        raise _unreadable(path, exc.strerror or str(exc)) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        good = data[: exc.start].decode("utf-8")
        lines = re.split("\r\n|\n|\r", good)
        mark = Mark(len(lines), len(lines[-1]) + 1)
        raise ConfigError([Problem(path, mark, "", "the file is not UTF-8 text")]) from None


def read_file(path: str) -> bytes:
    """The content of the configuration or roles file at `path`; ConfigError naming it
    when it cannot be read, is not a regular file, or is larger than MAX_FILE_BYTES.

    /dev/null, the usual way to say "nothing here", reads as empty. Anything else that is
    not a regular file is refused without reading: a FIFO would block until a writer
    comes, a device may never end. FileNotFoundError passes through, for callers to
    which a missing file means something.
    """
    try:
        # Looked at before opening: opening some devices does something (a watchdog).
        if not _usable(path, os.stat(path)):
            return b""
        # Non-blocking: the path may have become a FIFO since.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            if not _usable(path, os.fstat(fd)):
                return b""
            return _read_bounded(path, fd)
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise _unreadable(path, exc.strerror or str(exc)) from None


def is_dev_null(path: str) -> bool:
    """Whether `path` is the null device (read once as empty, never watched)."""
    try:
        return _is_null(os.stat(path))
    except OSError:
        return False


def _usable(path: str, info: os.stat_result) -> bool:
    """True for a regular file, False for the null device; ConfigError for the rest."""
    if stat.S_ISREG(info.st_mode):
        return True
    if _is_null(info):
        return False
    kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a file")
    raise _unreadable(path, f"is {kind}, not a regular file")


def _is_null(info: os.stat_result) -> bool:
    if not stat.S_ISCHR(info.st_mode):
        return False
    try:
        null = os.stat(os.devnull)
    except OSError:
        return False
    return info.st_rdev == null.st_rdev


def _read_bounded(path: str, fd: int) -> bytes:
    chunks = []
    size = 0
    while chunk := os.read(fd, _CHUNK):
        size += len(chunk)
        if size > MAX_FILE_BYTES:
            limit = MAX_FILE_BYTES // (1024 * 1024)
            raise _unreadable(path, f"is larger than {limit} MiB, the most taskforce reads")
        chunks.append(chunk)
    return b"".join(chunks)


def _unreadable(path: str, reason: str) -> ConfigError:
    return ConfigError([Problem(path, None, "", f"cannot read the file: {reason}")])
