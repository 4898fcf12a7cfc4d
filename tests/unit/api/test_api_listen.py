"""Listen strings, the listener safety rules, tokens, default socket paths, settings.http."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from taskforce.api import paths
from taskforce.api.listen import (
    ApiConfigError,
    default_listener,
    listener_from_flags,
    listeners_to_open,
    prepare,
)
from taskforce.config.errors import ConfigError
from taskforce.config.listeners import ListenAddress, listener_problem, parse_listen
from taskforce.config.model import HttpListener
from taskforce.config.validate import validate_document
from taskforce.config.yaml_source import load_document

# --- listen strings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("/run/taskforce.sock", ListenAddress(path="/run/taskforce.sock")),
        ("./api.sock", ListenAddress(path="./api.sock")),
        ("localhost", ListenAddress(host="localhost", port=8080)),
        (":9000", ListenAddress(host="127.0.0.1", port=9000)),
        ("0.0.0.0:80", ListenAddress(host="0.0.0.0", port=80)),
        ("[::1]:9000", ListenAddress(host="::1", port=9000)),
        ("[::]", ListenAddress(host="::", port=8080)),
        ("example.com:0", ListenAddress(host="example.com", port=0)),
    ],
)
def test_listen_strings(text: str, address: ListenAddress) -> None:
    assert parse_listen(text) == address


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("::1", "write an IPv6 address in brackets"),
        ("[::1", "is not [IPv6 address]:port"),
        ("[::1]9000", "is not [IPv6 address]:port"),
        ("host:http", "'http' is not a port number"),
        ("host:65536", "is not a port number"),
        ("host:", "'' is not a port number"),
        ("a host", "is not a host name or address"),
        ("/" + "x" * 120, "too long for a unix socket path"),
    ],
)
def test_bad_listen_strings(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_listen(text)


# --- the safety rules -------------------------------------------------------------------


def problem(listen: str, **flags: bool) -> str | None:
    options = {"allow_control": False, "has_token": False, "has_tls": False, **flags}
    return listener_problem(listen, **options)


def test_status_only_listeners_need_nothing() -> None:
    assert problem("0.0.0.0:8080") is None
    assert problem("/run/x.sock", allow_control=True) is None


def test_control_over_tcp_needs_a_token() -> None:
    message = problem("127.0.0.1:8080", allow_control=True)
    assert message is not None and "needs an access token" in message
    assert problem("127.0.0.1:8080", allow_control=True, has_token=True) is None
    assert problem("localhost", allow_control=True, has_token=True) is None
    assert problem("[::1]:1", allow_control=True, has_token=True) is None


@pytest.mark.parametrize("listen", ["0.0.0.0:8080", "[::]:8080", "192.0.2.1", "example.com"])
def test_control_beyond_loopback_needs_tls(listen: str) -> None:
    message = problem(listen, allow_control=True, has_token=True)
    assert message is not None and "needs TLS" in message
    assert problem(listen, allow_control=True, has_token=True, has_tls=True) is None


def test_a_private_listener_needs_a_token() -> None:
    message = listener_problem(
        "/run/x.sock", allow_control=False, has_token=False, has_tls=False, private=True
    )
    assert message is not None and "private" in message


def test_prepare_refuses_what_the_rules_refuse() -> None:
    with pytest.raises(ApiConfigError, match="needs an access token"):
        prepare(HttpListener(listen=":8080", allow_control=True))
    with pytest.raises(ApiConfigError, match="needs TLS"):
        listener_from_flags("0.0.0.0:8080", allow_control=True, token_file="/nonexistent")
    with pytest.raises(ApiConfigError, match="not a port number"):
        listener_from_flags("host:port")


def test_prepare_gives_the_access_rules_and_an_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    endpoint = prepare(HttpListener(listen="./api.sock", allow_control=True, token="s3cret"))
    assert endpoint.path == str(tmp_path / "api.sock")
    assert endpoint.access.allow_control and endpoint.access.token == b"s3cret"
    tcp = prepare(HttpListener(listen=":0", private=True, token="t", timeout=2.5))
    assert (tcp.path, tcp.host, tcp.port, tcp.timeout) == (None, "127.0.0.1", 0, 2.5)
    assert tcp.access.private and not tcp.access.allow_control and not tcp.tls


# --- tokens -----------------------------------------------------------------------------


def test_token_file_is_read_and_stripped(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("  abc-123\n")
    token_file.chmod(0o600)
    endpoint = prepare(HttpListener(listen=":1", allow_control=True, token_file=str(token_file)))
    assert endpoint.access.token == b"abc-123"


def test_a_token_file_others_can_read_is_used_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("abc")
    token_file.chmod(0o644)
    assert prepare(HttpListener(listen=":1", token_file=str(token_file))).access.token == b"abc"
    assert "can be read by others" in caplog.text


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "is empty"), ("\n", "is empty"), ("two words", "without spaces"), ("é", "ASCII")],
)
def test_bad_tokens_are_refused(tmp_path: Path, content: str, message: str) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(content)
    with pytest.raises(ApiConfigError, match=message):
        prepare(HttpListener(listen=":1", token_file=str(token_file)))


@pytest.mark.parametrize("token", ["", "two words", "line\n", "é"])
def test_bad_configured_tokens_are_refused(token: str) -> None:
    with pytest.raises(ApiConfigError, match="the token"):
        prepare(HttpListener(listen=":1", token=token))


def test_a_missing_token_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ApiConfigError, match="cannot read the token file"):
        prepare(HttpListener(listen=":1", token_file=str(tmp_path / "none")))


# --- the default socket -----------------------------------------------------------------


def test_default_socket_is_next_to_the_pidfile(tmp_path: Path) -> None:
    listener = default_listener("/var/run/taskforce.pid")
    assert listener == HttpListener(listen="/var/run/taskforce.sock", allow_control=True)
    assert default_listener(str(tmp_path / "tf")).listen == str(tmp_path / "tf.sock")


def test_default_socket_without_a_pidfile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1234")
    assert default_listener(None).listen == "/run/user/1234/taskforce.sock"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert default_listener(None).listen in ("/run/taskforce.sock", "/var/run/taskforce.sock")
    monkeypatch.setattr(os, "geteuid", lambda: 1234)
    assert default_listener(None).listen == "/tmp/taskforce-1234/taskforce.sock"
    assert paths.default_socket_path(None, {"XDG_RUNTIME_DIR": "relative"}) == (
        "/tmp/taskforce-1234/taskforce.sock"
    )


def test_which_listeners_open(tmp_path: Path) -> None:
    pidfile = str(tmp_path / "tf.pid")
    extra = HttpListener(listen=":8080")
    configured = HttpListener(listen="/run/a.sock")
    assert listeners_to_open(None, pidfile) == ([], [default_listener(pidfile)])
    assert listeners_to_open(None, pidfile, [extra]) == ([extra], [default_listener(pidfile)])
    assert listeners_to_open((), pidfile) == ([], [])
    assert listeners_to_open((configured,), None, [extra]) == ([configured, extra], [])


# --- settings.http in the configuration file --------------------------------------------


def settings(text: str) -> tuple[HttpListener, ...] | None:
    config = validate_document(load_document('{"settings": ' + text + "}", "t.conf"))
    return config.settings.http


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        settings(text)
    return [str(problem).split(": ", 1)[1] for problem in caught.value.problems]


def test_http_settings() -> None:
    assert settings("{}") is None
    assert settings('{"http": []}') == ()
    assert settings('{"http": {"listen": "/run/tf.sock"}}') == (HttpListener("/run/tf.sock"),)
    listeners = settings(
        '{"http": [{"listen": "0.0.0.0:443", "certfile": "/etc/tf.pem", "allow_control": true,'
        ' "token_file": "/etc/tf.token", "timeout": 3, "private": true,'
        ' "hosts": ["tf.example.com", "[::1]", "*"]}]}'
    )
    assert listeners == (
        HttpListener(
            listen="0.0.0.0:443",
            certfile="/etc/tf.pem",
            allow_control=True,
            timeout=3.0,
            token_file="/etc/tf.token",
            private=True,
            hosts=("tf.example.com", "::1", "*"),
        ),
    )


def test_http_settings_problems() -> None:
    assert problems('{"http": {}}') == ["settings.http: missing the required key 'listen'"]
    assert problems('{"http": {"listen": ":80", "allow_control": true}}') == [
        "settings.http: control over TCP (:80) needs an access token: set 'token' or "
        "'token_file', or use a unix socket"
    ]
    assert problems('{"http": {"listen": "[::1", "allow_control": "yes"}}') == [
        "settings.http.listen: '[::1' is not [IPv6 address]:port",
        "settings.http.allow_control: expected true or false, got the string 'yes'",
    ]
    assert problems('{"http": {"listen": "/a/b", "token": "x", "token_file": "y"}}') == [
        "settings.http.token_file: give only one of 'token' or 'token_file'"
    ]
    assert problems('{"http": {"listen": "/a/b", "timeout": 0, "privat": true}}') == [
        "settings.http.timeout: must be greater than 0, got 0",
        "settings.http.privat: unknown key 'privat' (did you mean 'private'?)",
    ]


def test_hosts_are_names_without_ports() -> None:
    for bad in ('"tf.example.com:443"', '"a b"', '""', '"http://x"', "3", '"-x"'):
        found = problems('{"http": {"listen": ":80", "hosts": [' + bad + "]}}")
        assert len(found) == 1 and "without a port" in found[0], (bad, found)
