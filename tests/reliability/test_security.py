"""Security: who may talk to taskforce, what a task may inherit, what a file may make it do.

- the control socket is owner-only; TCP listeners refuse every control path (and, private,
  every path) without the token; a TLS listener never acts on a plaintext request;
- substituted values never add argv words, and nothing runs through a shell;
- a pidfile or a process record naming an unrelated process never gets it signalled;
- a task with `user` gets none of taskforce's privileges: ids, groups, capabilities, fds;
- files taskforce creates are private and never created through planted links.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_support import (  # noqa: F401 (fixtures)
    SLEEP,
    SYSTEM_PYTHON,
    _run_frozen_source,
    connect,
    exchange,
    frozen_source,
    need_root,
    nobody,
    python_as,
    request,
    shared_directory,
    sleep_task,
    stranger,
    taskforce_argv,
    wait_listening,
)
from reliability_support import (
    settings as tf_settings,
)

from support.config import write_config
from support.probes import Probes, probe_task
from support.procfs import proc_environ, start_ticks, task_processes
from support.runner import Taskforce
from support.tls import Certificate
from support.wait import wait_for
from taskforce.api.auth import Access
from taskforce.api.routes import Request, Router
from taskforce.config.host import HostFacts, UserInfo
from taskforce.config.load import parse_config
from taskforce.config.resolve import resolve
from taskforce.config.roles import Roles
from taskforce.core.spec import TASK_PID_MARKER
from taskforce.runtime.own import paths as runtime_paths
from taskforce.runtime.processes.identity import ProcessIdentity, runs_program

PROBE_PATH = str(Path(__file__).parents[1] / "programs" / "probe.py")

TOKEN = "s3cret-token-for-the-reliability-suite"

# ----- the control socket and the TCP listeners -------------------------------------------


def test_the_control_socket_and_runtime_files_are_owner_only(
    taskforce: Taskforce, tmp_path: Path, shared: Path
) -> None:
    need_root()
    run = shared / "run"
    run.mkdir(mode=0o755)
    pidfile = run / "tf.pid"
    conf = write_config(
        tmp_path / "tf.conf", {"w": sleep_task()}, settings={"stop_timeout": 1}
    )  # no `http` key: the default socket, beside the pidfile
    # A umask that would make everything world-writable: taskforce must not depend on it.
    taskforce.spawn(["sh", "-c", 'umask 000 && exec "$@"', "sh",
                     *taskforce_argv("-p", str(pidfile), "-f", str(conf))])  # fmt: skip
    sock = run / "tf.sock"
    taskforce.wait_log("HTTP service listening on unix:")
    taskforce.wait_log("w[0]: started pid")
    state = Path(runtime_paths.default_state_file(str(pidfile), str(conf)))  # beside it
    wait_for(state.exists, what="process records")
    modes = {p.name: stat.S_IMODE(p.lstat().st_mode) for p in (sock, pidfile, state)}
    assert modes["tf.sock"] == 0o600, modes
    assert modes[state.name] == 0o600, modes
    assert modes["tf.pid"] & 0o022 == 0, modes  # readable, never writable by others
    assert all(p.lstat().st_uid == os.geteuid() for p in (sock, pidfile, state))
    refused = python_as(
        nobody(),
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n    s.connect(sys.argv[1])\nexcept PermissionError:\n    print('refused')\n"
        "else:\n    print('connected')\n",
        str(sock),
    )
    assert refused.strip() == "refused"
    # The owner is served.
    assert request(f"unix:{sock}", "GET", "/status/version").status == 200
    assert taskforce.stop() == 0


@pytest.fixture
def shared() -> Iterator[Path]:
    with shared_directory() as directory:
        yield directory


class Recording:
    """A controller that records every call: nothing may reach it without the token."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return b"[]" if name == "table" else {}  # the kept JSON of the tasks is bytes

        return call


# Everything the service answers, and then some: the routes the router knows, the task
# routes with a real and an unknown task, prefixes, and paths that are not there at all.
def every_path(router: Router) -> list[str]:
    paths = set(router._routes)
    for action in router._task_routes:
        paths |= {f"/manage/tasks/w/{action}", f"/manage/tasks/nope/{action}"}
    paths |= {
        "/logs/w", "/logs/w?follow=1", "/logs/nope", "/manage/", "/manage/nothing",
        "/manage/control?w=off", "/manage/count?w=5", "/manage/tasks/w", "/manage/tasks/",
        "/manage/tasks/w/signal?signal=KILL", "/static/dashboard.js", "/nothing", "//manage/stop",
        "/manage/stop/", "/manage/stop?x=1", "/MANAGE/stop", "/manage/%73top",
    }  # fmt: skip
    return sorted(paths)


STATUS_CALLS = {
    "version", "config", "reload_status", "tasks", "table", "summary", "counters", "attach",
    "subscribe", "unsubscribe", "tasks_with_usage", "table_with_usage", "series"
}  # fmt: skip
BAD_CREDENTIALS: list[dict[str, str]] = [
    {},
    {"Authorization": "Bearer wrong"},
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": f"Bearer {TOKEN[:-1]}"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": TOKEN},
    {"Authorization": "Bearer"},
    {"Authorization": f"Bearer {TOKEN.upper()}"},
    {"X-Token": TOKEN},
    {"Cookie": f"token={TOKEN}"},
]


