"""The HTTP service on a real legion running `sleep` tasks: every path, allowed and refused,
over a unix socket, loopback TCP and TLS; the event stream following a restart.

The legion serves in the test's own event loop; clients are blocking (http.client, raw
sockets) and run in threads. Every wait is for a condition, with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.environ import inherited
from support.http_client import Client, unix_connection
from support.procfs import processes_with_marker
from support.tls import Certificate
from taskforce.api.listen import ApiConfigError, listener_from_flags
from taskforce.api.server import ApiService, start_api
from taskforce.api.status import Controller
from taskforce.app.serve import serve_with_api
from taskforce.config.model import HttpListener
from taskforce.runtime.legion import Legion
from taskforce.runtime.loop.supervisor import Outcome

DEADLINE = 20.0
TOKEN = "integration-token-0123456789"
SLEEP = ["sleep", "1000"]
SETTINGS: dict[str, Any] = {
    "stop_timeout": 1,
    "restart": {"min_uptime": 0.5, "initial_delay": 0.1, "factor": 2, "max_delay": 1},
}
TASKS: dict[str, Any] = {
    "sleeper": {"commands": {"start": SLEEP}},
    "pair": {"commands": {"start": SLEEP}, "count": 2},
    "later": {"commands": {"start": SLEEP}, "control": "off"},
}


# --- clients ----------------------------------------------------------------------------


@contextlib.contextmanager
def opened(address: str, tls: ssl.SSLContext | None = None) -> Iterator[Client]:
    client = Client(address, tls, DEADLINE)
    try:
        yield client
    finally:
        client.close()


def call(
    address: str,
    method: str,
    path: str,
    body: bytes | None = None,
    token: str | None = None,
    tls: ssl.SSLContext | None = None,
) -> tuple[int, Any, http.client.HTTPResponse]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with opened(address, tls) as client:
        client.request(method, path, body=body, headers=headers)
        response = client.getresponse()
        raw = response.read()
    kind = response.getheader("content-type", "")
    return response.status, json.loads(raw) if kind == "application/json" else raw, response


class Api:
    """Async wrappers: the blocking clients run in threads, off the legion's loop."""

    def __init__(self, address: str, tls: ssl.SSLContext | None = None) -> None:
        self.address = address
        self.tls = tls

    async def __call__(
        self, method: str, path: str, body: bytes | None = None, token: str | None = None
    ) -> tuple[int, Any]:
        status, data, _ = await asyncio.to_thread(
            call, self.address, method, path, body, token, self.tls
        )
        return status, data

    async def tasks(self) -> dict[str, Any]:
        status, data = await self("GET", "/status/tasks")
        assert status == 200, data
        return dict(data)

    async def until(self, condition: Callable[[dict[str, Any]], bool], what: str) -> None:
        """Wait until the task table satisfies `condition`, or fail after DEADLINE."""
        loop = asyncio.get_running_loop()
        end = loop.time() + DEADLINE
        while not condition(tasks := await self.tasks()):
            assert loop.time() < end, f"timed out waiting for {what}: {tasks}"
            await asyncio.sleep(0.02)  # polling interval of a deadline-bounded wait


def pids(tasks: dict[str, Any], name: str) -> list[int]:
    return [p["pid"] for p in tasks[name]["processes"] if p["pid"] is not None]


