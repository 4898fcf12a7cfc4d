"""Bad input: whatever the configuration, the roles file or an HTTP client sends, taskforce
answers with a positioned error (or a clean refusal) and keeps running; never a traceback.

- configuration: arbitrary text and YAML token soup, documents shaped by the JSON Schema
  with arbitrary values in every place (through load, validate, resolve and its context
  and substitution engine), and pathological documents (deep nesting, alias bombs...);
- roles files with odd bytes, huge lines, no final newline, on a running taskforce;
- the HTTP API of a running taskforce fuzzed with malformed requests, oversized parts,
  slow clients, unknown tasks and injection attempts in names and query strings.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_support import (  # noqa: F401 (fixtures)
    _run_frozen_source,
    connect,
    exchange,
    frozen_source,
    no_tracebacks,
    request,
    sleep_task,
    wait_listening,
)
from reliability_support import settings as tf_settings

from support.config import write_config
from support.procfs import task_processes
from support.runner import Taskforce
from support.wait import wait_for
from taskforce.config.errors import ConfigError
from taskforce.config.host import HostFacts, UserInfo
from taskforce.config.resolve import resolve
from taskforce.config.roles import Roles
from taskforce.config.schema import config_schema
from taskforce.config.validate import validate_document
from taskforce.config.yaml_source import HAVE_LIBYAML, load_document

PARSERS = [True, False] if HAVE_LIBYAML else [False]
HOST = HostFacts(
    hostname="h", fqdn="h.example", pid=4242, uid=0, gid=0,
    user_lookup=lambda key: UserInfo("svc", 1000, 1000) if key in ("svc", 1000, "1000") else None,
    group_lookup=lambda key: 1000 if key in ("svc", 1000, "1000") else None,
)  # fmt: skip
ROLE_SETS = [None, Roles(()), Roles(("a",), {"a": "x{y}"}), Roles(("a", "b"))]


def check_text(text: str, use_libyaml: bool) -> None:
    """Load, validate and resolve `text`: a ConfigError whose every problem says where, or a
    configuration that resolves (with each role set) without raising."""
    try:
        config = validate_document(load_document(text, "t.conf", use_libyaml=use_libyaml))
    except ConfigError as error:
        assert error.problems
        for problem in error.problems:
            assert problem.source == "t.conf"
            assert problem.mark is not None or problem.path, problem
            assert problem.message.strip(), problem
            assert len(str(problem)) < 2000, str(problem)[:300]  # brief, whatever the input
        return
    for roles in ROLE_SETS:
        desired, problems = resolve(config, roles, {"PATH": "/bin", "HOME": "/root"}, HOST)
        for problem in problems:
            assert problem.path, problem
        for spec in desired.tasks.values():
            for instance in spec.instances:
                assert instance.launch.argv and all(
                    isinstance(w, str) for w in instance.launch.argv
                )


# ----- arbitrary text -----------------------------------------------------------------------

TOKENS = st.sampled_from(
    ["{", "}", "[", "]", ":", ",", " ", "\n", "  ", "- ", "? ", "&a ", "*a", "&b ", "*b",
     "!!str ", "!!int ", "!!map ", "!!set ", "!foo ", "|", ">", "'", '"', "#", "%YAML 1.2\n",
     "---\n", "...\n", "\t", "\r\n", "\\u00e9", "\\", "tasks", "commands", "start", "stop",
     "count", "control", "defines", "defaults", "role_defines", "roles", "events", "type",
     "path", "signal", "requires", "onexit", "settings", "restart", "http", "listen", "user",
     "group", "cwd", "procname", "pidfile", "ready", "output", "time_limit", "{x}", "{Task_pid}",
     "{Task_instance}", "1", "-1", "0", "0x1F", "0o17", "1e5", "1e999", ".inf", ".nan", "~",
     "null", "true", "off", "yes", "x", "é", "\u2028", "\x85", "\ufeff", "9" * 30, "/bin/x"]
)  # fmt: skip
SOUP = st.lists(TOKENS, max_size=80).map("".join)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(SOUP, st.text(max_size=300)), st.sampled_from(PARSERS))
def test_any_text_gives_a_config_or_positioned_problems(text: str, use_libyaml: bool) -> None:
    check_text(text, use_libyaml)


# ----- documents shaped like configurations, with arbitrary values --------------------------

SCHEMA = config_schema()
# Names for keys; "a b" (not a name a reference can spell) is in TEXT and test_xfail below.
NAMES = st.sampled_from(["a", "b", "web", "db", "x", "Task_name", "PATH", "y", "_1"])
TEXT = st.one_of(
    st.text(max_size=12),
    NAMES.map("{{{}}}".format),
    st.lists(st.one_of(NAMES.map("{{{}}}".format), st.sampled_from(["{", "}", "x", "/", " "])),
             max_size=5).map("".join),
    st.sampled_from(["", " ", "/bin/sleep", "sleep", "/", "-", "{", "{{}}", "\x00", "a=b",
                     "{a b}", "{é}", "é", "{Task_pid}", "{Task_user}", "wait", "once", "off",
                     "nowait", "svc", "HUP"]),
)  # fmt: skip
SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), TEXT
)
ANY = st.recursive(
    SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.one_of(NAMES, TEXT), inner, max_size=3)
    ),
    max_leaves=8,
)


def from_schema(schema: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Values mostly of the schema's shape; one in eight anything at all (to hit errors)."""
    return st.one_of(ANY, _shaped(schema, depth)) if depth else _shaped(schema, depth)


