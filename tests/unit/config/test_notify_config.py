"""`settings.notify`: what validation accepts and refuses (with where and why), the schema
agreeing with it, and the credentials hidden from status readers."""

from __future__ import annotations

import json

import pytest

from taskforce.api.status import _without_tokens
from taskforce.config.errors import ConfigError
from taskforce.config.load import parse_config
from taskforce.config.model import NotifyEvent, NotifyTarget
from taskforce.config.notify_targets import without_secrets
from taskforce.config.schema import config_schema

jsonschema = pytest.importorskip("jsonschema")
VALIDATOR = jsonschema.Draft202012Validator(config_schema())


def notify(text: str) -> tuple[NotifyTarget, ...]:
    return parse_config(f"settings: {{notify: {text}}}", "t.conf").settings.notify


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(f"settings: {{notify: {text}}}", "t.conf")
    return [f"{p.path}: {p.message}" for p in caught.value.problems]


def test_the_default_is_no_target() -> None:
    assert parse_config("{}", "t.conf").settings.notify == ()


def test_targets() -> None:
    assert notify(
        '[{url: "https://u:p@hooks.example.com:8443/x?k=1", headers: {X-Key: abc},'
        " events: [exited, flapping], timeout: 2.5, attempts: 5, queue: 10},"
        ' {command: ["/usr/bin/logger", -t, tf], events: recovered}]'
    ) == (
        NotifyTarget(
            url="https://u:p@hooks.example.com:8443/x?k=1",
            headers=(("X-Key", "abc"),),
            events=(NotifyEvent.EXITED, NotifyEvent.FLAPPING),
            timeout=2.5,
            attempts=5,
            queue=10,
        ),
        NotifyTarget(command=("/usr/bin/logger", "-t", "tf"), events=(NotifyEvent.RECOVERED,)),
    )
    # A lone target needs no list; every event by default; an empty list mutes.
    (target,) = notify("{url: http://127.0.0.1:9/hook}")
    assert target.events == tuple(NotifyEvent) and target.attempts == 3
    assert notify("{command: [x], events: []}")[0].events == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{}", "settings.notify: needs one of 'url' or 'command'"),
        (
            "{url: http://h, command: [x]}",
            "settings.notify.command: give only one of 'url' or 'command', not both",
        ),
        ("{url: ftp://h}", "settings.notify.url: 'ftp://h' is not an http:// or https:// URL"),
        ("{url: 'http://h x'}", "settings.notify.url: 'http://h x' contains spaces or control"),
        ("{url: 'http://h:99999'}", "settings.notify.url: 'http://h:99999' has a bad port"),
        ("{url: 'https:///x'}", "settings.notify.url: 'https:///x' has no host"),
        # urlsplit raises on a bracket left open: reported, never a traceback.
        ("{url: 'http://[::1'}", "settings.notify.url: 'http://[::1' is not a URL"),
        ("{command: []}", "settings.notify.command: expected a list such as"),
        ("{command: [x, '']}", "settings.notify.command[1]: expected a non-empty string"),
        ("{command: [x], headers: {A: b}}", "settings.notify.headers: 'headers' is only used"),
        ("{url: http://h, headers: {Host: x}}", "settings.notify.headers.Host: 'Host' is set by"),
        ("{url: http://h, headers: {'a b': x}}", "settings.notify.headers.a b: 'a b' is not an"),
        ("{url: http://h, headers: {A: 1}}", "settings.notify.headers.A: expected a single-line"),
        ('{url: http://h, headers: {A: "x\\ny"}}', "settings.notify.headers.A: expected a"),
        ("{url: http://h, events: [exit]}", "settings.notify.events[0]: 'exit' is not one of"),
        ("{url: http://h, attempts: 0}", "settings.notify.attempts: expected a whole number"),
        ("{url: http://h, queue: 1.5}", "settings.notify.queue: expected a whole number"),
        ("{url: http://h, timeout: 0}", "settings.notify.timeout: must be greater than 0"),
        ("{url: http://h, retries: 3}", "settings.notify.retries: unknown key 'retries'"),
    ],
)
def test_refusals(text: str, expected: str) -> None:
    found = problems(text)
    assert any(p.startswith(expected) for p in found), found


@pytest.mark.parametrize(
    "target",
    [
        {"url": "https://h/x", "headers": {"X-A": "b"}, "events": ["exited"], "attempts": 2},
        {"command": ["x", "-y"], "events": "flapping", "timeout": 1, "queue": 5},
    ],
)
def test_the_schema_accepts_what_validation_accepts(target: dict[str, object]) -> None:
    assert VALIDATOR.is_valid({"settings": {"notify": [target]}})


@pytest.mark.parametrize(
    "target",
    [
        {},
        {"url": "https://h", "command": ["x"]},
        {"command": []},
        {"command": ["x"], "headers": {"A": "b"}},
        {"url": "ftp://h"},
        {"url": "https://h", "attempts": 0},
        {"url": "https://h", "events": ["exit"]},
        {"url": "https://h", "headers": {"a b": "c"}},
    ],
)
def test_the_schema_refuses_what_validation_refuses(target: dict[str, object]) -> None:
    assert not VALIDATOR.is_valid({"settings": {"notify": [target]}})
    with pytest.raises(ConfigError):
        parse_config(json.dumps({"settings": {"notify": [target]}}), "t.conf")


def test_status_readers_see_no_credentials() -> None:
    written = [
        {"url": "https://u:pw@hooks.example.com/services/T0/B0/s3cret?k=v", "headers": {"A": "k"}},
        {"command": ["logger"], "events": ["exited"]},
    ]
    assert without_secrets(written) == [
        {"url": "https://hooks.example.com/(hidden)", "headers": {"A": "(hidden)"}},
        {"command": ["logger"], "events": ["exited"]},
    ]
    assert without_secrets({"url": "http://h/x"}) == {"url": "http://h/(hidden)"}
    document = {
        "tasks": {},
        "settings": {"notify": written, "http": {"listen": "x/s", "token": "t"}},
    }
    shown = _without_tokens(document)
    assert shown == {
        "tasks": {},
        "settings": {
            "notify": without_secrets(written),
            "http": {"listen": "x/s", "token": "(hidden)"},
        },
    }
    assert document["settings"]["notify"] == written  # the loaded document is untouched