class Events:
    """A blocking reader of one /events stream."""

    def __init__(self, address: str) -> None:
        self.sock = unix_connection(address, DEADLINE)
        self.sock.sendall(b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        self.buffer = b""

    def _until(self, end: bytes) -> bytes:
        while end not in self.buffer:
            chunk = self.sock.recv(65536)
            assert chunk, "the event stream ended"
            self.buffer += chunk
        found, _, self.buffer = self.buffer.partition(end)
        return found

    def next(self) -> dict[str, Any]:
        self._until(b"event: tasks\ndata: ")
        data: dict[str, Any] = json.loads(self._until(b"\n\n"))
        return data


# --- running a legion with the service --------------------------------------------------


def private_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "run"
    directory.mkdir(mode=0o700, exist_ok=True)
    return directory


def write_config(tmp_path: Path, **settings: Any) -> Path:
    path = tmp_path / "taskforce.conf"
    path.write_text(json.dumps({"tasks": TASKS, "settings": {**SETTINGS, **settings}}))
    return path


def new_legion(config: Path, marker: str) -> Legion:
    return Legion(str(config), environ=inherited(TF_TEST_MARKER=marker))


Scenario = Callable[[Legion, ApiService], Awaitable[None]]


def serve(config: Path, marker: str, listeners: list[HttpListener], scenario: Scenario) -> Outcome:
    """Run the legion and the service around `scenario`; the legion's outcome."""

    async def main() -> Outcome:
        legion = new_legion(config, marker)
        service = await start_api(legion, Controller(legion), listeners)
        serving = asyncio.create_task(legion.serve())
        try:
            await scenario(legion, service)
        finally:
            legion.stop()
            async with asyncio.timeout(DEADLINE):
                outcome = await serving
            await service.close()
        return outcome

    return asyncio.run(main())


def everything_runs(tasks: dict[str, Any]) -> bool:
    return bool(tasks["sleeper"]["running"] == 1 and tasks["pair"]["running"] == 2)


# --- the tests --------------------------------------------------------------------------


def test_status_paths(tmp_path: Path, marker: str) -> None:
    socket_path = private_dir(tmp_path) / "api.sock"
    config = write_config(tmp_path)

    async def scenario(legion: Legion, service: ApiService) -> None:
        unix, tcp = service.addresses
        api = Api(unix)
        await api.until(everything_runs, "every task to run")
        tasks = await api.tasks()
        assert list(tasks) == ["sleeper", "pair", "later"]
        assert tasks["later"]["state"] == "off" and tasks["sleeper"]["state"] == "running"
        status, version = await api("GET", "/status/version")
        assert status == 200 and set(version) == {"taskforce", "python", "platform"}
        status, described = await api("GET", "/status/reload?indent=2")
        assert status == 200 and described["file"] == str(config)
        # The document itself, as the original answers; only where control is allowed.
        status, document = await api("GET", "/status/config")
        assert status == 200 and document["tasks"]["pair"]["count"] == 2
        status, error = await Api(tcp)("GET", "/status/config")
        assert status == 401 and "holds secrets" in error["error"]
        status, metrics, response = await asyncio.to_thread(call, tcp, "GET", "/metrics")
        assert status == 200
        assert response.getheader("content-type") == "text/plain; version=0.0.4; charset=utf-8"
        assert b'taskforce_up{task="pair",index="1"} 1\n' in metrics
        status, page, response = await asyncio.to_thread(call, tcp, "GET", "/")
        assert status == 200 and b"<html" in page.lower()
        assert response.getheader("content-type") == "text/html; charset=utf-8"
        for path in ("/manage/reload", "/manage/tasks/sleeper/restart", "/manage/stop"):
            status, error = await Api(tcp)("POST", path)
            assert status == 403 and "control is not allowed" in error["error"]
        assert await Api(tcp)("GET", "/status/nothing") == (
            404,
            {"error": "no such path: /status/nothing"},
        )

    listeners = [
        HttpListener(listen=str(socket_path), allow_control=True),
        HttpListener(listen="127.0.0.1:0"),
    ]
    assert serve(config, marker, listeners, scenario) is Outcome.STOPPED
    assert not socket_path.exists()


def test_control_paths(tmp_path: Path, marker: str) -> None:
    socket_path = private_dir(tmp_path) / "api.sock"
    config = write_config(tmp_path)

    async def scenario(legion: Legion, service: ApiService) -> None:
        api = Api(service.addresses[0])
        await api.until(everything_runs, "every task to run")

        # Temporary overrides, the original way (GET), then POST.
        assert await api("GET", "/manage/control?later=wait") == (
            200,
            {"later": {"task": "later", "control": "wait"}},
        )
        await api.until(lambda t: t["later"]["running"] == 1, "later to start")
        assert (await api("POST", "/manage/count?pair=1"))[0] == 200
        await api.until(lambda t: t["pair"]["running"] == 1, "pair to shrink")
        status, described = await api("GET", "/status/reload")
        assert described["overrides"] == {"later": {"control": "wait"}, "pair": {"count": "1"}}
        for path, expected in [
            ("/manage/count?pair=x", 400),
            ("/manage/count?pair=-1", 400),
            ("/manage/control?pair=sometimes", 400),
            ("/manage/control?nobody=off", 404),
            ("/manage/count", 400),
        ]:
            status, error = await api("GET", path)
            assert status == expected and error["error"], path

        # Task actions: POST only.
        before = pids(await api.tasks(), "sleeper")
        assert (await api("GET", "/manage/tasks/sleeper/restart"))[0] == 405
        assert await api("POST", "/manage/tasks/sleeper/restart") == (
            200,
            {"task": "sleeper", "action": "restart"},
        )
        await api.until(
            lambda t: t["sleeper"]["running"] == 1 and pids(t, "sleeper") != before,
            "sleeper to restart",
        )
        before = pids(await api.tasks(), "later")
        assert await api("POST", "/manage/tasks/later/signal?signal=HUP") == (
            200,
            {"task": "later", "signal": "SIGHUP"},
        )
        await api.until(
            lambda t: t["later"]["running"] == 1 and pids(t, "later") != before,
            "later to be restarted after SIGHUP killed it",
        )
        assert (await api("POST", "/manage/tasks/later/signal?signal=NOPE"))[0] == 400
        assert (await api("POST", "/manage/tasks/nobody/restart"))[0] == 404
        assert (await api("POST", "/manage/tasks/sleeper/stop"))[0] == 200
        await api.until(lambda t: t["sleeper"]["state"] == "off", "sleeper to stop")
        assert (await api("POST", "/manage/tasks/sleeper/start"))[0] == 200
        await api.until(lambda t: t["sleeper"]["running"] == 1, "sleeper to start again")

        # Planning a configuration changes nothing.
        new = {"tasks": {**TASKS, "extra": {"commands": {"start": SLEEP}}}}
        status, plan = await api("POST", "/manage/plan", json.dumps(new).encode())
        assert status == 200 and plan["problems"] == []
        assert {c["task"]: c["change"] for c in plan["changes"]} == {
            "extra": "start",
            "sleeper": "untouched",
            "pair": "untouched",
            "later": "untouched",
        }
        status, error = await api("POST", "/manage/plan", b"tasks: {a: {}}")
        assert status == 422 and "commands" in error["error"]
        assert "extra" not in await api.tasks()

        # Reloading drops the overrides.
        assert await api("POST", "/manage/reload") == (200, {"reloaded": True})
        await api.until(
            lambda t: t["later"]["running"] == 0 and t["pair"]["running"] == 2,
            "the configuration to be back in force",
        )
        assert await api("GET", "/manage/stop") == (200, {"stopping": True})

    listeners = [HttpListener(listen=str(socket_path), allow_control=True)]
    assert serve(config, marker, listeners, scenario) is Outcome.STOPPED


def test_events_follow_a_restart(tmp_path: Path, marker: str) -> None:
    socket_path = private_dir(tmp_path) / "api.sock"
    config = write_config(tmp_path)

    async def scenario(legion: Legion, service: ApiService) -> None:
        api = Api(service.addresses[0])
        await api.until(everything_runs, "every task to run")
        events = await asyncio.to_thread(Events, service.addresses[0])
        try:
            first = await asyncio.to_thread(events.next)
            before = pids(first, "sleeper")
            assert len(before) == 1
            assert (await api("POST", "/manage/tasks/sleeper/restart"))[0] == 200
            while True:  # each event is a later state; the stream ends the wait if it stops
                tasks = await asyncio.to_thread(events.next)
                if tasks["sleeper"]["running"] == 1 and pids(tasks, "sleeper") != before:
                    break
            assert tasks["sleeper"]["restarts"] == 1
        finally:
            events.sock.close()

    listeners = [HttpListener(listen=str(socket_path), allow_control=True)]
    assert serve(config, marker, listeners, scenario) is Outcome.STOPPED


def test_tokens_on_loopback_tcp(tmp_path: Path, marker: str) -> None:
    config = write_config(tmp_path)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)

    async def scenario(legion: Legion, service: ApiService) -> None:
        guarded, private = (Api(address) for address in service.addresses)
        await guarded.until(everything_runs, "every task to run")
        status, error = await guarded("POST", "/manage/reload")
        assert status == 401 and "needs an access token" in error["error"]
        assert (await guarded("POST", "/manage/reload", token="wrong"))[0] == 401
        assert await guarded("POST", "/manage/reload", token=TOKEN) == (200, {"reloaded": True})
        assert (await private("GET", "/status/tasks"))[0] == 401
        assert (await private("GET", "/status/tasks", token=TOKEN))[0] == 200
        assert (await private("POST", "/manage/reload", token=TOKEN))[0] == 403

    listeners = [
        HttpListener(listen="127.0.0.1:0", allow_control=True, token_file=str(token_file)),
        HttpListener(listen="[::1]:0" if socket.has_ipv6 else ":0", private=True, token=TOKEN),
    ]
    try:
        assert serve(config, marker, listeners, scenario) is Outcome.STOPPED
    except ApiConfigError as exc:
        if "[::1]" in str(exc):
            pytest.skip(f"no IPv6 loopback here: {exc}")
        raise