def _shaped(schema: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if depth > 4:
            return SCALAR
        return st.deferred(lambda: from_schema(SCHEMA["$defs"][name], depth + 1))
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of(*(from_schema(s, depth + 1) for s in schema[key]))
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    kinds = schema.get("type", "object" if "properties" in schema else None)
    if isinstance(kinds, list):
        return st.one_of(*(_shaped({**schema, "type": k}, depth) for k in kinds))
    if kinds == "object" and depth < 6:
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        fixed = st.fixed_dictionaries(
            {},
            optional={k: from_schema(v, depth + 1) for k, v in properties.items()},
        )
        if isinstance(extra, dict):
            keys = st.one_of(NAMES, TEXT)
            free = st.dictionaries(keys, from_schema(extra, depth + 1), max_size=3)
            return st.tuples(fixed, free).map(lambda pair: {**pair[1], **pair[0]})
        return fixed
    if kinds == "array" and depth < 6:
        return st.lists(from_schema(schema.get("items", {}), depth + 1), max_size=3)
    if kinds == "string":
        return TEXT
    if kinds == "integer":
        return st.integers(-3, 12)
    if kinds == "number":
        return st.one_of(st.integers(-1, 5), st.floats(-1, 100))
    if kinds == "boolean":
        return st.booleans()
    if kinds == "null":
        return st.none()
    return SCALAR


def render(document: Any, style: str) -> str:
    if style == "json":
        return json.dumps(document)
    return yaml.safe_dump(document, default_flow_style=style == "flow", allow_unicode=True)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(from_schema(SCHEMA), st.sampled_from(["json", "flow", "block"]), st.sampled_from(PARSERS))
def test_configuration_shaped_documents_resolve_or_report_positioned_problems(
    document: Any, style: str, use_libyaml: bool
) -> None:
    try:
        text = render(document, style)
    except (ValueError, yaml.YAMLError):  # not representable (NaN keys...): nothing to test
        return
    check_text(text, use_libyaml)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.dictionaries(NAMES, TEXT, max_size=5),
    st.dictionaries(NAMES, TEXT, max_size=5),
    st.dictionaries(st.sampled_from(["a", "b"]), st.dictionaries(NAMES, TEXT, max_size=3)),
    st.lists(st.one_of(TEXT, st.dictionaries(NAMES, st.one_of(TEXT, st.lists(TEXT))),
                       st.lists(TEXT, max_size=2)), max_size=5),
    st.dictionaries(st.text(max_size=6), TEXT, max_size=4),
)  # fmt: skip
def test_context_and_substitution_never_fail_unexpectedly(
    defines: dict[str, str],
    defaults: dict[str, str],
    role_defines: dict[str, dict[str, str]],
    argv: list[Any],
    environ: dict[str, str],
) -> None:
    """The context and substitution engine on arbitrary names, templates and references
    (loops, self references, names that do not exist, braces that close nothing)."""
    document = {
        "defines": defines,
        "defaults": defaults,
        "role_defines": role_defines,
        "tasks": {
            "t": {
                "commands": {"start": ["/bin/prog", *argv]},
                "defines": {"own": "{a}{b}"},
                "procname": "{a}",
                "cwd": "/{b}",
                "count": "{n}" if "n" in defines else 2,
            }
        },
    }
    text = json.dumps(document)
    try:
        config = validate_document(load_document(text, "t.conf"))
    except ConfigError as error:
        assert all(p.mark is not None for p in error.problems)
        return
    clean = {k: v for k, v in environ.items() if "\x00" not in k + v and "=" not in k and k}
    for roles in ROLE_SETS:
        desired, problems = resolve(config, roles, clean, HOST)
        assert ("t" in desired.tasks) != bool(problems) or problems


