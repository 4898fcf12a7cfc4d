"""A fleet on one machine: a real etcd cluster on loopback ports, taskforce hosts, and
TCP proxies to cut a host off from etcd. Used by the tests and by bench/fleet_bench.py.

Nothing here sleeps to wait: every wait polls a condition until a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from support.environ import inherited
from support.wait import wait_for

HERE = Path(__file__).resolve().parent
MARKER = str(HERE / "marker.py")
ETCD = shutil.which("etcd") or "/usr/bin/etcd"
VERBOSE_ENV = "TASKFORCE_FLEET_TEST_VERBOSE"


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `condition` until truthy; AssertionError after `timeout` seconds."""
    return wait_for(condition, timeout, what)


def free_ports(count: int) -> list[int]:
    """Loopback ports free right now (bound then released together, so all distinct)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


# ----- etcd ---------------------------------------------------------------------------


class EtcdCluster:
    """Three etcd members on loopback, data under `base`; members stop and start at will."""

    def __init__(self, base: Path, size: int = 3) -> None:
        self.base = base
        ports = free_ports(2 * size)
        self.client_ports = ports[:size]
        self.peer_ports = ports[size:]
        self.names = [f"m{i}" for i in range(size)]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * size
        self._started = [False] * size

    @property
    def endpoints(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.client_ports)

    def url(self, key: str, **options: Any) -> str:
        query = "&".join(f"{k}={v}" for k, v in options.items())
        return f"etcd://{self.endpoints}{key}" + (f"?{query}" if query else "")

    def start(self, index: int | None = None) -> None:
        for i in range(len(self.names)) if index is None else [index]:
            if self.procs[i] is not None and self.procs[i].poll() is None:  # type: ignore[union-attr]
                continue
            cluster = ",".join(
                f"{n}=http://127.0.0.1:{p}"
                for n, p in zip(self.names, self.peer_ports, strict=True)
            )
            log = open(self.base / f"{self.names[i]}.log", "ab")  # noqa: SIM115 (the child keeps it)
            self.procs[i] = subprocess.Popen(
                [
                    ETCD,
                    f"--name={self.names[i]}",
                    f"--data-dir={self.base / self.names[i]}",
                    f"--listen-client-urls=http://127.0.0.1:{self.client_ports[i]}",
                    f"--advertise-client-urls=http://127.0.0.1:{self.client_ports[i]}",
                    f"--listen-peer-urls=http://127.0.0.1:{self.peer_ports[i]}",
                    f"--initial-advertise-peer-urls=http://127.0.0.1:{self.peer_ports[i]}",
                    f"--initial-cluster={cluster}",
                    "--initial-cluster-state=new",
                    "--initial-cluster-token=taskforce-tests",
                    # Fast elections: losing a member costs well under a lease's guard.
                    "--heartbeat-interval=50",
                    "--election-timeout=500",
                    "--logger=zap",
                    "--log-outputs=stderr",
                    "--log-level=warn",
                ],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
            log.close()
            self._started[i] = True

    def stop(self, index: int, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[index]
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            proc.wait(timeout=10)
        self.procs[index] = None

    def stop_all(self) -> None:
        for i in range(len(self.names)):
            self.stop(i)

    def running(self) -> list[int]:
        return [i for i, p in enumerate(self.procs) if p is not None and p.poll() is None]

    def wait_healthy(self, timeout: float = 20.0) -> None:
        """Until a write goes through (the cluster has a leader and a quorum)."""

        def writable() -> bool:
            try:
                self.put("/health", "ok", timeout=1.0)
                return True
            except OSError:
                return False

        wait_until(writable, timeout, "etcd to accept writes")

    # Client operations, through taskforce's own session (one per call: tests are few).

    def _run(self, operation: Callable[[Any], Any], timeout: float) -> Any:
        from taskforce.fleet.client import with_any_member
        from taskforce.fleet.urls import parse_etcd_url

        connection = parse_etcd_url(self.url("/x")).connection
        return asyncio.run(with_any_member(connection, operation, rpc_timeout=timeout))

    def put(self, key: str, value: str | bytes, timeout: float = 2.0) -> int:
        data = value.encode() if isinstance(value, str) else value
        return int(self._run(lambda s: s.put(key.encode(), data), timeout))

    def get(self, key: str, timeout: float = 2.0) -> bytes | None:
        kv, _ = self._run(lambda s: s.get(key.encode()), timeout)
        return None if kv is None else bytes(kv.value)

    def get_prefix(self, prefix: str, timeout: float = 2.0) -> dict[str, bytes]:
        kvs, _ = self._run(lambda s: s.get_prefix(prefix.encode()), timeout)
        return {kv.key.decode(): kv.value for kv in kvs}


# ----- a proxy that can cut a host off --------------------------------------------------


class CutProxy:
    """Forwards loopback ports to etcd members; cut() makes it a black hole (connections
    stay open, nothing goes through: a network partition, not a refused connection)."""

    def __init__(self, targets: list[int]) -> None:
        self.targets = targets
        self.ports = free_ports(len(targets))
        self._listeners: list[socket.socket] = []
        self._selector = selectors.DefaultSelector()
        self._pairs: dict[socket.socket, socket.socket] = {}
        self._cut = False
        self._lock = threading.Lock()
        self._stop = False
        for port, target in zip(self.ports, targets, strict=True):
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", port))
            listener.listen(64)
            listener.setblocking(False)
            self._selector.register(listener, selectors.EVENT_READ, target)
            self._listeners.append(listener)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def endpoints(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def cut(self) -> None:
        with self._lock:
            self._cut = True

    def restore(self) -> None:
        """Forward again; connections held during the cut are closed (as a partition's
        end leaves them: the client notices and reconnects)."""
        with self._lock:
            self._cut = False
            for sock in list(self._pairs):
                self._close(sock)

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5)
        for sock in list(self._pairs):
            self._close(sock)
        for listener in self._listeners:
            listener.close()
        self._selector.close()

    def _serve(self) -> None:
        while not self._stop:
            for key, _ in self._selector.select(timeout=0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                with self._lock:
                    if sock in self._listeners:
                        self._accept(sock, key.data)
                    elif sock in self._pairs:
                        self._forward(sock)

    def _accept(self, listener: socket.socket, target: int) -> None:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        upstream = socket.socket()
        try:
            upstream.connect(("127.0.0.1", target))
        except OSError:
            client.close()  # the member is down: refuse, as it would
            upstream.close()
            return
        for sock in (client, upstream):
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ)
        self._pairs[client] = upstream
        self._pairs[upstream] = client

    def _forward(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._close(sock)
            return
        if self._cut:
            return  # swallowed: the black hole
        try:
            self._pairs[sock].sendall(data)
        except OSError:
            self._close(sock)

    def _close(self, sock: socket.socket) -> None:
        peer = self._pairs.pop(sock, None)
        for s in (sock, peer):
            if s is None:
                continue
            self._pairs.pop(s, None)
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(s)
            s.close()


# ----- taskforce hosts ----------------------------------------------------------------


class Host:
    """One taskforce acting as host `name` of the fleet."""

    def __init__(
        self, name: str, config_url: str, roles_url: str | None, base: Path, **env: str
    ) -> None:
        self.name = name
        self.config_url = config_url
        self.roles_url = roles_url
        self.base = base
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = base / f"{name}.log"

    def start(self) -> None:
        runtime = self.base / f"run-{self.name}"
        runtime.mkdir(mode=0o700, exist_ok=True)
        env = {
            **inherited(),
            "TASKFORCE_HOST": self.name,
            "TASKFORCE_FLEET_CACHE": str(self.base / "cache"),
            "XDG_RUNTIME_DIR": str(runtime),
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        roles = [] if self.roles_url is None else [self.roles_url]
        argv = [sys.executable, "-m", "taskforce", "-e", "-p", "-", "-f", self.config_url]
        argv += ["-r", *roles] if roles else []
        if os.environ.get(VERBOSE_ENV):  # debugging a fleet test: the hosts' debug logs
            argv.append("-v")
        log = open(self.log, "ab")  # noqa: SIM115 (the child keeps it)
        self.proc = subprocess.Popen(
            argv, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
        log.close()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> list[int]:
        """SIGKILL taskforce and its task processes at once (the host dies); their pids."""
        victims = [self.pid, *descendants(self.pid)]
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(timeout=10)
        return victims

    def read_log(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


# ----- what ran where ------------------------------------------------------------------


class Markers:
    """The records of marker.py processes under one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def runs(self, task: str | None = None) -> list[dict[str, Any]]:
        """Every process that ran: task, host, pid, start, stop (None: not stopped)."""
        found = []
        for path in self.directory.iterdir():
            parts = path.name.split(".")
            if len(parts) != 3 or (task is not None and parts[0] != task):
                continue
            start = stop = None
            args = ""
            for line in path.read_text().splitlines():
                words = line.split(" ", 2)
                if words[0] == "start":
                    start = float(words[1])
                    args = words[2] if len(words) > 2 else ""
                elif words[0] == "stop":
                    stop = float(words[1])
            if start is None:
                continue
            pid = int(parts[2])
            if stop is None and not _alive(pid):
                stop = -1.0  # killed without a word (SIGKILL): ended, when unknown
            found.append(
                {"task": parts[0], "host": parts[1], "pid": pid, "start": start, "stop": stop,
                 "args": args}
            )  # fmt: skip
        return found

    def live(self, task: str | None = None) -> dict[str, dict[str, list[int]]]:
        """host -> task -> pids of its processes alive now."""
        out: dict[str, dict[str, list[int]]] = {}
        for run in self.runs(task):
            if run["stop"] is None:
                out.setdefault(run["host"], {}).setdefault(run["task"], []).append(run["pid"])
        return out

    def kill_all(self) -> None:
        for run in self.runs():
            if run["stop"] is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(run["pid"], signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def task(directory: Path, name: str, *args: str, **extra: Any) -> dict[str, Any]:
    """A task configuration running marker.py."""
    return {
        "commands": {"start": [sys.executable, MARKER, str(directory), name, *args]},
        **extra,
    }


def config_text(tasks: dict[str, Any], **settings: Any) -> str:
    """A configuration, as JSON (which is YAML); short restarts and stops for tests."""
    base = {"stop_timeout": 2, "restart": {"initial_delay": 0.1, "max_delay": 1}, "http": []}
    return json.dumps({"settings": {**base, **settings}, "tasks": tasks}, indent=1)


@contextlib.contextmanager
def fleet_hosts(hosts: list[Host], markers: Markers) -> Iterator[list[Host]]:
    """Start the hosts; stop them and every process they left, whatever happens."""
    try:
        for host in hosts:
            host.start()
        yield hosts
    finally:
        for host in hosts:
            if host.alive():
                assert host.proc is not None
                host.proc.send_signal(signal.SIGTERM)
        for host in hosts:
            with contextlib.suppress(Exception):
                host.stop()
        markers.kill_all()