def test_tls(tmp_path: Path, marker: str, certificate: Certificate) -> None:
    config = write_config(tmp_path)
    trust = ssl.create_default_context(cafile=str(certificate.cert))

    async def scenario(legion: Legion, service: ApiService) -> None:
        (address,) = service.addresses
        assert address.startswith("https://127.0.0.1:")
        api = Api(address, trust)
        await api.until(everything_runs, "every task to run")
        assert await api("POST", "/manage/reload", token=TOKEN) == (200, {"reloaded": True})
        with pytest.raises(ssl.SSLError):  # our certificate is not trusted by default
            await Api(address, ssl.create_default_context())("GET", "/status/tasks")
        with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
            # Plain HTTP to the TLS port: the handshake fails and the connection is closed.
            await asyncio.to_thread(call, address.replace("https", "http"), "GET", "/")

    listener = HttpListener(
        listen="127.0.0.1:0", certfile=str(certificate.combined), allow_control=True, token=TOKEN
    )
    assert serve(config, marker, [listener], scenario) is Outcome.STOPPED


def test_refusals(tmp_path: Path, certificate: Certificate) -> None:
    legion = Legion(str(write_config(tmp_path)))

    async def start(listener: HttpListener) -> None:
        service = await start_api(legion, Controller(legion), [listener])
        await service.close()

    for listener, message in [
        (HttpListener(listen="127.0.0.1:0", allow_control=True), "needs an access token"),
        (HttpListener(listen="0.0.0.0:0", allow_control=True, token=TOKEN), "needs TLS"),
        (HttpListener(listen=str(tmp_path / "none" / "x.sock")), "No such file or directory"),
        (HttpListener(listen=":0", certfile=str(certificate.key)), "certificate file"),
    ]:
        with pytest.raises(ApiConfigError, match=message):
            asyncio.run(start(listener))
    asyncio.run(start(HttpListener(listen="0.0.0.0:0", certfile=str(certificate.combined))))