def test_a_define_of_a_name_with_a_space_that_refers_to_itself() -> None:
    document = {
        "defaults": {"a b": "1"},
        "role_defines": {"a": {"a b": "{a b}"}},
        "tasks": {"t": {"commands": {"start": ["/bin/prog"]}}},
    }
    check_text(json.dumps(document), use_libyaml=PARSERS[0])


PATHOLOGICAL = {
    "deep flow lists": "{tasks: " + "[" * 5000 + "]" * 5000 + "}",
    "deep flow lists under libyaml's limit": "{tasks: " + "[" * 900 + "]" * 900 + "}",
    "deep flow maps": "tasks: " + "{a: " * 600 + "1" + "}" * 600,
    "deep block lists": "tasks:\n" + "".join(" " * (i + 1) + "-\n" for i in range(600)),
    "alias bomb": "".join(
        f"{n}: &{n} [{', '.join([f'*{p}'] * 10 if p else ['x'] * 10)}]\n"
        for p, n in zip(["", *"abcdefgh"], "abcdefghi", strict=False)
    ),
    "recursive alias": "a: &a [*a]\n",
    "huge integer": "tasks: {t: {count: " + "9" * 5000 + ", commands: {start: [x]}}}",
    "huge float": "settings: {stop_timeout: 1" + "0" * 5000 + ".5}",
    "huge string": "defines: {x: '" + "y" * 500_000 + "'}\ntasks: {}\n",
    "huge key": "tasks: {'" + "k" * 100_000 + "': {commands: {start: [x]}}}",
    "many keys": "defines: {" + ", ".join(f"k{i}: {i}" for i in range(5000)) + "}\n",
    "many duplicate keys": "tasks: {" + ", ".join("t: {}" for _ in range(5000)) + "}",
    "many documents": "---\ntasks: {}\n" * 1000,
    "lone surrogate": "tasks: {t: {commands: {start: [\ud83d]}}}",
    "nul": "tasks:\x00",
    "only a BOM": "\ufeff",
    "binary noise": bytes(range(256)).decode("latin-1"),
    "count as a huge substitution": "defines: {n: '" + "9" * 5000 + "'}\n"
    "tasks: {t: {count: '{n}', commands: {start: [x]}}}",
    "huge count": "tasks: {t: {count: 99999999999, commands: {start: [x]}}}",
    "long chain of defines": "defines: {"
    + ", ".join(f"d{i}: '{{d{i + 1}}}'" for i in range(2000))
    + "}\ntasks: {t: {commands: {start: ['{d0}']}}}",
}