@pytest.mark.parametrize("private", [False, True])
def test_no_control_call_without_the_token(private: bool) -> None:
    """Every path, method and bad credential, in-process: the controller is never asked to
    change anything (and on a private listener, not even to tell anything)."""
    controller = Recording()
    router = Router(controller, Access(allow_control=True, token=TOKEN.encode(), private=private))
    for path in every_path(router):
        for method in ("GET", "POST", "PUT", "DELETE", "HEAD"):
            for credentials in BAD_CREDENTIALS:
                headers = {k.lower().encode(): v.encode() for k, v in credentials.items()}
                # The token in the query string is not a credential either.
                for target in (path, f"{path}{'&' if '?' in path else '?'}token={TOKEN}"):
                    outcome = router.handle(Request(method, target, headers, b"w=off"))
                    status = getattr(outcome, "status", None)
                    assert (
                        status is None or status >= 400 or not path.startswith(("/manage", "/logs"))
                    ), (method, target, credentials, status)
    changing = [c for c in controller.calls if c not in STATUS_CALLS]
    assert changing == []
    assert "config" not in controller.calls  # it holds secrets: the token is needed
    if private:
        assert controller.calls == []


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            ["manage", "tasks", "w", "stop", "reset", "logs", "control", "..", ".", "", "%2f",
             "%00", "start", "signal", "plan", "reload", "count", "status", "static", "events"]
        ),
        max_size=5,
    ),
    st.sampled_from(["GET", "POST", "PUT", "PATCH", "OPTIONS", "get"]),
    st.text(max_size=30),
)  # fmt: skip
def test_no_control_call_without_the_token_on_any_path(
    parts: list[str], method: str, query: str
) -> None:
    controller = Recording()
    router = Router(controller, Access(allow_control=True, token=TOKEN.encode()))
    router.handle(Request(method, "/" + "/".join(parts) + "?" + query, {}, b""))
    assert [c for c in controller.calls if c not in STATUS_CALLS] == []