def test_serve_with_api_uses_the_settings_and_removes_its_socket(
    tmp_path: Path, marker: str
) -> None:
    socket_path = private_dir(tmp_path) / "api.sock"
    config = write_config(tmp_path, http=[{"listen": str(socket_path), "allow_control": True}])
    extra = listener_from_flags(str(private_dir(tmp_path) / "extra.sock"))

    async def main() -> Outcome:
        legion = new_legion(config, marker)
        serving = asyncio.create_task(serve_with_api(legion, extra=[extra]))
        api = Api(f"unix:{socket_path}")
        loop = asyncio.get_running_loop()
        end = loop.time() + DEADLINE
        while not socket_path.exists():
            assert loop.time() < end and not serving.done(), "the service did not start"
            await asyncio.sleep(0.01)  # polling interval of a deadline-bounded wait
        await api.until(everything_runs, "every task to run")
        status, _ = await Api(f"unix:{tmp_path}/run/extra.sock")("POST", "/manage/reload")
        assert status == 403
        assert await api("POST", "/manage/reset") == (200, {"resetting": True})
        async with asyncio.timeout(DEADLINE):
            return await serving

    assert asyncio.run(main()) is Outcome.RESET
    assert not socket_path.exists() and not (tmp_path / "run" / "extra.sock").exists()
    assert processes_with_marker(marker) == []
