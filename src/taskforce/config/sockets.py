"""`sockets` and `restart` of a task: listening sockets taskforce holds, and how the task's
processes are replaced (rolling restarts). Their model, value shapes and resolution; the
records themselves are in :mod:`taskforce.config.description`.

    sockets:
      http: "127.0.0.1:8080"              # a name, and where to listen
      admin: {listen: "[::1]:9000", backlog: 256, reuseport: true}
      ctl: {listen: /run/app/ctl.sock, mode: "0660", owner: www-data, group: www-data}
    restart: {rolling: 2, overlap: true}

The sockets reach every process of the task as descriptors 3, 4... in the order written,
with LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES set (systemd's socket activation).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from taskforce.config.context import ContextError, choose, substitute
from taskforce.config.model import SocketConfig
from taskforce.config.shapes import (
    INVALID,
    Defs,
    Invalid,
    JsonSchema,
    Name,
    Reporter,
    Shape,
    Text,
    describe,
    parsed,
)
from taskforce.config.yaml_source import Path
from taskforce.core.sockets import TCP, UNIX, SocketSpec

DEFAULT_BACKLOG = 128


def parse_listen(text: str) -> tuple[str, str, int, str]:
    """(kind, host, port, path) for a `listen` value; ValueError saying what is wrong."""
    if text.startswith("/"):
        return UNIX, "", 0, text
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:([0-9]+)|([^:\[\]/]+):([0-9]+)", text)
    if match is None:
        raise ValueError(f"{text!r} is neither host:port, [IPv6]:port nor an absolute socket path")
    host = match[1] if match[1] is not None else match[3]
    port = int(match[2] if match[2] is not None else match[4])
    if port > 65535:
        raise ValueError(f"port {port} is out of range (0 to 65535)")
    return TCP, host, port, ""


@dataclass(frozen=True)
class ListenText(Text):
    """Where a socket listens: checked now unless a {name} substitution waits in it."""

    def check(self, value: object, at: Path, report: Reporter) -> str | Invalid:
        text = super().check(value, at, report)
        if isinstance(text, Invalid) or "{" in text:
            return text
        return parsed(text, parse_listen, at, report)


@dataclass(frozen=True)
class FileMode(Shape[int]):
    """Permissions as a quoted octal string ("0660"): a bare 0660 means different numbers
    to different YAML readers."""

    def check(self, value: object, at: Path, report: Reporter) -> int | Invalid:
        if isinstance(value, str) and re.fullmatch("[0-7]{3,4}", value):
            return int(value, 8)
        report.error(at, f'expected a quoted octal mode such as "0660", got {describe(value)}')
        return INVALID

    def json_schema(self, defs: Defs) -> JsonSchema:
        return {"type": "string", "pattern": "^[0-7]{3,4}$"}


@dataclass(frozen=True)
class SocketName(Shape[str]):
    """A name in LISTEN_FDNAMES: a name without ':' (the separator there)."""

    def check(self, value: object, at: Path, report: Reporter) -> str | Invalid:
        name = Name("socket name").check(value, at, report)
        if isinstance(name, str) and ":" in name:
            report.error(at, f"the socket name {name!r} contains ':'")
            return INVALID
        return name

    def json_schema(self, defs: Defs) -> JsonSchema:
        return {"type": "string", "pattern": r"^[^\s/:\x00-\x1f\x7f-\x9f]+$"}


@dataclass(frozen=True)
class Rolling(Shape[int]):
    """true (1 at a time), false (0: never), or how many at a time."""

    def check(self, value: object, at: Path, report: Reporter) -> int | Invalid:
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int) and value >= 1:
            return value
        report.error(
            at, f"expected true, false or how many at a time (1 or more), got {describe(value)}"
        )
        return INVALID

    def json_schema(self, defs: Defs) -> JsonSchema:
        return {"anyOf": [{"type": "boolean"}, {"type": "integer", "minimum": 1}]}


def resolve_sockets(
    sockets: Mapping[str, SocketConfig], context: Mapping[str, str], at: str
) -> tuple[SocketSpec, ...]:
    """The task's sockets for this host; a socket whose listen chooses nothing is left out.
    ContextError for one that resolves to something unusable."""
    resolved = []
    for name, config in sockets.items():
        path = f"{at}.sockets.{name}.listen"
        listen = choose(config.listen, context, path)
        if listen is None:
            continue
        text = substitute(listen, context)
        try:
            kind, host, port, file = parse_listen(text)
        except ValueError as exc:
            raise ContextError(str(exc), path) from None
        if kind == TCP and (config.mode is not None or config.owner is not None):
            raise ContextError("mode and owner are for unix sockets", f"{at}.sockets.{name}")
        resolved.append(
            SocketSpec(
                name=name,
                kind=kind,
                host=host,
                port=port,
                path=file,
                backlog=config.backlog,
                reuseport=config.reuseport,
                mode=config.mode,
                owner=config.owner,
                group=config.group,
            )
        )
    return tuple(resolved)
