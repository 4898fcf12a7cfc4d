"""etcd URLs (no etcd needed)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from taskforce.fleet.urls import (
    DEFAULT_TTL,
    PASSWORD_ENV,
    EtcdUrlError,
    is_etcd_url,
    parse_etcd_url,
)


def test_urls_are_told_from_paths() -> None:
    assert is_etcd_url("etcd://h/k") and is_etcd_url("ETCDS://h/k")
    assert not is_etcd_url("/etc/taskforce.conf")
    assert not is_etcd_url("etcd.conf") and not is_etcd_url(None)


def test_endpoints_key_prefix_and_defaults() -> None:
    url = parse_etcd_url("etcd://10.0.0.1,10.0.0.2:3379,[::1]:4379/taskforce/config")
    assert url.connection.endpoints == (("10.0.0.1", 2379), ("10.0.0.2", 3379), ("::1", 4379))
    assert url.key == "/taskforce/config" and url.prefix == "/taskforce/"
    assert url.ttl == DEFAULT_TTL and not url.connection.tls
    assert url.display == "etcd://10.0.0.1:2379,10.0.0.2:3379,[::1]:4379/taskforce/config"


def test_host_names_are_substituted() -> None:
    url = parse_etcd_url("etcd://h/fleet/roles/{Task_host}", "web1", "web1.example.com")
    assert url.key == "/fleet/roles/web1"
    assert parse_etcd_url("etcd://h/r/{Task_fqdn}", "a", "a.b").key == "/r/a.b"


def test_options(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    url = parse_etcd_url(
        f"etcd://h/k/c?ttl=5&prefix=/p&cacert=/ca.pem&user=tf&password_file={secret}&cache=/c"
    )
    assert url.ttl == 5 and url.prefix == "/p/" and url.cache == "/c"
    assert url.connection.tls and url.connection.cacert == "/ca.pem"
    assert url.connection.user == "tf" and url.connection.password == "s3cret"
    assert "s3cret" not in repr(url.connection) and "s3cret" not in url.display
    assert parse_etcd_url("etcds://h/k").connection.tls


def test_password_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "pw")
    assert parse_etcd_url("etcd://tf@h/k").connection.password == "pw"


@pytest.mark.parametrize(
    "text, message",
    [
        ("etcd://h", "names no key"),
        ("etcd://h/", "names no key"),
        ("etcd://h:99999/k", "bad port"),
        ("etcd://h/k?color=red", "unknown option"),
        ("etcd://h/k?ttl=1", "ttl="),
        ("etcd://u:pw@h/k", "password_file="),
        ("etcd://h/k?cert=/c.pem", "both cert= and key="),
        ("http://h/k", "not an etcd"),
    ],
)
def test_mistakes_are_named(text: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with pytest.raises(EtcdUrlError, match=re.escape(message)):
        parse_etcd_url(text)


def test_a_user_needs_a_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with pytest.raises(EtcdUrlError, match="needs a password"):
        parse_etcd_url("etcd://tf@h/k")


def test_grpc_is_loaded_with_its_fork_handlers_off_when_the_client_is_looked_for() -> None:
    # gRPC loaded before fleet/session.py turned its fork handlers off kept them on, and
    # they aborted a child forked while its threads ran (a test runner's `taskforce -C`
    # child died of SIGABRT before exec).
    script = (
        "import os, sys\n"
        "from taskforce.fleet.urls import missing_fleet_extra\n"
        "assert missing_fleet_extra() is None\n"
        "print('grpc' in sys.modules, os.environ.get('GRPC_ENABLE_FORK_SUPPORT'))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRPC_", "TASKFORCE_"))}
    ran = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True,
        env=env,
    )  # fmt: skip
    assert ran.stdout.split() == ["True", "0"]
