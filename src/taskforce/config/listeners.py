"""The `settings.http` listeners: what a listen string means, and which are refused.

Validation (a Record here, used by :mod:`taskforce.config.description`) and the HTTP
service (:mod:`taskforce.api.listen`) apply the same rules, from this one place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from taskforce.config.model import HttpListener
from taskforce.config.shapes import (
    INVALID,
    Defs,
    Invalid,
    JsonSchema,
    Number,
    Parsed,
    Reporter,
    Shape,
    Text,
    describe,
)
from taskforce.config.shapes_compound import Field, ListOf, Record, Rule
from taskforce.config.yaml_source import Path

DEFAULT_HTTP_HOST = "127.0.0.1"  # `:port` alone listens on loopback, never everywhere
DEFAULT_HTTP_PORT = 8080
_UNIX_PATH_MAX = 107  # sun_path holds 108 bytes, with the terminating NUL


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """What a `listen` string means: a unix socket `path`, or TCP `host` and `port`."""

    path: str | None = None
    host: str = DEFAULT_HTTP_HOST
    port: int = DEFAULT_HTTP_PORT


def parse_listen(text: str) -> ListenAddress:
    """Read a listen string: a path (it has a `/`), or `[host][:port]`, `[::1]:port` for IPv6.

    Raises ValueError with a sentence saying what is wrong.
    """
    if "/" in text:
        if "\0" in text:
            raise ValueError(f"{text!r} contains a NUL character")
        if len(text.encode()) > _UNIX_PATH_MAX:
            raise ValueError(f"{text!r} is too long for a unix socket path")
        return ListenAddress(path=text)
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r} is not [IPv6 address]:port")
        port_text = rest[1:] if rest else None
    elif text.count(":") > 1:
        raise ValueError(f"write an IPv6 address in brackets, as in [{text}]:8080")
    else:
        host, colon, port_text_or_empty = text.partition(":")
        port_text = port_text_or_empty if colon else None
    if any(char.isspace() for char in host) or "[" in host or "]" in host:
        raise ValueError(f"{host!r} is not a host name or address")
    if port_text is None:
        port = DEFAULT_HTTP_PORT
    elif re.fullmatch("[0-9]+", port_text) and int(port_text) <= 65535:
        port = int(port_text)
    else:
        raise ValueError(f"{port_text!r} is not a port number (0 to 65535)")
    return ListenAddress(host=host or DEFAULT_HTTP_HOST, port=port)


def is_loopback_name(host: str) -> bool:
    """Whether `host` surely means this machine only, judged from how it is written."""
    if host == "localhost":
        return True
    import ipaddress  # only configurations with TCP listeners pay for it

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: decided once it resolves, when the listener starts


def listener_problem(
    listen: str, *, allow_control: bool, has_token: bool, has_tls: bool, private: bool = False
) -> str | None:
    """Why a listener must not start as configured (judged before resolving names), or None.

    Control over TCP needs a token, and control beyond loopback needs TLS as well: anyone
    on the network could otherwise read the token off the wire and run commands as us.
    """
    try:
        address = parse_listen(listen)
    except ValueError as exc:
        return str(exc)
    if private and not has_token:
        return f"a private listener ({listen}) needs a token: set 'token' or 'token_file'"
    if address.path is not None or not allow_control:
        return None
    if not has_token:
        return (
            f"control over TCP ({listen}) needs an access token: set 'token' or "
            "'token_file', or use a unix socket"
        )
    if not has_tls and not is_loopback_name(address.host):
        return (
            f"control on {address.host}, which is not a loopback address, needs TLS: set "
            "'certfile', or listen on 127.0.0.1 or ::1"
        )
    return None


@dataclass(frozen=True)
class Flag(Shape[bool]):
    """true or false."""

    def check(self, value: object, at: Path, report: Reporter) -> bool | Invalid:
        if isinstance(value, bool):
            return value
        report.error(at, f"expected true or false, got {describe(value)}")
        return INVALID

    def json_schema(self, defs: Defs) -> JsonSchema:
        return {"type": "boolean"}


@dataclass(frozen=True)
class SafeListener(Rule):
    """The refusals of listener_problem, found while checking the file."""

    def check(self, value: Mapping[str, object], at: Path, report: Reporter) -> None:
        listen = value.get("listen")
        if not isinstance(listen, str) or not _parses(listen):
            return  # the key's own check reports it
        if "token" in value and "token_file" in value:
            report.key_error((*at, "token_file"), "give only one of 'token' or 'token_file'")
        problem = listener_problem(
            listen,
            allow_control=value.get("allow_control") is True,
            has_token="token" in value or "token_file" in value,
            has_tls="certfile" in value,
            private=value.get("private") is True,
        )
        if problem is not None:
            report.error(at, problem)

    def json_schema(self) -> JsonSchema:
        return {"not": {"required": ["token", "token_file"]}}


_HOST_NAME = re.compile(r"\*|[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?|\[[0-9A-Fa-f:.]+\]")


@dataclass(frozen=True)
class HostName(Shape[str]):
    """A name as clients write it in a Host header, without the port; or '*'."""

    def check(self, value: object, at: Path, report: Reporter) -> str | Invalid:
        if isinstance(value, str) and _HOST_NAME.fullmatch(value):
            return value.strip("[]")
        report.error(
            at, f"expected a host name or address without a port (or '*'), got {describe(value)}"
        )
        return INVALID

    def json_schema(self, defs: Defs) -> JsonSchema:
        return {"type": "string", "pattern": f"^(?:{_HOST_NAME.pattern})$"}


def _parses(listen: str) -> bool:
    try:
        parse_listen(listen)
    except ValueError:
        return False
    return bool(listen)


HTTP_LISTENER = Record(
    {
        "listen": Field(
            Parsed("a socket path or [host][:port]", parse_listen),
            "Where to listen: a unix socket path (it contains a '/'), or [host][:port] for "
            f"TCP (host {DEFAULT_HTTP_HOST} and port {DEFAULT_HTTP_PORT} when left out; "
            "write IPv6 addresses in brackets).",
            required=True,
        ),
        "certfile": Field(
            Text(), "A PEM file holding the certificate, its chain and its key: serve HTTPS."
        ),
        "allow_control": Field(
            Flag(),
            "Answer control paths (/manage/...); without it they get 403. Over TCP this "
            "needs a token, and TLS unless the address is loopback.",
        ),
        "timeout": Field(
            Number(minimum=0, exclusive=True),
            "Seconds a connection may take to send a request, or stay idle between requests.",
        ),
        "token": Field(
            Text(), "The access token clients must send as 'Authorization: Bearer TOKEN'."
        ),
        "token_file": Field(Text(), "A file holding the access token, read at start."),
        "private": Field(Flag(), "Require the token for status paths too."),
        "hosts": Field(
            ListOf(HostName()),
            "Names clients reach a TCP listener by, beyond its own address, IP addresses "
            "and localhost: requests with another Host header get 421 (a defence against "
            "DNS rebinding). '*' answers any name.",
        ),
    },
    lambda at, values: HttpListener(**values),
    rules=(SafeListener(),),
    what="HTTP listener (a map with at least 'listen')",
)
