"""Helpers shared by the reliability suites (faults, bad input, security).

Everything waits on conditions with deadlines (conftest.wait_for); nothing sleeps.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import pwd
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from support.runner import Taskforce
from support.wait import wait_for

# A system interpreter other users can run (the virtualenv lives under /work, private).
SYSTEM_PYTHON = next(
    (p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.access(p, os.X_OK)), None
)
SLEEP = "/bin/sleep" if os.path.exists("/bin/sleep") else "/usr/bin/sleep"
QUICK = {
    "stop_timeout": 1,
    "restart": {"min_uptime": 0.2, "initial_delay": 0.05, "factor": 2, "max_delay": 0.5},
}
# No HTTP service unless a test asks for one: tests must not fight over a default socket.
NO_HTTP: dict[str, Any] = {"http": []}


def settings(**extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {**QUICK, **NO_HTTP}
    out.update(extra)
    return out


def sleep_task(seconds: int = 3600, **keys: Any) -> dict[str, Any]:
    task: dict[str, Any] = {"commands": {"start": [SLEEP, str(seconds)]}}
    task.update(keys)
    return task


def started_pids(log: str, task: str) -> list[int]:
    """Pids the log says were started for `task`, in order."""
    return [int(m) for m in re.findall(rf"\b{re.escape(task)}\[\d+\]: started pid (\d+)", log)]


def http_addresses(log: str) -> list[str]:
    """Where the HTTP service listens, in the order the listeners were configured."""
    return re.findall(r"HTTP service listening on (\S+)", log)


def wait_listening(tf: Taskforce, count: int) -> list[str]:
    addresses: list[str] = wait_for(
        lambda: len(found := http_addresses(tf.log())) >= count and found,
        what=f"{count} HTTP listener(s)",
    )
    return addresses


class Reply:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    address: str,
    method: str,
    path: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 10.0,
) -> Reply:
    """One request to `unix:PATH` or `http://HOST:PORT`, answered or failed within `timeout`."""
    if address.startswith("unix:"):
        client: http.client.HTTPConnection = _UnixHTTPConnection(address[5:], timeout)
    else:
        host, port = address.removeprefix("http://").rsplit(":", 1)
        client = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        client.request(method, path, body=body, headers=dict(headers or {}))
        response = client.getresponse()
        return Reply(response.status, response.getheaders(), response.read())
    finally:
        client.close()


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


def connect(address: str, timeout: float = 10.0) -> socket.socket:
    if address.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(address[5:])
        return sock
    host, port = address.split("://", 1)[-1].rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=timeout)


def exchange(address: str, data: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes, return everything the server sends until it closes (or `timeout`)."""
    sock = connect(address, timeout)
    out = b""
    try:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)  # done: the server need not wait for more
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                out += chunk
    finally:
        sock.close()
    return out


@contextlib.contextmanager
def stranger(*argv: str) -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated process (not a task, no test marker) that must never be signalled."""
    proc = subprocess.Popen(
        list(argv or (SLEEP, "600")),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={k: v for k, v in os.environ.items() if k != "TF_TEST_MARKER"},
    )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def nobody() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' on this host")


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")


def python_as(user: pwd.struct_passwd, code: str, *args: str, timeout: float = 30) -> str:
    """Run Python `code` as `user` (with only that user's groups); its stdout."""
    if SYSTEM_PYTHON is None:
        pytest.skip("no system python3 that other users can run")
    result = subprocess.run(
        [SYSTEM_PYTHON, "-c", code, *args],
        user=user.pw_uid,
        group=user.pw_gid,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="session")
def frozen_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of taskforce's code for the taskforce commands the tests run.

    taskforce re-executes itself when its own code changes (a hitless upgrade): run from
    the working tree, an edit made meanwhile would restart it mid-test.
    """
    import shutil

    import taskforce

    root = tmp_path_factory.mktemp("frozen-src")
    shutil.copytree(
        Path(taskforce.__file__).parent,
        root / "taskforce",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return root


@pytest.fixture(autouse=True)
def _run_frozen_source(request: pytest.FixtureRequest, frozen_source: Path) -> None:
    """Every `taskforce` fixture of these suites runs the frozen copy."""
    if "taskforce" in request.fixturenames:
        tf: Taskforce = request.getfixturevalue("taskforce")
        tf.env["PYTHONPATH"] = str(frozen_source)


@contextlib.contextmanager
def shared_directory(mode: int = 0o1777) -> Iterator[Path]:
    """A directory other users can reach (pytest's tmp_path is private to root)."""
    import shutil
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix="tf-reliability-"))
    directory.chmod(mode)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def taskforce_argv(*args: str, flags: Sequence[str] = ("-e", "-v")) -> list[str]:
    return [sys.executable, "-m", "taskforce", *flags, *args]


def no_tracebacks(log: str) -> None:
    assert "Traceback" not in log, log[log.index("Traceback") - 2000 :][:6000]