@pytest.mark.timeout(60)
def test_a_substitution_bomb_is_refused() -> None:
    levels = 22
    text = (
        "defines: {"
        + ", ".join(f"e{i}: '{{e{i + 1}}}{{e{i + 1}}}'" for i in range(levels))
        + f", e{levels}: x}}\ntasks: {{t: {{commands: {{start: ['/bin/p', '{{e0}}']}}}}}}"
    )
    config = validate_document(load_document(text, "t.conf"))
    desired, problems = resolve(config, None, {}, HOST)
    assert "t" not in desired.tasks and problems


@pytest.mark.timeout(60)
@pytest.mark.parametrize("use_libyaml", PARSERS)
@pytest.mark.parametrize("name", sorted(PATHOLOGICAL))
def test_pathological_documents(name: str, use_libyaml: bool) -> None:
    check_text(PATHOLOGICAL[name], use_libyaml)


# ----- roles files on a running taskforce ----------------------------------------------------


def test_odd_roles_files_are_refused_with_their_position_and_change_nothing(
    taskforce: Taskforce, tmp_path: Path
) -> None:
    roles = tmp_path / "roles"
    roles.write_bytes(b"web\n")
    tasks = {"w": sleep_task(roles="web"), "d": sleep_task(roles="db"), "all": sleep_task()}
    conf = write_config(tmp_path / "tf.conf", tasks, settings=tf_settings())
    taskforce.start("-f", str(conf), "-r", str(roles))
    wait_for(lambda: set(task_processes(taskforce.marker)) == {"w", "all"}, what="web tasks")
    before = task_processes(taskforce.marker)
    bad = {
        b"web\ndb\xff\n": "2:3: invalid UTF-8 byte 0xFF",
        b"web\n" + b"x" * 4_000_000 + b" y\n": "2:4000001:",
        b"web\nd\x00b\n": "2:2:",
        b"web\n\x1b[31mred\n": "2:1:",
        b"web\n=value\n": "2:1: a role name is missing",
    }
    for number, (content, where) in enumerate(bad.items(), start=1):
        roles.write_bytes(content)

        def refused(n: int = number) -> bool:
            return taskforce.log().count("new configuration not applied") >= n

        wait_for(refused, what=f"refusal {number}")
        assert where in taskforce.log(), where
        assert task_processes(taskforce.marker) == before
    # Every log line stays brief, however long the bad line was.
    assert max(len(line) for line in taskforce.log().splitlines()) < 2000
    # No final newline, CRLF line ends, a byte order mark, comments: all fine.
    roles.write_bytes(b"\xef\xbb\xbfweb\r\n# a comment\r\ndb")
    wait_for(lambda: set(task_processes(taskforce.marker)) == {"w", "d", "all"}, what="db too")
    assert task_processes(taskforce.marker)["w"] == before["w"]
    no_tracebacks(taskforce.log())
    assert taskforce.stop() == 0


# ----- the HTTP API ------------------------------------------------------------------------

TOKEN = "fuzz-token-0123456789abcdef"
INJECTIONS = [
    "../../etc/passwd", "..%2f..%2fetc%2fpasswd", "%00", "w%00", "w\x00", "%0d%0aX-Injected:%201",
    "w;rm -rf /", "$(touch /tmp/tf-pwned)", "`id`", "{Task_pid}", "<script>alert(1)</script>",
    "' OR 1=1 --", "w/../w", "%2e%2e", "*", "w%20", "%ff%fe", "\u202e", "a" * 3000, "%",
    "w?x=1", "#frag", "w//start",
]  # fmt: skip
QUERY_INJECTIONS = [
    "signal=KILL%0d%0aX: y", "signal=9;reboot", "indent=99999999999999999999", "indent=-1",
    "n=99999999999999999999", "n=-5", "follow=1&follow=0", "w=off&w=on", "&&&&", "=", "a=%",
    "x=" + "%41" * 2000, "signal=" + "A" * 5000, "signal=0", "signal=99", "signal=SIG", "a" * 9000,
    "&".join(f"k{i}=v" for i in range(1500)),
]  # fmt: skip
PATHS = [
    "/", "/status/tasks", "/status/config", "/status/reload", "/status/version", "/status/access",
    "/metrics",
    "/manage/control", "/manage/count", "/manage/reload", "/manage/plan", "/manage/tasks/w/start",
    "/manage/tasks/w/signal", "/logs/w", "/static/x.js", "/nothing",
]  # fmt: skip


