"""The client subcommands against a tiny in-test HTTP server returning canned JSON.

Each server runs in a thread, over a unix socket in a short temporary directory (socket
paths are limited to ~107 bytes, which pytest's tmp_path can exceed) or on a loopback
port; every fixture shuts its server down and joins the thread.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import pytest

from support.tls import Certificate
from taskforce.cli import defaults
from taskforce.cli.client import Endpoint, default_socket, parse_server
from taskforce.cli.commands import CLIENT_COMMANDS, add_client_commands, run_client_command
from taskforce.cli.parser import Parser
from taskforce.cli.server import resolve

GIVEN = " (given by --server)"  # how the tests name their servers, as error messages say
HANG_UP = object()  # a route that closes the connection without answering
STATUS = {
    "web": {
        "control": "wait",
        "count": 2,
        "running": 2,
        "state": "running",
        "why": None,
        "restarts": 1,
        "requires": ["db"],
        "processes": [
            {"instance": 0, "pid": 301, "started_t": 1.0, "exit": None, "exited_t": None},
            {"instance": 1, "pid": 302, "started_t": 2.0, "exit": None, "exited_t": None},
        ],
        "history": [],
    },
    "db": {"control": "wait", "count": 1, "running": 0, "state": "stopped", "processes": []},
}


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class Canned:
    """What a test server answers, and what it was asked."""

    routes: dict[tuple[str, str], Any] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)

    def route(self, method: str, path: str, body: Any, status: int = 200) -> None:
        self.routes[(method, path)] = (status, body)


class Handler(BaseHTTPRequestHandler):
    timeout = 5  # a client that stops talking cannot hold the server thread
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        canned = cast(Any, self.server).canned
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = urlsplit(self.path)
        canned.seen.append(
            Seen(self.command, parts.path, parse_qs(parts.query), dict(self.headers), body)
        )
        status, payload = canned.routes.get(
            (self.command, parts.path), (404, {"error": f"no route {parts.path}"})
        )
        if payload is HANG_UP:
            self.close_connection = True
            return
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean (and unix peers have no address to print)


class UnixServer(socketserver.UnixStreamServer):
    canned: Canned


class TcpServer(socketserver.TCPServer):
    # TCPServer, not http.server.HTTPServer: that one resolves its host name on bind.
    canned: Canned


@contextlib.contextmanager
def serving(server: UnixServer | TcpServer) -> Iterator[Canned]:
    server.canned = Canned()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.canned
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        assert not thread.is_alive()


@pytest.fixture
def sockdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tfc-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, sockdir: Path) -> None:
    """No test finds a real taskforce, or a setting of the person running the tests."""
    for name in ("TASKFORCE_SERVER", "TASKFORCE_TOKEN", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(sockdir / "runtime"))
    monkeypatch.setattr(defaults, "DEFAULT_PIDFILE", str(sockdir / "default.pid"))


@pytest.fixture
def unix(sockdir: Path) -> Iterator[tuple[str, Canned]]:
    path = str(sockdir / "api.sock")
    with serving(UnixServer(path, Handler)) as canned:
        yield path, canned


@pytest.fixture
def tcp() -> Iterator[tuple[str, Canned]]:
    server = TcpServer(("127.0.0.1", 0), Handler)
    with serving(server) as canned:
        yield f"http://127.0.0.1:{server.server_address[1]}", canned


def parser() -> argparse.ArgumentParser:
    """Shaped like the `taskforce` parser: -p on the main parser, the commands below."""
    main = Parser(prog="taskforce")
    main.add_argument("-p", "--pidfile")
    main.add_argument("--server")
    add_client_commands(main.add_subparsers(dest="command", metavar="COMMAND"))
    return main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    args = parser().parse_args(argv)
    assert args.command in CLIENT_COMMANDS
    code = run_client_command(args)
    out, err = capsys.readouterr()
    return code, out, err


# ----- requests and output --------------------------------------------------------------


def test_status_prints_the_table(capsys: pytest.CaptureFixture[str], unix: Any) -> None:
    path, canned = unix
    canned.route("GET", "/status/tasks", STATUS)
    code, out, err = run(capsys, "status", "--server", path)
    assert (code, err) == (3, "")  # db is stopped, and should run
    assert [(s.method, s.path, s.query) for s in canned.seen] == [
        # Both unanswered (404) here: an older taskforce; the whole table it is.
        ("GET", "/status/summary", {}),
        ("GET", "/status/tasks", {}),
        ("GET", "/status/reload", {}),
    ]
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["TASK", "CONTROL", "STATE"]
    assert lines[1].split()[:5] == ["web", "wait", "running", "2/2", "301,302"]
    assert lines[2].split()[:4] == ["db", "wait", "stopped", "0/1"]
    assert "\033" not in out  # captured output is not a terminal


def test_status_tells_of_a_rejected_reload_and_overrides(
    capsys: pytest.CaptureFixture[str], unix: Any
) -> None:
    path, canned = unix
    canned.route("GET", "/status/tasks", STATUS)
    reload = {
        "file": "/etc/tf.conf",
        "reload_error": ["/etc/tf.conf:3:5: tasks.web.count: must be a number"],
        "overrides": {"web": {"count": "1", "control": "off"}},
    }
    canned.route("GET", "/status/reload", reload)
    code, out, err = run(capsys, "status", "--server", path)
    assert code == 3 and out.startswith("TASK")  # db is stopped, and should run
    assert err.splitlines() == [
        "taskforce: the latest change of /etc/tf.conf was rejected; the previous one runs:",
        "  /etc/tf.conf:3:5: tasks.web.count: must be a number",
        "temporary overrides (until the next reload): web control=off, web count=1",
    ]


def test_status_json_prints_the_servers_json(capsys: pytest.CaptureFixture[str], unix: Any) -> None:
    path, canned = unix
    canned.route("GET", "/status/tasks", STATUS)
    code, out, _ = run(capsys, "status", "--json", "--server", path)
    assert code == 3
    assert json.loads(out) == STATUS
    code, out, _ = run(capsys, "status", "--json", "--server", path, "web")
    assert code == 0


def test_status_of_some_tasks(capsys: pytest.CaptureFixture[str], unix: Any) -> None:
    path, canned = unix
    canned.route("GET", "/status/tasks", STATUS)
    code, out, err = run(capsys, "status", "--json", "--server", path, "db")
    assert (code, err) == (3, "")
    assert list(json.loads(out)) == ["db"]
    code, out, err = run(capsys, "status", "--server", path, "db", "nosuch")
    assert code == 1
    assert [line.split()[0] for line in out.splitlines()] == ["TASK", "db"]
    assert err == f"taskforce: no task named 'nosuch'\ntaskforce: server: {path}{GIVEN}\n"


@pytest.mark.parametrize("action", ["start", "stop", "restart"])
def test_task_actions(capsys: pytest.CaptureFixture[str], unix: Any, action: str) -> None:
    path, canned = unix
    for name in ("web", "db"):
        canned.route("POST", f"/manage/tasks/{name}/{action}", {"task": name, "action": action})
    no_wait = [] if action == "start" else ["--no-wait"]
    code, out, err = run(capsys, action, *no_wait, "--server", path, "web", "db")
    assert (code, err) == (0, "")
    assert [(s.method, s.path) for s in canned.seen] == [
        ("POST", f"/manage/tasks/web/{action}"),
        ("POST", f"/manage/tasks/db/{action}"),
    ]
    assert out == f"web: {action} requested\ndb: {action} requested\n"


def test_task_names_are_quoted_whole_in_the_path(
    capsys: pytest.CaptureFixture[str], unix: Any
) -> None:
    path, canned = unix
    canned.route("POST", "/manage/tasks/a%2Fb%20c%3F/start", {})
    code, out, _ = run(capsys, "start", "--server", path, "a/b c?")
    assert code == 0
    assert out == "a/b c?: start requested\n"


# What a command posts: its arguments, the path below /manage/ and the query.
POSTS: dict[str, tuple[list[str], str, dict[str, list[str]]]] = {
    "signal": (["hup", "web"], "tasks/web/signal", {"signal": ["hup"]}),
    "scale": (["web", "3"], "count", {"web": ["3"]}),
    "control": (["web", "Off"], "control", {"web": ["Off"]}),
    "reload": ([], "reload", {}),
}
# What the server answers, and what the command says of it (in the server's spelling).
ANSWERS: dict[str, tuple[dict[str, Any], str]] = {
    "signal": ({"task": "web", "signal": "SIGHUP"}, "web: SIGHUP sent"),
    "scale": ({"web": {"task": "web", "count": "3"}}, "web: count set to 3"),
    "control": ({"web": {"task": "web", "control": "off"}}, "web: control set to off"),
    "reload": ({"reloaded": True}, "configuration reloaded"),
}


@pytest.mark.parametrize("command", list(POSTS))
def test_a_command_posts_one_request_and_says_what_was_done(
    capsys: pytest.CaptureFixture[str], unix: Any, command: str
) -> None:
    server, canned = unix
    args, path, query = POSTS[command]
    answer, said = ANSWERS[command]
    canned.route("POST", f"/manage/{path}", answer)
    code, out, err = run(capsys, command, "--server", server, *args)
    assert (code, err) == (0, "")
    assert [(s.method, s.path, s.query) for s in canned.seen] == [
        ("POST", f"/manage/{path}", query)
    ]
    assert out == f"{said}\n"


def test_headers_and_token(
    capsys: pytest.CaptureFixture[str], unix: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, canned = unix
    canned.route("POST", "/manage/reload", {"reloaded": True})
    run(capsys, "reload", "--server", path)
    monkeypatch.setenv("TASKFORCE_TOKEN", "from-env")
    run(capsys, "reload", "--server", path)
    run(capsys, "reload", "--server", path, "--token", "from-flag")
    auth = [s.headers.get("Authorization") for s in canned.seen]
    assert auth == [None, "Bearer from-env", "Bearer from-flag"]
    assert canned.seen[0].headers["Accept"] == "application/json"
    assert canned.seen[0].headers["User-Agent"].startswith("taskforce/")


# ----- finding the server ---------------------------------------------------------------


def test_taskforce_server_env_over_tcp(
    capsys: pytest.CaptureFixture[str], tcp: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, canned = tcp
    canned.route("POST", "/manage/reload", {"reloaded": True})
    monkeypatch.setenv("TASKFORCE_SERVER", url)
    assert run(capsys, "reload")[0] == 0
    assert len(canned.seen) == 1


def test_the_server_option_wins_over_the_environment(
    capsys: pytest.CaptureFixture[str], unix: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, canned = unix
    canned.route("POST", "/manage/reload", {"reloaded": True})
    monkeypatch.setenv("TASKFORCE_SERVER", "/nonexistent/taskforce.sock")
    assert run(capsys, "reload", "--server", path)[0] == 0


def test_a_url_prefix_is_kept(capsys: pytest.CaptureFixture[str], tcp: Any) -> None:
    url, canned = tcp
    canned.route("POST", "/tf/manage/reload", {"reloaded": True})
    assert run(capsys, "reload", "--server", url + "/tf/")[0] == 0


def test_the_default_socket_is_found_without_options(
    capsys: pytest.CaptureFixture[str], sockdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(sockdir))
    with serving(UnixServer(str(sockdir / "taskforce.sock"), Handler)) as canned:
        canned.route("POST", "/manage/reload", {"reloaded": True})
        assert run(capsys, "reload")[0] == 0
        assert len(canned.seen) == 1


@pytest.mark.parametrize("where", ["main", "sub"])
def test_the_pidfile_locates_the_socket(
    capsys: pytest.CaptureFixture[str], sockdir: Path, where: str
) -> None:
    pidfile = str(sockdir / "tf.pid")
    with serving(UnixServer(default_socket(pidfile), Handler)) as canned:
        canned.route("POST", "/manage/reload", {"reloaded": True})
        argv = ["-p", pidfile, "reload"] if where == "main" else ["reload", "-p", pidfile]
        assert run(capsys, *argv)[0] == 0
        assert len(canned.seen) == 1


def test_the_default_socket_is_the_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    from taskforce.api.paths import default_socket_path

    assert default_socket("/var/run/tf.pid") == default_socket_path("/var/run/tf.pid")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert default_socket(None) == "/run/user/1000/taskforce.sock"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert default_socket(None) == default_socket_path(None)


def test_one_order_finds_the_server(sockdir: Path) -> None:
    """--server, then $TASKFORCE_SERVER, then -p PIDFILE, then the default."""
    default = str(sockdir / "default.pid")
    env = {"TASKFORCE_SERVER": "/env/tf.sock"}
    found = resolve("/opt/tf.sock", "/a/tf.pid", default_pidfile=default, environ=env)
    assert (found.address, found.origin, found.named) == ("/opt/tf.sock", "given by --server", True)
    found = resolve(None, "/a/tf.pid", default_pidfile=default, environ=env)
    assert (found.address, found.origin) == ("/env/tf.sock", "from $TASKFORCE_SERVER")
    found = resolve(None, "/a/tf.pid", default_pidfile=default, environ={})
    assert (found.address, found.origin) == ("/a/tf.sock", "the socket beside -p /a/tf.pid")
    found = resolve(None, None, default_pidfile=default, environ={})
    assert found.address == default_socket(None) and not found.named
    assert found.origin.startswith("the default socket; no running taskforce is recorded in ")


def test_a_pidfile_of_none_names_no_server(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "-p", "-", "status")
    assert (code, out) == (2, "")
    assert err.startswith("taskforce: -p - names no pidfile, so no taskforce to talk to")


@pytest.mark.parametrize(
    ("text", "endpoint"),
    [
        ("/run/tf.sock", Endpoint("unix", "/run/tf.sock")),
        ("./tf.sock", Endpoint("unix", "./tf.sock")),
        ("http://localhost:8080", Endpoint("http", "localhost", 8080)),
        ("http://example.org", Endpoint("http", "example.org", 80)),
        ("https://[::1]:8443/api/", Endpoint("https", "::1", 8443, "/api")),
        ("HTTPS://Host", Endpoint("https", "host", 443)),
    ],
)
def test_parse_server(text: str, endpoint: Endpoint) -> None:
    assert parse_server(text) == endpoint


def test_endpoints_print_as_given() -> None:
    assert str(Endpoint("unix", "/run/tf.sock")) == "/run/tf.sock"
    assert str(Endpoint("https", "::1", 8443, "/api")) == "https://[::1]:8443/api"


@pytest.mark.parametrize(
    "server",
    ["tf.sock", "localhost:8080", "ftp://host", "http://", "http://h:port", "http://h?x=1"],
)
def test_unusable_server_is_a_usage_error(capsys: pytest.CaptureFixture[str], server: str) -> None:
    code, out, err = run(capsys, "status", "--server", server)
    assert (code, out) == (2, "")
    assert err.startswith(f"taskforce: --server {server!r}: ")
    assert err.count("\n") == 1


# ----- errors: one line on stderr, a documented exit code ----------------------------------


def test_nothing_listening_on_the_socket(capsys: pytest.CaptureFixture[str], sockdir: Path) -> None:
    path = str(sockdir / "stale.sock")
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(path)  # the file of a socket nobody listens on any more
    code, out, err = run(capsys, "status", "--server", path)
    assert (code, out) == (4, "")
    assert err == (
        f"taskforce: cannot reach taskforce at {path}{GIVEN}: connection refused (is it running?)\n"
    )


def test_no_socket_at_the_default_place(capsys: pytest.CaptureFixture[str], sockdir: Path) -> None:
    code, _, err = run(capsys, "status")
    assert code == 4
    where = sockdir / "runtime" / "taskforce.sock"
    assert err == (
        f"taskforce: cannot reach taskforce at {where} (the default socket; no running taskforce "
        f"is recorded in {sockdir / 'runtime' / 'taskforce'}): no such socket (is it running?)\n"
    )


def test_nothing_listening_on_the_port(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, _, err = run(capsys, "reload", "--server", f"http://127.0.0.1:{port}")
    assert code == 4
    assert err == (
        f"taskforce: cannot reach taskforce at http://127.0.0.1:{port}{GIVEN}: "
        "connection refused (is it running?)\n"
    )


def test_a_server_that_never_answers(capsys: pytest.CaptureFixture[str], sockdir: Path) -> None:
    path = str(sockdir / "mute.sock")
    with socket.socket(socket.AF_UNIX) as mute:
        mute.bind(path)
        mute.listen()  # connections queue up, nobody reads them
        code, _, err = run(capsys, "status", "--server", path, "--timeout", "0.2")
    assert code == 4
    assert err == f"taskforce: cannot reach taskforce at {path}{GIVEN}: no answer within 0.2s\n"


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (
            401,
            {"error": "a token is needed"},
            "a token is needed (give a token with --token or TASKFORCE_TOKEN) (HTTP 401)",
        ),
        (403, {"error": "control is not allowed"}, "control is not allowed (HTTP 403)"),
        (
            409,
            {"error": "not applied:\n  a.yaml:3: bad\n  \x1b[2Jb.yaml:4: worse\n"},
            "not applied:; a.yaml:3: bad; ?[2Jb.yaml:4: worse (HTTP 409)",
        ),
        (404, {"error": "no task named 'web'"}, "no task named 'web' (HTTP 404)"),
        (
            409,
            {"error": "new configuration not applied: x"},
            "new configuration not applied: x (HTTP 409)",
        ),
        (
            500,
            b"<html>Internal\nServer Error</html>",
            "Internal Server Error: '<html>Internal...' (HTTP 500)",
        ),
        (502, b"", "Bad Gateway (HTTP 502)"),
        (503, {"no": "error key"}, 'Service Unavailable: \'{"no": "error key"}\' (HTTP 503)'),
    ],
)
def test_error_answers(
    capsys: pytest.CaptureFixture[str], unix: Any, status: int, body: Any, message: str
) -> None:
    path, canned = unix
    canned.route("POST", "/manage/reload", body, status)
    code, out, err = run(capsys, "reload", "--server", path)
    assert (code, out) == (1, "")
    assert err == f"taskforce: {message} [server: {path}{GIVEN}]\n"


def test_a_body_that_is_not_json(capsys: pytest.CaptureFixture[str], unix: Any) -> None:
    path, canned = unix
    canned.route("GET", "/status/tasks", b"\xffgar\x1bbage\nmore")
    code, out, err = run(capsys, "status", "--server", path)
    assert (code, out) == (1, "")
    # Quoted with repr: the server's bytes never reach the terminal as they are.
    assert err == (
        f"taskforce: taskforce at {path}{GIVEN} sent an answer that is not JSON: "
        "'\ufffdgar\\x1bbage...'\n"
    )


def test_json_of_the_wrong_shape(capsys: pytest.CaptureFixture[str], unix: Any) -> None:
    path, canned = unix
    canned.route("GET", "/status/tasks", [1, 2, 3])
    code, _, err = run(capsys, "status", "--server", path)
    assert code == 1
    assert err == f"taskforce: taskforce at {path}{GIVEN} sent an unexpected status answer\n"


def test_a_server_that_hangs_up(capsys: pytest.CaptureFixture[str], unix: Any) -> None:
    path, canned = unix
    canned.route("GET", "/status/tasks", HANG_UP)
    code, _, err = run(capsys, "status", "--server", path)
    assert code == 1
    assert err == (
        f"taskforce: taskforce at {path}{GIVEN} sent no valid HTTP answer "
        "(it closed the connection)\n"
    )


def test_one_unknown_task_does_not_stop_the_others(
    capsys: pytest.CaptureFixture[str], unix: Any
) -> None:
    path, canned = unix
    canned.route("POST", "/manage/tasks/web/restart", {})
    code, out, err = run(capsys, "restart", "--no-wait", "--server", path, "nosuch", "web")
    assert code == 1
    assert len(canned.seen) == 2
    assert out == "web: restart requested\n"
    assert err == (
        "taskforce: nosuch: no route /manage/tasks/nosuch/restart (HTTP 404)\n"
        f"taskforce: server: {path}{GIVEN}\n"
    )


def test_unauthorized_is_said_once(capsys: pytest.CaptureFixture[str], unix: Any) -> None:
    path, canned = unix
    for name in ("a", "b"):
        canned.route("POST", f"/manage/tasks/{name}/stop", {"error": "unauthorized"}, 401)
    code, _, err = run(capsys, "stop", "--server", path, "a", "b")
    assert code == 1
    assert len(canned.seen) == 1
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["scale", "web", "--1"],
        ["scale", "web", "many"],
        ["stop"],
        ["signal", "HUP"],
        ["status", "--timeout", "0"],
        ["control", "web"],
    ],
)
def test_bad_usage_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        parser().parse_args(argv)
    assert exit.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_a_closed_pipe_ends_quietly(
    capsys: pytest.CaptureFixture[str], unix: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, canned = unix
    canned.route("GET", "/status/tasks", STATUS)

    class ClosedPipe:
        def write(self, text: str) -> int:
            raise BrokenPipeError

        def flush(self) -> None:
            raise BrokenPipeError

        def isatty(self) -> bool:
            return False

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert run_client_command(parser().parse_args(["status", "--server", path])) == 141
    assert capsys.readouterr().err == ""


# ----- TLS ------------------------------------------------------------------------------


@pytest.fixture
def tls(certificate: Certificate) -> Iterator[tuple[str, Canned]]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate.cert, certificate.key)
    server = TcpServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    with serving(server) as canned:
        canned.route("POST", "/manage/reload", {"reloaded": True})
        yield f"https://127.0.0.1:{server.server_address[1]}", canned


def test_tls_with_the_servers_ca(
    capsys: pytest.CaptureFixture[str], tls: Any, certificate: Certificate
) -> None:
    url, canned = tls
    code, out, err = run(capsys, "reload", "--server", url, "--cafile", str(certificate.cert))
    assert (code, out, err) == (0, "configuration reloaded\n", "")
    assert len(canned.seen) == 1


def test_tls_with_an_untrusted_certificate(capsys: pytest.CaptureFixture[str], tls: Any) -> None:
    url, canned = tls
    code, _, err = run(capsys, "reload", "--server", url)
    assert code == 4
    assert err.startswith(f"taskforce: cannot reach taskforce at {url}{GIVEN}: its TLS certificate")
    assert err.endswith("; use --cafile, or --insecure\n")
    assert canned.seen == []


def test_tls_insecure(capsys: pytest.CaptureFixture[str], tls: Any) -> None:
    url, canned = tls
    assert run(capsys, "reload", "--server", url, "--insecure")[0] == 0
    assert len(canned.seen) == 1


def test_an_unreadable_cafile_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], sockdir: Path
) -> None:
    missing = str(sockdir / "nope.pem")
    code, _, err = run(capsys, "reload", "--server", "https://127.0.0.1:1", "--cafile", missing)
    assert code == 2
    assert err.startswith(f"taskforce: cannot use --cafile {missing}: ")


# ----- import budget --------------------------------------------------------------------

_PROBE = """
import argparse, sys
from taskforce.cli.commands import add_client_commands, run_client_command
main = argparse.ArgumentParser(prog="taskforce")
main.add_argument("-p", "--pidfile")
main.add_argument("--server")
add_client_commands(main.add_subparsers(dest="command"))
code = run_client_command(main.parse_args(["status"]))
heavy = ("asyncio", "yaml", "rich", "h11", "taskforce.runtime", "taskforce.config",
         "taskforce.core", "taskforce.watch", "taskforce.api.")