def test_tcp_and_tls_listeners_refuse_control_without_a_valid_token(
    taskforce: Taskforce, tmp_path: Path, certificate: Certificate
) -> None:
    """Over real sockets: the token listener, a private one and a TLS one. Refused requests
    change nothing; plaintext to the TLS port is never served, token or not."""
    http = [
        {"listen": "127.0.0.1:0", "allow_control": True, "token": TOKEN, "timeout": 2},
        {"listen": "127.0.0.1:0", "token": TOKEN, "private": True, "timeout": 2},
        {"listen": "127.0.0.1:0", "allow_control": True, "token": TOKEN,
         "certfile": str(certificate.combined), "timeout": 2},
    ]  # fmt: skip
    conf = write_config(
        tmp_path / "tf.conf",
        {"w": sleep_task(), "x": sleep_task()},
        settings=tf_settings(http=http),
    )
    taskforce.start("-f", str(conf))
    control, private, tls = wait_listening(taskforce, 3)
    first = taskforce.wait_log("w[0]: started pid")
    router = Router(Recording(), Access())
    for path in every_path(router):
        for method in ("GET", "POST"):
            for credentials in BAD_CREDENTIALS[:4]:
                if path == "/events" and method == "GET":
                    continue  # a status path, and a stream that does not end
                reply = request(control, method, path, headers=credentials, body=b"w=off")
                if path.startswith(("/manage", "/logs")):
                    # 404 only where the router has no such path (no control path at all).
                    assert reply.status in (401, 403, 404, 405), (method, path, reply.status)
                reply = request(private, method, path, headers=credentials)
                assert reply.status == 401, (method, path, reply.status)
    # Plaintext to the TLS port, with the right token: no answer, and nothing done.
    port = tls.rsplit(":", 1)[1]
    data = exchange(
        f"http://127.0.0.1:{port}",
        f"POST /manage/stop HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Length: 0\r\n\r\n".encode(),
    )
    assert not data.startswith(b"HTTP/"), data[:200]
    # Nothing was stopped, restarted or overridden; the right token still works.
    reply = request(control, "GET", "/status/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    assert reply.json()["overrides"] == {}
    assert taskforce.running()
    assert (
        taskforce.log().count("w[0]: started pid")
        == 1
        == taskforce.log().count("x[0]: started pid")
    )
    assert "stopping" not in taskforce.log().split(first[-200:], 1)[-1].lower()
    reply = request(
        control, "POST", "/manage/tasks/w/restart", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert reply.status == 200
    wait_for(lambda: taskforce.log().count("w[0]: started pid") == 2, what="restart with token")
    assert taskforce.stop() == 0


def host_request(address: str, host: str | None, path: str = "/status/version") -> bytes:
    """One request with this Host header (none: HTTP/1.0 without one); the raw reply."""
    if host is None:
        return exchange(address, f"GET {path} HTTP/1.0\r\n\r\n".encode())
    return exchange(address, f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())


def test_tcp_listeners_answer_only_their_own_host_names(
    taskforce: Taskforce, tmp_path: Path
) -> None:
    """DNS rebinding: a web page whose name the attacker points at 127.0.0.1 reads the
    service as a same-origin resource, but its Host header carries the attacker's name.
    TCP listeners answer only their address, localhost names and their `hosts`; a unix
    socket, which no browser reaches, answers any Host."""
    sock = tmp_path / "run" / "tf.sock"
    sock.parent.mkdir(mode=0o700)
    http = [
        {"listen": "127.0.0.1:0"},
        {"listen": "127.0.0.1:0", "hosts": ["tf.example.com", "Other.Example"]},
        {"listen": str(sock)},
    ]
    conf = write_config(tmp_path / "tf.conf", {"w": sleep_task()}, settings=tf_settings(http=http))
    taskforce.start("-f", str(conf))
    plain, named, unix = wait_listening(taskforce, 3)
    port = plain.rsplit(":", 1)[1]
    for path in ("/status/version", "/", "/events", "/metrics", "/manage/stop", "/nothing"):
        for address in (plain, named):
            data = host_request(address, "attacker.example", path)
            assert data.startswith(b"HTTP/1.1 421 "), (address, path, data[:200])
            assert b"attacker.example" in data and b"hosts" in data, data[:300]
    for host in (
        "attacker.example:" + port,
        "127.0.0.1.attacker.example",
        "localhost.x",
        "tf.example.com.attacker.example",
        "[::1",
        "",
        "127.0.0.1:" + port + "@x",
    ):
        assert host_request(plain, host).startswith(b"HTTP/1.1 4"), host
    for answered in ("127.0.0.1", f"127.0.0.1:{port}", "localhost", f"LOCALHOST:{port}",
                     "dashboard.localhost", None):  # fmt: skip
        assert host_request(plain, answered).startswith(b"HTTP/1.1 200 "), answered
    for host in ("tf.example.com", f"TF.example.com:{port}", "other.example", "localhost"):
        assert host_request(named, host).startswith(b"HTTP/1.1 200 "), host
    assert host_request(plain, "tf.example.com").startswith(b"HTTP/1.1 421 ")
    assert host_request(unix, "attacker.example").startswith(b"HTTP/1.1 200 ")
    # What clients send by themselves is accepted.
    assert request(plain, "GET", "/status/version").status == 200
    assert taskforce.running() and taskforce.stop() == 0


def open_files(pid: int) -> tuple[int, int]:
    """The soft and hard RLIMIT_NOFILE of a process, from its /proc entry."""
    with open(f"/proc/{pid}/limits") as f:
        line = next(line for line in f if line.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    return int(soft), int(hard)


def test_silent_tls_clients_cannot_take_the_descriptors_taskforce_needs(
    taskforce: Taskforce, tmp_path: Path, certificate: Certificate
) -> None:
    """Under a low open file limit (systemd's 1024, here 64 soft of 256 hard), connections
    to a TLS port that never send a ClientHello are counted from accept and their
    handshakes time out; taskforce raises its soft limit to the hard one (its tasks keep
    the limit they would have had) and keeps a reserve the service never takes. So the
    owner's unix socket answers, a task restarts, its output is captured and recorded."""
    sock = tmp_path / "run" / "tf.sock"
    sock.parent.mkdir(mode=0o700)
    http = [
        {"listen": "127.0.0.1:0", "certfile": str(certificate.combined), "timeout": 60},
        {"listen": "127.0.0.1:0", "certfile": str(certificate.combined), "timeout": 0.5},
        {"listen": str(sock), "allow_control": True},
    ]
    hello = "import os, time; print('hello', os.getpid(), flush=True); time.sleep(3600)"
    task = {"commands": {"start": [sys.executable, "-c", hello]},
            "output": {"stdout": str(tmp_path / "hello.log")}}  # fmt: skip
    conf = write_config(tmp_path / "tf.conf", {"hello": task}, settings=tf_settings(http=http))
    limited = "import os, resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (64, 256)); "
    limited += "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
    taskforce.spawn([sys.executable, "-c", limited, "-m", "taskforce", "-e", "-v", "-f", str(conf)])
    slow, quick, _ = wait_listening(taskforce, 3)
    assert open_files(taskforce.pid) == (256, 256)
    first = wait_for(lambda: task_processes(taskforce.marker).get("hello"), what="hello")[0]
    assert open_files(first) == (64, 256)  # the limit it was given, not taskforce's own
    # A silent client of the quick listener is dropped once its handshake times out.
    silent = connect(quick, timeout=30)
    try:
        assert silent.recv(1) == b""
    finally:
        silent.close()
    # A flood of silent clients of the slow one, more than the hard limit.
    host, port = slow.removeprefix("https://").rsplit(":", 1)
    flood: list[socket.socket] = []
    try:
        for _ in range(400):
            flood.append(socket.create_connection((host, int(port)), timeout=30))
        reply = request(f"unix:{sock}", "GET", "/status/version")
        assert reply.status == 200
        descriptors = len(os.listdir(f"/proc/{taskforce.pid}/fd"))
        assert descriptors <= 256 - 32, descriptors
        os.kill(first, signal.SIGKILL)
        second = wait_for(
            lambda: [p for p in task_processes(taskforce.marker).get("hello", []) if p != first],
            what="hello restarted",
        )[0]
        wait_for(lambda: f"hello {second}" in (tmp_path / "hello.log").read_text(),
                 what="the new process's output")  # fmt: skip
        lines = request(f"unix:{sock}", "GET", "/logs/hello").json()["lines"]
        assert [line["text"] for line in lines] == [f"hello {first}", f"hello {second}"]
        assert "Too many open files" not in taskforce.log()
    finally:
        for each in flood:
            each.close()
    assert request(f"unix:{sock}", "GET", "/status/version").status == 200
    assert taskforce.stop() == 0


# ----- substitution: argv words stay words ------------------------------------------------

NASTY = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ["a b", "; rm -rf /", "$(touch /tmp/x)", "`id`", "a\nb", "'", '"', "\\", "&&", "|",
         "*", "~", "$HOME", "${PATH}", "{other}", "{{x}}", "-rf", "--", "", " ", "\t", "%s",
         TASK_PID_MARKER, "{Task_pid}", "a=b", ">/etc/passwd", "\x00"]
    ),
)  # fmt: skip
HOST = HostFacts(
    hostname="h", fqdn="h.example", pid=1, uid=0, gid=0,
    user_lookup=lambda key: UserInfo("u", 1000, 1000), group_lookup=lambda key: 1000,
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(value=NASTY, other=NASTY, role_value=NASTY, env_value=NASTY)
def test_substituted_values_never_add_argv_words(
    value: str, other: str, role_value: str, env_value: str
) -> None:
    """Whatever a define, a roles file value or the environment holds, each word of the
    command stays exactly one word, and the program is the one written."""
    doc = {
        "defines": {"v": value, "other": other},
        "tasks": {
            "t": {
                "commands": {"start": ["/bin/prog", "{v}", "x{v}y", "{other}", "{Task_role_r}",
                                       "{E}", "--flag={v}", {"v": ["-v", "{v}"]}]},
                "roles": "r",
            }
        },
    }  # fmt: skip
    try:
        config = parse_config(json.dumps(doc), "t.json")
    except Exception as exc:  # values the file cannot hold (a NUL...) are refused there
        assert type(exc).__name__ == "ConfigError"
        return
    roles = Roles(("r",), {"r": role_value}) if "\x00" not in role_value else Roles(("r",))
    environ = {"PATH": "/bin", "E": env_value} if "\x00" not in env_value else {"PATH": "/bin"}
    desired, problems = resolve(config, roles, environ, HOST)
    if "t" not in desired.tasks:
        assert problems  # left out, and said why
        return
    argv = desired.tasks["t"].instances[0].launch.argv
    assert argv[0] == "/bin/prog"
    # 7 plain words, then the conditional's two words only when `v` is set (it always is).
    assert len(argv) == 9, argv
    assert desired.tasks["t"].instances[0].launch.program == "/bin/prog"


def test_a_task_never_runs_through_a_shell(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    planted = tmp_path / "pwned"
    evil = f"; touch {planted} #"
    roles = tmp_path / "roles"
    roles.write_text(f"r=$(touch {planted})\n")
    taskforce.env["EVIL"] = f"`touch {planted}`"
    conf = write_config(
        tmp_path / "tf.conf",
        {"t": probe_task(evil, "{Task_role_r}", "{EVIL}", "a b", roles="r")},
        defines={"X": evil},
        settings=tf_settings(),
    )
    taskforce.start("-f", str(conf), "-r", str(roles))
    (rec,) = probes.wait(1, task="t")
    assert rec["argv"][1:5] == [evil, f"$(touch {planted})", f"`touch {planted}`", "a b"]
    assert rec["orig_argv"][0] == sys.executable  # the program itself, no shell between
    assert not planted.exists()
    assert taskforce.stop() == 0


# ----- pidfiles and process records naming strangers -------------------------------------


def test_our_own_pidfile_naming_a_stranger_is_never_signalled(
    taskforce: Taskforce, tmp_path: Path
) -> None:
    pidfile = tmp_path / "tf.pid"
    with stranger() as victim, stranger() as holder_target:
        # Not locked: stale.
        pidfile.write_text(f"{victim.pid}\n")
        for command in (("-S",), ("-R",), ("upgrade", "-p", str(pidfile))):
            argv = command if command[0] == "upgrade" else (*command, "-p", str(pidfile))
            result = taskforce.run(*argv)
            assert result.returncode == 1, (command, result.stderr)
            assert victim.poll() is None
        # Locked by a process that is not the one the file names (a planted or rewritten
        # file): still never signalled.
        pidfile.write_text(f"{holder_target.pid}\n")
        with subprocess.Popen(
            [sys.executable, "-c",
             "import fcntl, sys, time\nf = open(sys.argv[1])\nfcntl.flock(f, fcntl.LOCK_EX)\n"
             "print('locked', flush=True)\nsys.stdin.read()\n", str(pidfile)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        ) as locker:  # fmt: skip
            try:
                assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
                for command in (("-S",), ("-R",), ("upgrade", "-p", str(pidfile))):
                    argv = command if command[0] == "upgrade" else (*command, "-p", str(pidfile))
                    result = taskforce.run(*argv)
                    assert result.returncode == 1, (command, result.stdout, result.stderr)
                    assert holder_target.poll() is None, command
            finally:
                locker.kill()  # leaving the block closes its pipes and reaps it


def test_a_task_pidfile_naming_another_process_of_the_same_interpreter_is_left_alone(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    """The task runs a Python script; the pidfile names some other Python program. Same
    executable, not the same program: it must be left alone."""
    pidfile = tmp_path / "w.pid"
    with stranger(sys.executable, "-c", "import time; time.sleep(600)") as victim:
        pidfile.write_text(f"{victim.pid}\n")
        conf = write_config(
            tmp_path / "tf.conf", {"w": probe_task(pidfile=str(pidfile))}, settings=tf_settings()
        )
        taskforce.start("-f", str(conf))
        probes.wait(1, task="w")
        assert taskforce.stop() == 0
        assert victim.poll() is None
        assert f"found pid {victim.pid}" not in taskforce.log()


def test_a_wait_tasks_pidfile_naming_a_process_of_its_program_is_left_alone(
    taskforce: Taskforce, tmp_path: Path
) -> None:
    """A clean first start: a wait task's pidfile names an unrelated `sleep 600`, the same
    program the task runs. Only processes our records name are stopped as leftovers of an
    earlier run; for a wait task a pidfile is no evidence at all."""
    pidfile = tmp_path / "w.pid"
    with stranger() as victim:
        pidfile.write_text(f"{victim.pid}\n")
        conf = write_config(
            tmp_path / "tf.conf",
            {"w": sleep_task(pidfile=str(pidfile))},
            settings=tf_settings(),
        )
        taskforce.start("-f", str(conf))
        taskforce.wait_log("w[0]: started pid")
        assert taskforce.stop() == 0
        assert victim.poll() is None
        assert f"pid {victim.pid}" not in taskforce.log()


PY = os.path.realpath(sys.executable)


@pytest.mark.parametrize(
    ("argv", "program", "command", "same"),
    [
        ((PY, PROBE_PATH, "--daemonize", "x"), PY, (PY, PROBE_PATH), True),
        ((PY, "-c", "import time"), PY, (PY, PROBE_PATH), False),
        ((PY, "-u", PROBE_PATH), PY, (PY, "-u", PROBE_PATH), True),
        ((PY, "-m", "http.server"), PY, (PY, "-m", "http.server"), True),
        ((PY, "-m", "other"), PY, (PY, "-m", "http.server"), False),
        ((PY, PROBE_PATH), PROBE_PATH, (PROBE_PATH,), True),  # a script run by its shebang
        (("sleep", "5"), SLEEP, (SLEEP, "3600"), True),  # not an interpreter: the binary
    ],
)
def test_an_interpreter_runs_the_tasks_program_only_with_its_script(
    argv: tuple[str, ...], program: str, command: tuple[str, ...], same: bool
) -> None:
    exe = PY if argv[0] == PY else os.path.realpath(SLEEP)
    identity = ProcessIdentity(1234, 1, exe, argv)
    assert runs_program(identity, program, command) is same


def test_a_daemon_pidfile_naming_a_later_process_of_the_same_interpreter_is_left_alone(
    taskforce: Taskforce, tmp_path: Path
) -> None:
    pidfile = tmp_path / "d.pid"
    handoff = tmp_path / "stranger.pid"
    # The start command waits for the stranger to exist, names it in the pidfile, exits 0.
    start = (
        "import os, sys, time\n"
        "while not os.path.exists(sys.argv[1]):\n    time.sleep(0.01)\n"
        "open(sys.argv[2], 'w').write(open(sys.argv[1]).read())\n"
    )
    task = {
        "commands": {"start": [sys.executable, "-c", start, str(handoff), str(pidfile)]},
        "control": "nowait",
        "pidfile": str(pidfile),
    }
    conf = write_config(tmp_path / "tf.conf", {"d": task}, settings=tf_settings(start_timeout=30))
    taskforce.start("-f", str(conf))
    taskforce.wait_log("d[0]: started pid")
    with stranger(sys.executable, "-c", "import time; time.sleep(600)") as victim:
        # Whole when it appears: the start command, polling for it, once read it empty
        # between its creation and the write (and named no pid: a loaded run's failure).
        (tmp_path / "stranger.tmp").write_text(f"{victim.pid}\n")
        (tmp_path / "stranger.tmp").rename(handoff)
        wait_for(lambda: "d[0]: pid" in taskforce.log() or "daemon pid" in taskforce.log()
                 or "does not run" in taskforce.log(), what="the pidfile looked at")  # fmt: skip
        wait_for(lambda: f"daemon pid {victim.pid}" in taskforce.log()
                 or "does not run" in taskforce.log(), what="a verdict")  # fmt: skip
        assert taskforce.stop() == 0
        assert victim.poll() is None


@pytest.mark.parametrize("planted", ["beside a shared pidfile", "a user's runtime directory"])
def test_process_records_planted_by_another_user_are_not_trusted(
    taskforce: Taskforce, probes: Probes, tmp_path: Path, shared: Path, planted: str
) -> None:
    """Records are kept beside the pidfile, or in the runtime directory. With the pidfile
    in a shared directory, another user can write the records file first; with root
    running on a user's XDG_RUNTIME_DIR (sudo -E), that user can make the runtime
    directory. Records naming strangers (with their true start times) must get none of
    them stopped "to start afresh", nor terminated as strays."""
    need_root()
    user = nobody()
    conf = write_config(tmp_path / "tf.conf", {"w": probe_task()}, settings=tf_settings())
    if planted == "beside a shared pidfile":
        args = ["-p", str(shared / "tf.pid")]
        state = Path(runtime_paths.default_state_file(str(shared / "tf.pid"), str(conf)))
    else:
        xdg = shared / "xdg"
        xdg.mkdir()
        os.chown(xdg, user.pw_uid, user.pw_gid)
        taskforce.env["XDG_RUNTIME_DIR"] = str(xdg)
        args = []
        state = xdg / "taskforce" / Path(runtime_paths.default_state_file(None, str(conf))).name
    with stranger() as victim, stranger() as stray:
        records = {
            "processes": [
                {"task": "w", "slot": 0, "pid": victim.pid, "start": start_ticks(victim.pid)},
                {"task": "gone", "slot": 0, "pid": stray.pid, "start": start_ticks(stray.pid)},
            ]
        }
        python_as(
            user,
            "import json, os, sys\nos.makedirs(os.path.dirname(sys.argv[1]), 0o700, True)\n"
            "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600)\n"
            "os.write(fd, sys.argv[2].encode())\n",
            str(state),
            json.dumps(records),
        )
        taskforce.start(*args, "-f", str(conf))
        probes.wait(1, task="w")
        taskforce.wait_log("w[0]: started pid")
        assert taskforce.stop() == 0
        assert victim.poll() is None and stray.poll() is None
        assert f"pid {victim.pid}" not in taskforce.log()
        assert f"pid {stray.pid}" not in taskforce.log()


@contextlib.contextmanager
def forged_task_process(
    user: pwd.struct_passwd, task: str, parent: int, *argv: str
) -> Iterator[subprocess.Popen[bytes]]:
    """A process of `user` that carries the Task_* variables taskforce gives its tasks,
    naming a gone taskforce `parent` as the one that started it."""
    script = f'exec env Task_pid=$$ Task_name={task} Task_instance=0 Task_ppid={parent} "$@"'
    proc = subprocess.Popen(
        ["sh", "-c", script, "sh", *argv],
        user=user.pw_uid,
        group=user.pw_gid,
        extra_groups=[],
        start_new_session=True,
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
    )
    try:
        wait_for(lambda: f"Task_pid={proc.pid}" in proc_environ_text(proc.pid), what="forgery")
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def recorded(state: Path) -> list[dict[str, Any]]:
    try:
        return list(json.loads(state.read_text())["processes"])
    except (OSError, ValueError, KeyError):
        return []


def proc_environ_text(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().replace(b"\0", b"\n").decode()
    except OSError:
        return ""


def test_processes_of_another_user_forging_task_variables_are_not_taken(
    taskforce: Taskforce, tmp_path: Path
) -> None:
    """taskforce (root) was SIGKILLed before recording its task processes. The next one
    takes a process as its own only when its records name it, or when it runs as the
    task's user and started after the earlier taskforce did: processes of nobody carrying
    forged Task_* variables are neither adopted nor stopped, whether the task runs as
    root or as nobody (then the forgery predates the earlier taskforce)."""
    need_root()
    user = nobody()
    tasks = {"x": sleep_task(), "y": sleep_task(user=user.pw_name)}
    conf = write_config(tmp_path / "tf.conf", tasks, settings=tf_settings())
    pidfile = tmp_path / "tf.pid"
    state = Path(runtime_paths.default_state_file(str(pidfile), str(conf)))
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that no longer runs
    with forged_task_process(user, "y", gone.pid, SLEEP, "3600") as before:
        taskforce.start("-p", str(pidfile), "-f", str(conf))
        earlier = taskforce.pid
        running = wait_for(
            lambda: (found := task_processes(taskforce.marker)).keys() >= {"x", "y"} and found,
            what="x and y running",
        )
        wait_for(lambda: len(recorded(state)) == 2, what="records of x and y")
        assert taskforce.proc is not None
        taskforce.proc.kill()
        taskforce.proc.wait(10)
        records = json.loads(state.read_text())
        records["processes"] = []  # as if killed before recording them
        state.write_text(json.dumps(records))
        with forged_task_process(user, "x", earlier, SLEEP, "3600") as after:
            taskforce.start("-p", str(pidfile), "-f", str(conf))
            for task in ("x", "y"):
                (pid,) = running[task]
                taskforce.wait_log(f"{task}[0]: found pid {pid} still running: stopping it")
            wait_for(lambda: all(len(task_processes(taskforce.marker).get(t, ())) == 1
                                 for t in ("x", "y")), what="x and y started afresh")  # fmt: skip
            assert taskforce.stop() == 0
            assert before.poll() is None and after.poll() is None
            assert f"pid {before.pid}" not in taskforce.log()
            assert f"pid {after.pid}" not in taskforce.log()


# ----- a task with `user`: none of taskforce's privileges ---------------------------------

# Records who the process is: ids, groups, capabilities and open descriptors.
WHOAMI = r"""
import json, os, sys
lines = open("/proc/self/status").read().splitlines()
status = dict(line.split(":\t", 1) for line in lines if ":\t" in line)
fds = {}
for fd in os.listdir("/proc/self/fd"):
    try:
        fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        pass
out = {"uid": os.getresuid(), "gid": os.getresgid(), "groups": sorted(os.getgroups()),
       "caps": {k: status[k].strip() for k in ("CapInh", "CapPrm", "CapEff", "CapAmb")},
       "fds": fds}
tmp = sys.argv[1] + ".tmp"
with open(tmp, "w") as f:
    json.dump(out, f)
os.rename(tmp, sys.argv[1])
if len(sys.argv) > 2:
    import signal, time
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    while True:
        time.sleep(3600)
"""


def test_a_task_with_a_user_gets_none_of_taskforces_privileges(
    taskforce: Taskforce, tmp_path: Path, shared: Path
) -> None:
    """taskforce runs as root with extra supplementary groups; the task, its stop command
    and its readiness probe run as nobody: nobody's ids and groups, no capabilities, no
    descriptor of taskforce's (pidfile, sockets, records)."""
    need_root()
    if SYSTEM_PYTHON is None:
        pytest.skip("no system python3 that other users can run")
    user = nobody()
    out = shared
    script = out / "whoami.py"
    script.write_text(WHOAMI)
    script.chmod(0o644)
    task = {
        "commands": {
            "start": [SYSTEM_PYTHON, str(script), str(out / "task.json"), "stay"],
            "stop": [SYSTEM_PYTHON, str(script), str(out / "stop.json")],
        },
        "ready": {"command": [SYSTEM_PYTHON, str(script), str(out / "ready.json")]},
        "user": "nobody",
        "cwd": "/",
    }
    conf = write_config(
        tmp_path / "tf.conf", {"svc": task}, settings=tf_settings(stop_timeout=2)
    )  # and the default socket is there too (no `http` key)
    conf.write_text(conf.read_text().replace('"http": [],', ""))
    pidfile = tmp_path / "tf.pid"
    # Extra groups for taskforce itself (disk, adm, and a made-up one).
    taskforce.spawn(
        ["setpriv", "--groups=4,6,4242", "--", *taskforce_argv("-p", str(pidfile), "-f", str(conf))]
    )
    taskforce.wait_log("svc[0]: pid")  # "is ready"
    assert taskforce.stop() == 0
    expected_groups = sorted(set(os.getgrouplist(user.pw_name, user.pw_gid)))
    ours = {
        str(pidfile),
        str(pidfile.with_suffix(".sock")),
        runtime_paths.default_state_file(str(pidfile), str(conf)),
    }
    for name in ("task", "ready", "stop"):
        seen = json.loads((out / f"{name}.json").read_text())
        assert seen["uid"] == [user.pw_uid] * 3, (name, seen)
        assert seen["gid"] == [user.pw_gid] * 3, (name, seen)
        assert seen["groups"] == expected_groups, (name, seen)
        assert set(seen["caps"].values()) == {"0000000000000000"}, (name, seen)
        leaked = {fd: target for fd, target in seen["fds"].items() if int(fd) > 2}
        assert not set(leaked.values()) & ours, (name, leaked)
        # Beyond stdio only the directory being listed (and the output file) may be open.
        assert all(t.startswith(("/proc/", str(out))) for t in leaked.values()), (name, leaked)


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, v in (line.split(":\t", 1) for line in lines if ":\t" in line)}


def test_a_task_with_a_user_gets_its_context_and_that_users_account_not_our_secrets(
    taskforce: Taskforce, tmp_path: Path
) -> None:
    """taskforce runs as root with its token and other variables of its own in its
    environment: a task running as nobody gets none of them, and HOME, USER, LOGNAME and
    SHELL from nobody's entry (a define still wins). `no_new_privs: true` shows as
    NoNewPrivs in the task's status; without it, setuid programs keep working."""
    need_root()
    user = nobody()
    taskforce.env.update(
        TASKFORCE_TOKEN=TOKEN,
        TASKFORCE_ETCD_PASSWORD="hunter2",
        HOME="/root",
        USER="root",
        LOGNAME="root",
        SHELL="/bin/bash",
        KEPT="context",
    )
    tasks = {
        "plain": sleep_task(user=user.pw_name),
        "locked": sleep_task(user=user.pw_name, no_new_privs=True),
        "defined": sleep_task(user=user.pw_name, defines={"HOME": "/srv/data"}),
        "own": sleep_task(),
    }
    conf = write_config(tmp_path / "tf.conf", tasks, settings=tf_settings())
    taskforce.start("-f", str(conf))
    found = wait_for(
        lambda: (live := task_processes(taskforce.marker)).keys() == tasks.keys() and live,
        what="every task running",
    )
    envs = {task: proc_environ(pid) for task, (pid,) in found.items()}
    for task, env in envs.items():
        assert not [k for k in env if k.startswith("TASKFORCE_")], (task, env)
        assert TOKEN not in Path(f"/proc/{found[task][0]}/environ").read_text(), task
        assert env["KEPT"] == "context", task
    account = {"HOME": user.pw_dir, "USER": user.pw_name, "LOGNAME": user.pw_name,
               "SHELL": user.pw_shell}  # fmt: skip
    for task in ("plain", "locked"):
        assert {k: envs[task][k] for k in account} == account, task
    assert envs["defined"]["HOME"] == "/srv/data" and envs["defined"]["USER"] == user.pw_name
    assert envs["own"]["HOME"] == "/root" and envs["own"]["USER"] == "root"
    nnp = {task: proc_status(pid)["NoNewPrivs"] for task, (pid,) in found.items()}
    assert nnp == {"plain": "0", "locked": "1", "defined": "0", "own": "0"}
    assert taskforce.stop() == 0


# ----- files taskforce creates ------------------------------------------------------------


def test_a_pidfile_planted_by_another_user_is_refused(
    taskforce: Taskforce, tmp_path: Path, shared: Path
) -> None:
    """In a shared (sticky, world-writable) directory, another user creates the pidfile
    first. Using it would let them rewrite the pid that -S/-R then signal: refuse it."""
    need_root()
    pidfile = shared / "tf.pid"
    python_as(nobody(), "import sys; open(sys.argv[1], 'w').write('1\\n')", str(pidfile))
    conf = write_config(tmp_path / "tf.conf", {"w": sleep_task()}, settings=tf_settings())
    result = taskforce.run("-e", "-p", str(pidfile), "-f", str(conf))
    assert result.returncode == 2, result.stderr
    assert "owned by" in result.stderr
    assert "Traceback" not in result.stderr
    assert pidfile.read_text() == "1\n"


def test_runtime_files_are_never_created_through_planted_links(
    taskforce: Taskforce, tmp_path: Path, shared: Path
) -> None:
    """Links planted in a shared directory where taskforce's files go: the socket is not
    offered there (others could replace it), neither the pidfile nor the process records
    (nor their temporary file) are written through one."""
    need_root()
    victim = shared / "victim"
    victim.write_text("precious\n")
    pidfile = shared / "tf.pid"
    sock = shared / "tf.sock"
    user = nobody()
    python_as(
        user,
        "import os, sys\nvictim, shared = sys.argv[1], sys.argv[2]\n"
        "os.symlink(victim, os.path.join(shared, 'tf.sock'))\n"
        "os.symlink(victim, os.path.join(shared, 'tf.pid'))\n"
        "for pid in range(2, 40000):  # whatever temporary name the records could use\n"
        "    os.symlink(victim, os.path.join(shared, f'tf.pid.state.{pid}.tmp'))\n",
        str(victim),
        str(shared),
    )
    conf = write_config(tmp_path / "tf.conf", {"w": sleep_task()}, settings={"stop_timeout": 1})
    result = taskforce.run("-e", "-p", str(pidfile), "-f", str(conf))
    # Refused as a link (ELOOP), or by the kernel's sticky-directory rules (EACCES).
    assert result.returncode in (2, 3) and "pidfile" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    (shared / "tf.pid").unlink()
    taskforce.start("-p", str(pidfile), "-f", str(conf))
    taskforce.wait_log("w[0]: started pid")
    assert sock.is_symlink()  # left alone
    assert "HTTP service not offered" in taskforce.log()
    info = pidfile.lstat()
    assert stat.S_ISREG(info.st_mode) and info.st_uid == 0
    state = Path(runtime_paths.default_state_file(str(pidfile), str(conf)))
    wait_for(state.exists, what="process records")
    info = state.lstat()
    assert stat.S_ISREG(info.st_mode) and info.st_uid == 0
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert taskforce.stop() == 0
    assert victim.read_text() == "precious\n"


def test_task_output_files_are_private_and_never_opened_through_links(
    taskforce: Taskforce, tmp_path: Path, shared: Path
) -> None:
    need_root()
    logs = shared
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    os.symlink(victim, logs / "planted.log")
    speak = [sys.executable, "-c", "import time\nprint('hello', flush=True)\ntime.sleep(600)"]
    tasks = {
        "good": {"commands": {"start": speak}, "output": {"stdout": str(logs / "good.log")}},
        "bad": {"commands": {"start": speak}, "output": {"stdout": str(logs / "planted.log")}},
    }
    conf = write_config(tmp_path / "tf.conf", tasks, settings=tf_settings())
    taskforce.spawn(["sh", "-c", 'umask 000 && exec "$@"', "sh", *taskforce_argv("-f", str(conf))])
    wait_for(lambda: (logs / "good.log").exists() and "hello" in (logs / "good.log").read_text(),
             what="output written")  # fmt: skip
    mode = stat.S_IMODE((logs / "good.log").stat().st_mode)
    assert mode & 0o007 == 0, oct(mode)
    taskforce.wait_log("symbolic link")
    assert taskforce.stop() == 0
    assert victim.read_text() == "precious\n"
    assert (logs / "planted.log").is_symlink()


# The task writes a line, waits for a file to appear, then writes far more than max_bytes.
WRITER = 'echo first; while [ ! -e "$1" ]; do sleep 0.05; done; seq 1 500; exec sleep 600'
# Run as the task's user: `link` to root's directory in the box, and a real `sub`.
PLANT = (
    "import os, sys\nos.mkdir(sys.argv[1] + '/sub')\n"
    "os.symlink(sys.argv[2], sys.argv[1] + '/link')\n"
)
# ... then, while the task runs, `sub` swapped for a link to root's directory.
SWAP = (
    "import os, sys\nos.rename(sys.argv[1] + '/sub', sys.argv[1] + '/old')\n"
    "os.symlink(sys.argv[2], sys.argv[1] + '/sub')\n"
)


def test_task_output_never_goes_through_a_directory_link_its_user_planted(
    taskforce: Taskforce, tmp_path: Path, shared: Path
) -> None:
    """A task running as nobody can write to a directory on its output paths: there it
    plants links to a directory of root's, before taskforce starts (for `planted.log`)
    and while it runs (for `swapped.log`, before a rotation). taskforce (root) must
    neither create, append to, rename nor delete anything there."""
    need_root()
    user = nobody()
    box = shared / "box"
    box.mkdir()
    os.chown(box, user.pw_uid, user.pw_gid)
    victim = tmp_path / "victim"
    victim.mkdir()
    names = ("planted.log", "swapped.log", "swapped.log.1", "swapped.log.2")
    precious = {name: f"precious {name}\n" for name in names}
    for name, text in precious.items():
        (victim / name).write_text(text)
    python_as(user, PLANT, str(box), str(victim))
    go = box / "go"

    def writer(path: Path) -> dict[str, Any]:
        return {
            "commands": {"start": ["sh", "-c", WRITER, "sh", str(go)]},
            "user": user.pw_name,
            "cwd": "/",
            "output": {"stdout": str(path), "max_bytes": 1000, "backups": 2},
        }

    tasks = {
        "planted": writer(box / "link" / "planted.log"),
        "swapped": writer(box / "sub" / "swapped.log"),
    }
    conf = write_config(tmp_path / "tf.conf", tasks, settings=tf_settings())
    taskforce.start("-f", str(conf))
    wait_for(lambda: "first" in read_text(box / "sub" / "swapped.log"), what="swapped.log written")
    python_as(user, SWAP, str(box), str(victim))
    go.touch()
    taskforce.wait_log(f"output to {box / 'link' / 'planted.log'}: cannot open it")
    taskforce.wait_log(f"output to {box / 'sub' / 'swapped.log'}: cannot rotate it")
    assert taskforce.stop() == 0
    assert {p.name: p.read_text() for p in victim.iterdir()} == precious
    assert "first" in read_text(box / "old" / "swapped.log")


def read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
