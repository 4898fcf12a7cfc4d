"""The `settings.notify` targets: webhooks and commands that hear about task state changes.

Checked here, once, so that delivery (:mod:`taskforce.runtime.notify.notifications`) never
meets a URL it cannot parse or a header that would break the request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from taskforce.config.model import NotifyEvent, NotifyTarget
from taskforce.config.shapes import (
    INVALID,
    Defs,
    Invalid,
    JsonSchema,
    Number,
    Parsed,
    Reporter,
    Shape,
    Whole,
    describe,
    enum_choice,
)
from taskforce.config.shapes_compound import ExactlyOne, Field, ListOf, Record, Rule
from taskforce.config.yaml_source import Path

# RFC 9110 token characters: what a header name may be made of.
HEADER_NAME = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
# Visible characters, spaces and tabs: a value cannot end the header early (no CR, LF).
HEADER_VALUE = r"^[\t\x20-\x7e\x80-\uffff]*$"
# Headers the webhook client writes itself; a second copy would make the request invalid.
OWN_HEADERS = ("host", "content-length", "content-type", "connection", "transfer-encoding")


def check_url(url: str) -> None:
    """Raise ValueError saying why `url` cannot be a webhook (an http:// or https:// URL
    with a host)."""
    if any(char.isspace() or ord(char) < 0x20 or ord(char) == 0x7F for char in url):
        raise ValueError(f"{url!r} contains spaces or control characters")
    from urllib.parse import urlsplit  # here: it imports ipaddress (memory)

    try:
        parts = urlsplit(url)
    except ValueError as err:  # a bracket left open
        raise ValueError(f"{url!r} is not a URL ({err})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"{url!r} is not an http:// or https:// URL")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"{url!r} has a bad port number") from None
    if not parts.hostname:
        raise ValueError(f"{url!r} has no host")


@dataclass(frozen=True)
class Argv(Shape[tuple[str, ...]]):
    """A command as a list: the program, then its arguments (never run through a shell)."""

    def check(self, value: object, at: Path, report: Reporter) -> tuple[str, ...] | Invalid:
        if not isinstance(value, list) or not value:
            got = "an empty list" if value == [] else describe(value)
            report.error(at, f'expected a list such as ["/usr/bin/logger", "-t", "tf"], got {got}')
            return INVALID
        bad = [i for i, item in enumerate(value) if not isinstance(item, str) or not item]
        for index in bad:
            report.error((*at, index), f"expected a non-empty string, got {describe(value[index])}")
        return INVALID if bad else tuple(value)

    def json_schema(self, defs: Defs) -> JsonSchema:
        return {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1}


@dataclass(frozen=True)
class Headers(Shape[tuple[tuple[str, str], ...]]):
    """Extra HTTP request headers, name -> value."""

    def check(
        self, value: object, at: Path, report: Reporter
    ) -> tuple[tuple[str, str], ...] | Invalid:
        if not isinstance(value, dict):
            report.error(at, f"expected a map of header names to values, got {describe(value)}")
            return INVALID
        before = len(report.problems)
        for name, item in value.items():
            if not isinstance(name, str) or not re.fullmatch(HEADER_NAME, name):
                report.key_error((*at, name), f"{name!r} is not an HTTP header name")
            elif name.lower() in OWN_HEADERS:
                report.key_error((*at, name), f"{name!r} is set by taskforce itself")
            if not isinstance(item, str) or not re.fullmatch(HEADER_VALUE, item):
                report.error((*at, name), f"expected a single-line string, got {describe(item)}")
        if len(report.problems) > before:
            return INVALID
        return tuple((str(name), str(item)) for name, item in value.items())

    def json_schema(self, defs: Defs) -> JsonSchema:
        return {
            "type": "object",
            "propertyNames": {"pattern": HEADER_NAME},
            "additionalProperties": {"type": "string"},
        }


@dataclass(frozen=True)
class OnlyWith(Rule):
    """`key` may only be given together with `other`."""

    key: str
    other: str

    def check(self, value: Mapping[str, object], at: Path, report: Reporter) -> None:
        if self.key in value and self.other not in value:
            report.key_error((*at, self.key), f"{self.key!r} is only used with {self.other!r}")

    def json_schema(self) -> JsonSchema:
        return {"dependentRequired": {self.key: [self.other]}}


NOTIFY_TARGET = Record(
    {
        "url": Field(
            Parsed("an http:// or https:// URL", check_url, pattern="^[hH][tT][tT][pP][sS]?://"),
            "A webhook: the event is POSTed to this http:// or https:// URL as a JSON "
            "document (user:password@ in the URL is sent as basic authentication).",
        ),
        "command": Field(
            Argv(),
            "A command run for each event, without a shell, the event in its environment: "
            "TASKFORCE_EVENT, TASKFORCE_TASK, TASKFORCE_DETAIL, TASKFORCE_MESSAGE, "
            "TASKFORCE_JSON and the rest. It succeeds by exiting 0.",
        ),
        "headers": Field(Headers(), "Extra request headers of a webhook, name to value."),
        "events": Field(
            ListOf(enum_choice(NotifyEvent), single_ok=True),
            "The events to send (default all): exited (a process exited unexpectedly), "
            "flapping (it keeps failing; restarts back off), recovered (it runs steadily "
            "again), unhealthy (a liveness probe failed too often: restarted), failed "
            "(restart.max_failures reached: given up), reload_failed (a new configuration "
            "was not applied).",
        ),
        "timeout": Field(
            Number(minimum=0, exclusive=True),
            "Seconds one delivery attempt may take (default 10); a command is then killed.",
        ),
        "attempts": Field(
            Whole(1), "Attempts per event before it is given up (default 3), backing off."
        ),
        "queue": Field(
            Whole(1),
            "Events waiting for delivery at most (default 100); beyond it the oldest are "
            "dropped, and the number dropped is logged.",
        ),
    },
    lambda at, values: NotifyTarget(**values),
    rules=(ExactlyOne(("url", "command")), OnlyWith("headers", "url")),
    what="notification target (a map with 'url' or 'command')",
)


def without_secrets(targets: object) -> object:
    """`settings.notify` as written, fit for status readers: a webhook's URL shows only
    where it goes (its path and query often are the secret) and header values are hidden."""
    items = targets if isinstance(targets, list) else [targets]
    shown = [_target_without_secrets(item) if isinstance(item, dict) else item for item in items]
    return shown if isinstance(targets, list) else shown[0]


def _target_without_secrets(target: dict[str, object]) -> dict[str, object]:
    shown = dict(target)
    url = shown.get("url")
    if isinstance(url, str):
        try:
            from urllib.parse import urlsplit

            parts = urlsplit(url)
            shown["url"] = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/(hidden)"
        except ValueError:
            shown["url"] = "(hidden)"
    headers = shown.get("headers")
    if isinstance(headers, dict):
        shown["headers"] = {name: "(hidden)" for name in headers}
    return shown
