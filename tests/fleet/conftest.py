"""Fixtures of the fleet tests: a three-member etcd cluster on loopback ports (started
once for the session, data in a temporary directory), and a fleet of taskforce hosts per
test under a key prefix of its own. Every process is stopped, whatever happens.

etcd comes from Debian's etcd-server package (tests/fleet/setup.sh installs it); without
it the tests are skipped, saying so.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet.harness import ETCD, CutProxy, EtcdCluster, Host, Markers, config_text, wait_until

TTL = 4  # seconds: the lease of every test host


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/fleet/" in str(item.fspath):
            item.add_marker(pytest.mark.timeout(90))


@pytest.fixture(scope="session")
def etcd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    if not os.access(ETCD, os.X_OK):
        pytest.skip("etcd is not installed: run tests/fleet/setup.sh (Debian's etcd-server)")
    try:
        import aetcd  # noqa: F401
    except ImportError:
        pytest.skip("the fleet extra is not installed: pip install -e '.[fleet]'")
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd"))
    try:
        cluster.start()
        cluster.wait_healthy(timeout=30)
        yield cluster
    finally:
        cluster.stop_all()


@pytest.fixture
def etcd(etcd_cluster: EtcdCluster) -> Iterator[EtcdCluster]:
    """The cluster with every member up (a test may stop some: they come back after it)."""
    etcd_cluster.start()
    etcd_cluster.wait_healthy()
    yield etcd_cluster
    etcd_cluster.start()


class Fleet:
    """Hosts of one test, under its own key prefix."""

    def __init__(self, etcd: EtcdCluster, base: Path) -> None:
        self.etcd = etcd
        self.base = base
        self.prefix = f"/t{uuid.uuid4().hex[:8]}/"
        self.markers = Markers(base / "markers")
        self.hosts: dict[str, Host] = {}
        self.proxies: dict[str, CutProxy] = {}

    def url(self, what: str, endpoints: str | None = None, **options: Any) -> str:
        return f"etcd://{endpoints or self.etcd.endpoints}{self.prefix}{what}" + (
            "?" + "&".join(f"{k}={v}" for k, v in options.items()) if options else ""
        )

    def put_config(self, tasks: dict[str, Any], **settings: Any) -> None:
        self.etcd.put(self.prefix + "config", config_text(tasks, **settings))

    def put_roles(self, host: str, *roles: str) -> None:
        self.etcd.put(f"{self.prefix}roles/{host}", "".join(f"{r}\n" for r in roles))

    def task(self, name: str, *args: str, **extra: Any) -> dict[str, Any]:
        return {
            "commands": {"start": [sys.executable, _MARKER, str(self.markers.directory), name,
                                   *args]},
            **extra,
        }  # fmt: skip

    def start(self, name: str, *roles: str, cut_off: bool = False, start: bool = True) -> Host:
        """A host with these roles; `cut_off`: reaching etcd through a proxy that can cut."""
        self.put_roles(name, *roles)
        endpoints = None
        if cut_off:
            proxy = self.proxies[name] = CutProxy(self.etcd.client_ports)
            endpoints = proxy.endpoints
        host = Host(
            name,
            self.url("config", endpoints, ttl=TTL),
            self.url("roles/{Task_host}", endpoints),
            self.base,
        )
        self.hosts[name] = host
        if start:
            host.start()
        return host

    def status(self) -> dict[str, Any]:
        keys = self.etcd.get_prefix(self.prefix + "status/")
        return {k.rsplit("/", 1)[-1]: json.loads(v) for k, v in keys.items()}

    def live(self) -> dict[str, dict[str, list[int]]]:
        return self.markers.live()

    def wait_live(self, expected: dict[str, set[str]], timeout: float = 20.0) -> Any:
        """Until each host runs exactly `expected[host]` tasks (one process each)."""

        def matches() -> Any:
            live = self.live()
            got = {h: set(live.get(h, {})) for h in expected}
            single = all(len(p) == 1 for tasks in live.values() for p in tasks.values())
            return live if got == expected and single else None

        try:
            return wait_until(matches, timeout, f"tasks running as {expected}")
        except AssertionError:
            raise AssertionError(f"{self.live()} is not {expected}\n{self.logs()}") from None

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "taskforce.fleet.cli", "status",
             "--etcd", self.url("config"), *args],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip

    def push(self, path: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "taskforce.fleet.cli", "push",
             "--etcd", self.url("config"), *args, str(path)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n{h.read_log()[-4000:]}" for n, h in self.hosts.items())

    def close(self) -> None:
        for proxy in self.proxies.values():
            proxy.restore()  # so that hosts can leave etcd cleanly
        hosts = list(self.hosts.values())
        for host in hosts:
            with contextlib.suppress(Exception):
                if host.alive() and host.proc is not None:
                    host.proc.terminate()
        for host in hosts:
            with contextlib.suppress(Exception):
                host.stop()
        self.markers.kill_all()
        for proxy in self.proxies.values():
            proxy.close()


_MARKER = str(Path(__file__).resolve().parent / "marker.py")


@pytest.fixture
def fleet(etcd: EtcdCluster, tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(etcd, tmp_path)
    try:
        yield fleet
    finally:
        fleet.close()