@st.composite
def http_requests(draw: st.DrawFn) -> bytes:
    """Mostly-HTTP: a request line, headers and a body, each possibly broken."""
    method = draw(st.sampled_from(["GET", "POST", "PUT", "HEAD", "OPTIONS", "G ET", "", "\x00",
                                   "CONNECT", "TRACE", "get", "GET" * 100]))  # fmt: skip
    base = draw(st.sampled_from(PATHS))
    if base.startswith(("/manage/tasks/w", "/logs/w")) and draw(st.booleans()):
        base = base.replace("/w", "/" + draw(st.sampled_from(INJECTIONS)), 1)
    query = draw(st.one_of(st.just(""), st.sampled_from(QUERY_INJECTIONS), st.text(max_size=20)))
    target = base + ("?" + query if query else "")
    target = draw(st.sampled_from([target, target.replace("/", "//"), "*", "http://x" + target,
                                   target + " HTTP/1.1 extra", target + "\r\nX: y"]))  # fmt: skip
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1 ", "", "HTTP/9"]))
    hosts = st.sampled_from(["localhost", "127.0.0.1", "x", "localhost:1", "[::1]:"])
    headers = [("Host", draw(hosts))] if draw(st.booleans()) else []
    if draw(st.booleans()):
        credentials = draw(st.sampled_from([
            f"Bearer {TOKEN}x", "Bearer", "Basic " + base64.b64encode(b"a:b").decode(),
            "Bearer " + "A" * 20000, f"bearer {TOKEN[:-1]}", f"Bearer {TOKEN}\r\nX-Injected: 1",
        ]))  # fmt: skip
        headers.append(("Authorization", credentials))
    bodies = st.sampled_from([b"w=off", b"{" * 1000, b"\xff\xfe", b"tasks: {}"])
    body = draw(st.one_of(st.just(b""), st.binary(max_size=64), bodies))
    framing = draw(st.sampled_from(["length", "none", "wrong", "chunked", "bad-chunked", "both",
                                    "negative", "huge"]))  # fmt: skip
    if framing == "length":
        headers.append(("Content-Length", str(len(body))))
    elif framing == "wrong":
        headers.append(("Content-Length", str(len(body) + 5)))
    elif framing == "chunked":
        headers.append(("Transfer-Encoding", "chunked"))
        body = (b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)) if body else b"0\r\n\r\n"
    elif framing == "bad-chunked":
        headers.append(("Transfer-Encoding", "chunked"))
        body = b"zz\r\n" + body
    elif framing == "both":
        headers += [("Content-Length", "3"), ("Transfer-Encoding", "chunked")]
    elif framing == "negative":
        headers.append(("Content-Length", "-1"))
    elif framing == "huge":
        headers.append(("Content-Length", "9" * 30))
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(["X-A", "X A", "", ":", "X-\x00", "Content-Length",
                                     "Expect", "Connection", "Upgrade", "A" * 20000]))  # fmt: skip
        value = draw(st.sampled_from(["1", "100-continue", "close", "h2c", "\x7f", "a" * 20000,
                                      "\r\n\r\nGET / HTTP/1.1", ""]))  # fmt: skip
        headers.append((name, value))
    head = f"{method} {target} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    return head.encode("utf-8", "surrogateescape") + b"\r\n" + body


