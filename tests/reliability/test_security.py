"""Security: who may talk to taskforce, what a task may inherit, what a file may make it do.

- the control socket is owner-only; TCP listeners refuse every control path (and, private,
  every path) without the token; a TLS listener never acts on a plaintext request;
- substituted values never add argv words, and nothing runs through a shell;
- a pidfile or a process record naming an unrelated process never gets it signalled;
- a task with `user` gets none of taskforce's privileges: ids, groups, capabilities, fds;
- files taskforce creates are private and never created through planted links.
"""

from __future__ import annotations

import json
import os
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
from support.procfs import start_ticks
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
from taskforce.runtime import paths as runtime_paths
from taskforce.runtime.identity import ProcessIdentity, runs_program

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
            if name == "metrics":
                return ""
            return {}

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


STATUS_CALLS = {"version", "config", "tasks", "metrics", "attach", "subscribe", "unsubscribe"}
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
        f"POST /manage/stop HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Length: 0\r\n\r\n".encode(),
    )
    assert not data.startswith(b"HTTP/"), data[:200]
    # Nothing was stopped, restarted or overridden; the right token still works.
    reply = request(control, "GET", "/status/config", headers={"Authorization": f"Bearer {TOKEN}"})
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
        handoff.write_text(f"{victim.pid}\n")
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
