"""The fleet of one test: its hosts under a key prefix of their own, and the cluster-task
scenario (three hosts, one runs `sched`) that several tests start from."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from fleet.harness import MARKER, CutProxy, EtcdCluster, Host, Markers, config_text, wait_until

TTL = 4  # seconds: the lease of every test host


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
            "commands": {"start": [sys.executable, MARKER, str(self.markers.directory), name,
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
            [sys.executable, "-m", "taskforce.cli.fleet", "status",
             "--etcd", self.url("config"), *args],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip

    def push(self, path: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "taskforce.cli.fleet", "push",
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


def holder(fleet: Fleet, task: str = "sched") -> str | None:
    """The one host running `task` (None: none); fails if several do."""
    live = [h for h, tasks in fleet.live().items() if task in tasks]
    assert len(live) <= 1, f"{task} runs on {live}"
    return live[0] if live else None


def start_three(fleet: Fleet, cut_off: bool = False) -> str:
    fleet.put_config(
        {"sched": fleet.task("sched", placement="cluster"), "common": fleet.task("common")}
    )
    for name in ("h1", "h2", "h3"):
        fleet.start(name, cut_off=cut_off)
    wait_until(lambda: holder(fleet), 15, "one host to run sched")
    fleet.wait_live({h: {"common"} | ({"sched"} if h == holder(fleet) else set())
                     for h in ("h1", "h2", "h3")})  # fmt: skip
    first = holder(fleet)
    assert first is not None
    return first


def sched_runs(fleet: Fleet) -> list[dict[str, Any]]:
    return sorted(fleet.markers.runs("sched"), key=lambda r: r["start"])