# A reply is nothing (connection closed) or HTTP responses with a status we mean to send.
ALLOWED = {100, 200, 400, 401, 403, 404, 405, 408, 409, 413, 421, 422, 431, 501, 503, 505}
STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ")
KNOWN_HEADERS = {
    "content-type", "content-length", "cache-control", "x-content-type-options", "connection",
    "www-authenticate", "allow", "content-security-policy", "x-frame-options", "date", "server",
    "x-accel-buffering", "transfer-encoding",
}  # fmt: skip


def check_reply(data: bytes) -> None:
    for match in STATUS_LINE.finditer(data):
        assert int(match.group(1)) in ALLOWED, data[:500]
    for block in re.split(rb"\r\n\r\n", data):
        if not STATUS_LINE.match(block):
            continue
        for line in block.split(b"\r\n")[1:]:
            name = line.split(b":", 1)[0].decode("latin-1").lower()
            assert name in KNOWN_HEADERS, (line[:200], data[:500])  # nothing injected


@pytest.fixture
def api(taskforce: Taskforce, tmp_path: Path) -> list[str]:
    """A running taskforce with a token-protected TCP listener (control allowed) and a
    status-only one, one task `w`; the listeners' addresses."""
    http = [
        {"listen": "127.0.0.1:0", "allow_control": True, "token": TOKEN, "timeout": 1},
        {"listen": "127.0.0.1:0", "timeout": 1},
    ]
    conf = write_config(tmp_path / "tf.conf", {"w": sleep_task()}, settings=tf_settings(http=http))
    taskforce.start("-f", str(conf), flags=("-e",))  # not -v: requests are logged at debug
    addresses = wait_listening(taskforce, 2)
    wait_for(lambda: "w" in task_processes(taskforce.marker), what="w running")
    return addresses