# The server's socket rule and its records of where it listens, written to be imported here,
# and the rule of a task's wanted state that the server's summary shares.
cheap = {"taskforce.api.paths", "taskforce.api.servers", "taskforce.runtime",
         "taskforce.runtime.own", "taskforce.runtime.own.paths", "taskforce.core",
         "taskforce.core.wanted"}
loaded = sorted(m for m in set(sys.modules) - cheap if m.startswith(heavy))
print(code, loaded, file=sys.stderr)
"""


def test_status_imports_nothing_of_the_daemon(sockdir: Path) -> None:
    with serving(UnixServer(str(sockdir / "taskforce.sock"), Handler)) as canned:
        canned.route("GET", "/status/tasks", STATUS)
        result = subprocess.run(
            [sys.executable, "-c", _PROBE],
            env={**os.environ, "XDG_RUNTIME_DIR": str(sockdir)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.stderr == "3 []\n"  # db is stopped
    assert result.stdout.splitlines()[1].split()[0] == "web"


def test_status_of_more_tasks_than_a_screenful_shows_a_summary_and_the_unwanted(
    capsys: pytest.CaptureFixture[str], unix: Any
) -> None:
    path, canned = unix
    canned.route("GET", "/status/tasks", STATUS)  # whatever is asked: web runs, db does not
    summary = {"total": 60, "wanted": 59, "unwanted": 1, "states": {"running": 59, "stopped": 1}}
    canned.route("GET", "/status/summary", summary)
    code, out, err = run(capsys, "status", "--server", path)  # not a terminal: 50 rows
    assert (code, err) == (3, "")
    assert [(s.path, s.query) for s in canned.seen[:2]] == [
        ("/status/summary", {}),
        ("/status/tasks", {"state": ["unwanted"]}),
    ]
    lines = out.splitlines()
    assert lines[0] == (
        "60 tasks: 59 running, 1 stopped; 1 not in their wanted state, listed below "
        "(--all lists every task)"
    )
    assert [line.split()[0] for line in lines[1:]] == ["TASK", "db"]
    canned.seen.clear()
    code, out, err = run(capsys, "status", "--all", "--server", path)
    assert code == 3 and [line.split()[0] for line in out.splitlines()] == ["TASK", "web", "db"]
    assert [s.path for s in canned.seen] == ["/status/tasks", "/status/reload"]
    # A screenful or fewer: the whole table, as ever.
    canned.route("GET", "/status/summary", {**summary, "total": 2})
    code, out, err = run(capsys, "status", "--server", path)
    assert code == 3 and [line.split()[0] for line in out.splitlines()] == ["TASK", "web", "db"]


def test_status_of_named_tasks_asks_for_them_and_takes_patterns(
    capsys: pytest.CaptureFixture[str], unix: Any
) -> None:
    path, canned = unix
    canned.route("GET", "/status/tasks", STATUS)
    code, out, err = run(capsys, "status", "--server", path, "w*", "db")
    assert (code, err) == (3, "")
    assert canned.seen[0].query == {"task": ["w*", "db"]}
    assert [line.split()[0] for line in out.splitlines()] == ["TASK", "web", "db"]
    code, out, err = run(capsys, "status", "--server", path, "x*")
    assert code == 1 and err.startswith("taskforce: no task matches 'x*'\n")