def test_fuzzed_http_requests_get_clean_answers_and_change_nothing(
    taskforce: Taskforce, api: list[str]
) -> None:
    before = task_processes(taskforce.marker)
    # HEAD: an answer without a body (h11 refuses to send one), whatever the path.
    for target in ("/", "/status/tasks", "/nothing", "/manage/reload"):
        for address in api:
            data = exchange(address, f"HEAD {target} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            check_reply(data)
            head, _, body = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 4") and body == b"", (target, data[:300])

    @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck),
              database=None)  # fmt: skip
    @given(http_requests(), st.sampled_from(api))
    def fuzz(data: bytes, address: str) -> None:
        check_reply(exchange(address, data, timeout=10))

    fuzz()
    assert taskforce.running()
    assert task_processes(taskforce.marker) == before
    reply = request(api[0], "GET", "/status/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    assert reply.status == 200 and reply.json()["overrides"] == {}
    no_tracebacks(taskforce.log())
    assert "HTTP connection failed" not in taskforce.log()
    assert "internal error" not in taskforce.log()
    assert taskforce.stop() == 0


def test_unknown_tasks_and_injections_with_the_token_are_refused(
    taskforce: Taskforce, api: list[str]
) -> None:
    """With a valid token: task names and query strings carrying injections name no task
    (404), or are refused as bad requests; nothing runs, nothing stops."""
    before = task_processes(taskforce.marker)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for name in INJECTIONS:
        quoted = name.replace("\x00", "%00").replace("?", "%3F").replace("#", "%23")
        quoted = quoted.replace(" ", "%20").replace("\u202e", "%E2%80%AE")
        for action in ("start", "stop", "restart", "signal?signal=TERM"):
            raw = f"POST /manage/tasks/{quoted}/{action} HTTP/1.1\r\nHost: localhost\r\n"
            raw += f"Authorization: Bearer {TOKEN}\r\nContent-Length: 0\r\n\r\n"
            data = exchange(api[0], raw.encode("utf-8", "surrogateescape"))
            check_reply(data)
            status = int(m.group(1)) if (m := STATUS_LINE.match(data)) else None
            assert status in (None, 400, 404), (name, action, data[:300])
        for key in ("control", "count"):
            reply = request(api[0], "POST", f"/manage/{key}?{quoted}=off", headers=auth)
            assert reply.status in (400, 404), (name, key, reply.status, reply.body[:200])
    for query in QUERY_INJECTIONS:
        for path in ("/manage/tasks/w/signal", "/logs/w", "/status/tasks", "/manage/control"):
            data = exchange(
                api[0],
                f"POST {path}?{query} HTTP/1.1\r\nHost: localhost\r\n"
                f"Authorization: Bearer {TOKEN}\r\nContent-Length: 0\r\n\r\n".encode(),
            )
            check_reply(data)
            status = int(m.group(1)) if (m := STATUS_LINE.match(data)) else None
            if path == "/manage/tasks/w/signal":
                assert status in (400, 413, 431), (path, query, data[:300])
    assert task_processes(taskforce.marker) == before
    assert not Path("/tmp/tf-pwned").exists()
    no_tracebacks(taskforce.log())
    assert taskforce.stop() == 0


def test_slow_clients_cannot_hold_the_service_or_the_supervisor(
    taskforce: Taskforce, api: list[str], tmp_path: Path
) -> None:
    """Slowloris: more clients than the listener admits, each dribbling a request. Each is
    dropped after the listener's timeout; meanwhile the other listener answers and tasks
    are restarted; afterwards the attacked listener answers again."""
    attacked, other = api
    stop = threading.Event()
    opened: list[socket.socket] = []

    def attacker() -> None:
        # Keep 80 connections open, each sending one header byte at a time until closed.
        while not stop.is_set():
            while len(opened) < 80 and not stop.is_set():
                try:
                    sock = connect(attacked, timeout=5)
                    sock.sendall(b"GET /status/tasks HTTP/1.1\r\nX-Slow: ")
                    opened.append(sock)
                except OSError:
                    break
            for sock in list(opened):
                try:
                    sock.sendall(b"a")
                except OSError:
                    opened.remove(sock)
                    sock.close()
            stop.wait(0.05)

    thread = threading.Thread(target=attacker, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(opened) >= 64, what="the listener full of slow clients")
        # The other listener still answers; the supervisor still restarts tasks.
        assert request(other, "GET", "/status/version").status == 200
        (pid,) = task_processes(taskforce.marker)["w"]
        os.kill(pid, 9)
        wait_for(lambda: task_processes(taskforce.marker).get("w", [pid]) != [pid], what="restart")
        # A slow client is dropped after the timeout (1s) however much it dribbles.
        dropped = _dribble_until_dropped(other)
        assert dropped.startswith(b"HTTP/1.1 408 ") or dropped == b"", dropped[:200]
    finally:
        stop.set()
        thread.join(10)
        for sock in opened:
            with contextlib.suppress(OSError):
                sock.close()
    wait_for(lambda: _answers(attacked), what="the attacked listener answering again")
    no_tracebacks(taskforce.log())
    assert taskforce.stop() == 0


def _dribble_until_dropped(address: str) -> bytes:
    sock = connect(address, timeout=10)
    data = b""
    try:
        sock.sendall(b"GET /status/tasks HTTP/1.1\r\nX-Slow: ")
        sock.settimeout(0.1)
        for _ in range(300):  # 30 seconds at most
            try:
                sock.sendall(b"a")
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if not chunk:
                break
            data += chunk
        else:
            raise AssertionError("a slow client was never dropped")
    finally:
        sock.close()
    return data


def _answers(address: str) -> bool:
    try:
        return request(address, "GET", "/status/version", timeout=5).status == 200
    except OSError:
        return False


def _tcp_state(sock: socket.socket) -> int:
    """The connection's state as the kernel keeps it (tcp_states.h; the first byte of
    TCP_INFO): 8 CLOSE_WAIT once the peer closed, 7 CLOSE once it reset."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]


def test_a_client_that_sent_a_refused_body_reads_the_refusal(
    taskforce: Taskforce, api: list[str]
) -> None:
    """A client sends a whole body over the limit (as curl does), then reads. taskforce
    answered 413 at once but stopped draining after 1 MiB and closed with the rest unread,
    so the kernel reset the connection: a client slow to finish (a loaded clean-clone
    run) got ENOTCONN and no answer. It now drains what keeps coming, then closes."""
    body = b"x" * (2 * 1024 * 1024)
    head = b"POST /status/tasks HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n"
    sock = connect(api[1], timeout=10)
    try:
        sock.sendall(head % len(body) + body)
        # As a client descheduled here would find it: the server done with the connection.
        wait_for(lambda: _tcp_state(sock) in (7, 8), what="taskforce to close the connection")
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    no_tracebacks(taskforce.log())


def test_oversized_and_slow_requests_are_cut_off(taskforce: Taskforce, api: list[str]) -> None:
    """Headers over 16 KiB get 431, bodies over 1 MiB 413 (declared or sent), a body that
    trickles in 408; the service answers the next client as before."""
    status = api[1]
    huge_header = f"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: {'a' * 70000}\r\n\r\n".encode()
    assert exchange(status, huge_header).startswith(b"HTTP/1.1 431 ")
    many_headers = "GET / HTTP/1.1\r\n" + "".join(f"X-{i}: {i}\r\n" for i in range(5000))
    assert exchange(status, many_headers.encode() + b"\r\n").startswith(b"HTTP/1.1 431 ")
    body = b"x" * (2 * 1024 * 1024)
    sent = b"POST /status/tasks HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % len(
        body
    )
    assert exchange(status, sent + body).startswith(b"HTTP/1.1 413 ")
    chunked = (
        b"POST /status/tasks HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunks = b"".join(b"%x\r\n%s\r\n" % (65536, b"y" * 65536) for _ in range(20)) + b"0\r\n\r\n"
    assert exchange(status, chunked + chunks).startswith(b"HTTP/1.1 413 ")
    sock = connect(status, timeout=10)
    try:
        sock.sendall(
            b"POST /status/tasks HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\nab"
        )
        data = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                data += chunk
    finally:
        sock.close()
    assert data.startswith(b"HTTP/1.1 408 "), data[:200]
    assert request(status, "GET", "/status/version").status == 200
    no_tracebacks(taskforce.log())
    assert taskforce.stop() == 0


# Characters str.isdigit() and int() take for digits that are not ASCII: superscripts,
# Arabic-Indic, fullwidth digits, and what int() forgives (signs, spaces, underscores).
NOT_ASCII_NUMBERS = ["%C2%B2", "%D9%A3", "%EF%BC%93", "+3", "%203", "1_0", "3%20", "9" * 5000]


def test_numeric_parameters_take_ascii_digits_only(taskforce: Taskforce, api: list[str]) -> None:
    """Every numeric query parameter (?indent, ?n, ?signal, the count of /manage/count):
    what is not plain ASCII digits is a 400 naming the parameter, never a 500 or a
    traceback, and changes nothing."""
    before = task_processes(taskforce.marker)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for number in NOT_ASCII_NUMBERS:
        for method, path, name in [
            ("GET", f"/status/tasks?indent={number}", "indent"),
            ("GET", f"/logs/w?n={number}", "n"),
            ("POST", f"/manage/tasks/w/signal?signal={number}", "signal"),
            ("POST", f"/manage/count?w={number}", "count"),
        ]:
            reply = request(api[0], method, path, headers=auth)
            assert reply.status == 400, (path, reply.status, reply.body[:200])
            assert name in reply.json()["error"], (path, reply.body[:200])
    # Plain digits still work.
    assert request(api[0], "GET", "/status/tasks?indent=2", headers=auth).status == 200
    assert request(api[0], "POST", "/manage/tasks/w/signal?signal=0", headers=auth).status == 400
    assert task_processes(taskforce.marker) == before
    no_tracebacks(taskforce.log())
    assert "internal error" not in taskforce.log()
    assert taskforce.stop() == 0
