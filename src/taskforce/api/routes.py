# Over 450 lines: one job, each path mapped to its controller call; the API has many paths.
"""The paths of the service, each mapped to one Controller call; errors as JSON.

Status paths answer GET: /status/version, /status/reload (where the configuration comes
from, the active roles, the latest reload error, temporary overrides), /status/tasks
(?task=NAME|GLOB, ?state=STATE|wanted|unwanted, ?fields=KEY: see api/query.py),
/status/summary (how many tasks in each state),
/metrics, /events (a server-sent event stream), / (the dashboard) with its /static/NAME
files, and /status/access (whether this request could use the control paths, so that the
dashboard shows its buttons only where they work; and whether the fleet paths work).
/status/config is the configuration document as loaded, as the original answers it; it
holds secrets, so only callers that could control (or that hold the listener's token) get
it. When the configuration comes from etcd, /status/fleet (every host of the fleet: its roles, its
tasks' states) and /events/fleet (the same as an event stream); elsewhere these two
answer 404. Control paths need control to
be allowed on the listener: the original /manage/control?TASK=CONTROL,
/manage/count?TASK=N, /manage/reload, /manage/stop and /manage/reset answer GET and POST;
the newer ones change things and so take POST only: /manage/tasks/NAME/start, .../stop,
.../restart, .../signal?signal=HUP and /manage/plan (the body is configuration text).
/logs/NAME?n=N (a task's recent output; with follow=1 an event stream of it) answers GET
but needs control too: task output often holds what mere status readers should not see.

JSON replies are compact; `?indent=N` pretty-prints them (except on /manage/control and
/manage/count, where every parameter names a task).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from taskforce.api.auth import (
    CHALLENGE,
    Access,
    Denied,
    check_control,
    check_secrets,
    check_status,
)
from taskforce.api.logstream import LogFollow
from taskforce.api.metrics import Row, exposition
from taskforce.api.query import TaskQuery, parse_query
from taskforce.api.sse import Fleet, FleetFeed
from taskforce.runtime.manage import ControlError, whole_number
from taskforce.runtime.output.capture import Follower

log = logging.getLogger("taskforce")

JSON_TYPE = "application/json"
METRICS = "text/plain; version=0.0.4; charset=utf-8"
HTML_TYPE = "text/html; charset=utf-8"
STATIC = os.path.join(os.path.dirname(__file__), "static")
DASHBOARD = os.path.join(STATIC, "dashboard.html")
STATIC_PREFIX = "/static/"
LOGS_PREFIX = "/logs/"
DEFAULT_LOG_LINES = 100
MAX_LOG_LINES = 1_000_000_000  # more than any task's captured output holds
# The dashboard's own files; a name is checked against this before any file is opened.
STATIC_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*\.(js|css)")
STATIC_TYPES = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"}
MAX_INDENT = 16
MAX_FIELDS = 1000

GET = ("GET",)
GET_POST = ("GET", "POST")
POST = ("POST",)
TASK_ACTIONS = ("start", "stop", "restart", "signal")


class ControlSurface(Protocol):
    """What the routes need of :class:`taskforce.api.status.Controller`."""

    origin: str  # who asked for the control action being handled

    def version(self) -> dict[str, Any]: ...
    def config(self) -> dict[str, Any]: ...
    def reload_status(self) -> dict[str, Any]: ...
    def tasks(self, *, query: TaskQuery = ...) -> dict[str, Any]: ...
    async def tasks_with_usage(self, query: TaskQuery = ...) -> dict[str, Any]: ...
    def table(self, query: TaskQuery = ...) -> bytes: ...
    async def table_with_usage(self, query: TaskQuery = ...) -> list[bytes]: ...
    def summary(self, query: TaskQuery = ...) -> dict[str, Any]: ...
    def counters(self) -> dict[str, Any]: ...
    async def series(self) -> Sequence[Row]: ...
    def set_overrides(self, key: str, values: Mapping[str, str | int]) -> dict[str, Any]: ...
    def start(self, task: str) -> dict[str, Any]: ...
    def stop(self, task: str) -> dict[str, Any]: ...
    def restart(self, task: str) -> dict[str, Any]: ...
    def signal(self, task: str, sig: str | int) -> dict[str, Any]: ...
    def reload(self) -> dict[str, Any]: ...
    def plan(self, text: str) -> dict[str, Any]: ...
    def shutdown(self) -> dict[str, Any]: ...
    def reset(self) -> dict[str, Any]: ...
    def upgrade(self) -> dict[str, Any]: ...
    def logs(self, task: str, n: int) -> dict[str, Any]: ...
    def follow_logs(self, task: str) -> Follower: ...
    def unfollow_logs(self, task: str, follower: Follower) -> None: ...


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    target: str  # path and query, as sent
    headers: Mapping[bytes, bytes] = field(default_factory=dict)  # names in lower case
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Pieces:
    """A large body as the pieces it is made of (the whole /status/tasks, /metrics: 7 and 14
    MB at 10,000 tasks), written to the client a batch at a time: joined whole, it would
    be copied several times on its way to the socket, and the heap those copies took
    would stay with the process."""

    parts: Sequence[bytes]
    size: int

    @classmethod
    def of(cls, parts: Sequence[bytes]) -> Pieces:
        return cls(parts, sum(map(len, parts)))

    def __bytes__(self) -> bytes:
        return b"".join(self.parts)


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes | Pieces
    content_type: str = JSON_TYPE
    headers: tuple[tuple[str, str], ...] = ()


# Sends a stream's events through the first argument until the client (the reader) leaves.
StreamEvents = Callable[[Callable[[bytes], Awaitable[None]], asyncio.StreamReader], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class EventStream:
    """The connection turns into a server-sent event stream: `events` sends them, or for
    /events (None) the service's feed of the task table."""

    events: StreamEvents | None = None


EVENT_STREAM = EventStream()


@dataclass(frozen=True, slots=True)
class Deferred:
    """A reply that takes a wait (the fleet's statuses come from etcd): Router.finish()."""

    reply: Callable[[], Awaitable[Reply]]


Outcome = Reply | EventStream | Deferred
NOT_FLEET = "not in fleet mode: this taskforce's configuration does not come from etcd"


def error(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status, json.dumps({"error": message}).encode() + b"\n", JSON_TYPE, headers)


@dataclass(frozen=True, slots=True)
class Call:
    """One request on its way to a handler: the query parsed, the task named in the path."""

    params: dict[str, list[str]]
    body: bytes
    task: str = ""
    authorization: bytes | None = None  # the request's Authorization header

    def one(self, name: str) -> str:
        values = self.params.get(name)
        if not values:
            raise ControlError(400, f"the {name!r} parameter is missing")
        if len(values) > 1:
            raise ControlError(400, f"give the {name!r} parameter only once")
        return values[0]

    def json(self, data: object) -> Reply:
        indent = None
        if "indent" in self.params:
            indent = whole_number(self.one("indent"), "indent", MAX_INDENT)
        separators = (",", ":") if indent is None else None
        body = json.dumps(data, indent=indent, separators=separators)
        return Reply(200, body.encode() + b"\n")


Handler = Callable[[Call], Outcome]


@dataclass(frozen=True, slots=True)
class Route:
    methods: tuple[str, ...]
    control: bool
    handler: Handler


class Router:
    """Answers the requests of one listener (its access rules) from one controller."""

    def __init__(
        self,
        controller: ControlSurface,
        access: Access,
        fleet: Fleet | None = None,
        origin: str = "the control API",
    ) -> None:
        self.access = access
        self.origin = origin  # this listener, as the log names it: "unix:/run/tf.sock"
        c = controller
        self.controller = c
        self.fleet = fleet
        self._routes: dict[str, Route] = {
            "/": Route(GET, False, lambda call: dashboard()),
            "/status/version": Route(GET, False, lambda call: call.json(c.version())),
            "/status/config": Route(GET, False, self._config),
            "/status/reload": Route(GET, False, lambda call: call.json(c.reload_status())),
            "/status/tasks": Route(GET, False, self._tasks),
            "/status/summary": Route(GET, False, self._summary),
            "/status/access": Route(GET, False, self._access),
            "/metrics": Route(GET, False, self._metrics),
            "/events": Route(GET, False, lambda call: EVENT_STREAM),
            "/status/fleet": Route(GET, False, self._fleet),
            "/events/fleet": Route(GET, False, self._fleet_events),
            "/manage/control": Route(GET_POST, True, lambda call: self._override("control", call)),
            "/manage/count": Route(GET_POST, True, lambda call: self._override("count", call)),
            "/manage/reload": Route(GET_POST, True, lambda call: call.json(c.reload())),
            "/manage/stop": Route(GET_POST, True, lambda call: call.json(c.shutdown())),
            "/manage/reset": Route(GET_POST, True, lambda call: call.json(c.reset())),
            "/manage/plan": Route(POST, True, self._plan),
            "/manage/upgrade": Route(POST, True, lambda call: call.json(c.upgrade())),
        }  # fmt: skip
        self._logs_route = Route(GET, True, self._logs)
        self._task_routes: dict[str, Route] = {
            "start": Route(POST, True, lambda call: call.json(c.start(call.task))),
            "stop": Route(POST, True, lambda call: call.json(c.stop(call.task))),
            "restart": Route(POST, True, lambda call: call.json(c.restart(call.task))),
            "signal": Route(
                POST, True, lambda call: call.json(c.signal(call.task, call.one("signal")))
            ),
        }

    def handle(self, request: Request) -> Outcome:
        """The answer to `request`; never raises (a bug becomes a 500, logged)."""
        try:
            return self._handle(request)
        except ControlError as exc:
            return error(exc.status, exc.message)
        except Exception:
            log.exception("the HTTP service failed on a %s request", request.method)
            return error(500, "internal error; the taskforce log has the details")

    def _handle(self, request: Request) -> Outcome:
        authorization = request.headers.get(b"authorization")
        denied = check_status(self.access, authorization)
        if denied is not None:
            return _refusal(denied)
        path, _, query = request.target.partition("?")
        route, task = self._find(path)
        if route is None:
            if path.startswith("/manage/") and not self.access.allow_control:
                return _refusal(check_control(self.access, authorization) or Denied(403, ""))
            return error(404, f"no such path: {path}")
        if route.control:
            denied = check_control(self.access, authorization)
            if denied is not None:
                return _refusal(denied)
            # Handlers run to completion here, one request at a time: the controller
            # logs this origin with what it does.
            self.controller.origin = self.origin
        if request.method not in route.methods:
            allowed = ", ".join(route.methods)
            return error(405, f"{path} takes {allowed}", (("Allow", allowed),))
        from urllib.parse import parse_qs  # at the first request: it imports ipaddress

        try:
            params = parse_qs(query, keep_blank_values=True, max_num_fields=MAX_FIELDS)
        except ValueError:
            return error(400, f"more than {MAX_FIELDS} query parameters")
        return route.handler(Call(params, request.body, task, authorization))

    def _find(self, path: str) -> tuple[Route | None, str]:
        from urllib.parse import unquote  # at the first request: it imports ipaddress

        route = self._routes.get(path)
        if route is not None:
            return route, ""
        prefix = "/manage/tasks/"
        if path.startswith(prefix):
            name, slash, action = path[len(prefix) :].partition("/")
            if slash and name and action in self._task_routes:
                return self._task_routes[action], unquote(name)
        if path.startswith(LOGS_PREFIX) and len(path) > len(LOGS_PREFIX):
            return self._logs_route, unquote(path[len(LOGS_PREFIX) :])
        if path.startswith(STATIC_PREFIX):
            name = path[len(STATIC_PREFIX) :]
            return Route(GET, False, lambda call: static_file(name)), ""
        return None, ""

    def _logs(self, call: Call) -> Outcome:
        """/logs/TASK?n=N: recent output as JSON; with follow=1, an event stream of it.

        A control path: task output often holds what status readers should not see.
        """
        n = DEFAULT_LOG_LINES
        if "n" in call.params:
            n = whole_number(call.one("n"), "n (a number of lines)", MAX_LOG_LINES)
        follow = call.params.get("follow", ["0"])[-1] not in ("0", "false", "no")
        answer = self.controller.logs(call.task, n)  # refuses unknown or uncaptured tasks
        if not follow:
            return call.json(answer)
        return EventStream(LogFollow(self.controller, call.task, n).run)

    async def finish(self, deferred: Deferred) -> Reply:
        """The reply of a Deferred outcome; never raises, as handle()."""
        try:
            return await deferred.reply()
        except ControlError as exc:
            return error(exc.status, exc.message)
        except Exception:
            log.exception("the HTTP service failed on a request")
            return error(500, "internal error; the taskforce log has the details")

    def _fleet(self, call: Call) -> Outcome:
        fleet = self.fleet
        if fleet is None:
            raise ControlError(404, NOT_FLEET)

        async def reply() -> Reply:
            return call.json(await fleet.snapshot())

        return Deferred(reply)

    def _fleet_events(self, call: Call) -> Outcome:
        if self.fleet is None:
            raise ControlError(404, NOT_FLEET)
        return EventStream(FleetFeed(self.fleet).stream)

    def _tasks(self, call: Call) -> Outcome:
        """/status/tasks, filtered by ?task=, ?state= and ?fields= (see api/query.py).

        Deferred, as /metrics: the usage figures are read in a worker thread while the
        event loop goes on (api/readings.py)."""
        query = parse_query(call.params)
        controller = self.controller

        async def reply() -> Reply:
            if "indent" in call.params:  # pretty-printed: made from the objects
                return call.json(await controller.tasks_with_usage(query))
            return Reply(200, Pieces.of([*await controller.table_with_usage(query), b"\n"]))

        return Deferred(reply)

    def _metrics(self, call: Call) -> Outcome:
        controller = self.controller

        async def reply() -> Reply:
            return Reply(200, Pieces.of(await exposition(controller)), METRICS)

        return Deferred(reply)

    def _summary(self, call: Call) -> Reply:
        """/status/summary: counts by state, of every task or those ?task= and ?state= pick."""
        return call.json(self.controller.summary(parse_query(call.params, fields=False)))

    def _access(self, call: Call) -> Reply:
        # With "fleet": true when /status/fleet works here (the dashboard's fleet view).
        fleet = {"fleet": True} if self.fleet is not None else {}
        denied = check_control(self.access, call.authorization)
        if denied is None:
            return call.json({"control": True, **fleet})
        why = {"status": denied.status, "why": denied.message}
        return call.json({"control": False, **why, **fleet})

    def _config(self, call: Call) -> Reply:
        # The document itself, as the original answers: it holds secrets (defines, argv).
        denied = check_secrets(self.access, call.authorization)
        if denied is not None:
            return _refusal(denied)
        return call.json(self.controller.config())

    def _override(self, key: str, call: Call) -> Reply:
        params = dict(call.params)
        if call.body:
            from urllib.parse import parse_qs

            try:
                form = parse_qs(call.body.decode(), keep_blank_values=True)
            except (UnicodeDecodeError, ValueError):
                raise ControlError(400, "the body must be TASK=VALUE pairs, form-encoded") from None
            for name, values in form.items():
                params[name] = [*params.get(name, ()), *values]
        merged = Call(params, b"")
        assignments: dict[str, str | int] = {task: merged.one(task) for task in params}
        # Every parameter names a task here, so there is no ?indent.
        return Call({}, b"").json(self.controller.set_overrides(key, assignments))

    def _plan(self, call: Call) -> Reply:
        if not call.body:
            raise ControlError(400, "send the configuration to plan as the request body")
        try:
            text = call.body.decode()
        except UnicodeDecodeError:
            raise ControlError(400, "the configuration must be UTF-8 text") from None
        return call.json(self.controller.plan(text))


def _refusal(denied: Denied) -> Reply:
    headers = (CHALLENGE,) if denied.status == 401 else ()
    return error(denied.status, denied.message, headers)


PLACEHOLDER = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>taskforce</title></head>
<body><h1>taskforce</h1>
<p>The dashboard is not installed. The service answers
<a href="/status/tasks">/status/tasks</a>, <a href="/status/config">/status/config</a>,
<a href="/status/version">/status/version</a>, <a href="/metrics">/metrics</a> and
<a href="/events">/events</a>.</p></body></html>
"""
# The page may hold control buttons: never inside another site's frame (clickjacking).
# Its script and styles come from /static only, never inline: should task-provided text
# ever reach the page as markup, the browser still runs none of it.
PAGE_HEADERS = (
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("X-Frame-Options", "DENY"),
)
STATIC_HEADERS = (("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"),)


@functools.cache
def _page() -> bytes:
    try:
        with open(DASHBOARD, "rb") as f:
            return f.read()
    except OSError:
        return PLACEHOLDER


def dashboard() -> Reply:
    """The dashboard page: read once, then served from memory."""
    return Reply(200, _page(), HTML_TYPE, PAGE_HEADERS)


@functools.cache
def _static_names() -> frozenset[str]:
    # Listed once: the cache below then holds only files that exist, whatever is asked.
    try:
        return frozenset(n for n in os.listdir(STATIC) if STATIC_NAME.fullmatch(n))
    except OSError:
        return frozenset()


@functools.cache
def _static(name: str) -> bytes | None:
    try:
        with open(os.path.join(STATIC, name), "rb") as f:
            return f.read()
    except OSError:
        return None


def static_file(name: str) -> Reply:
    """One of the dashboard's scripts or style sheets: read once, then served from memory."""
    match = STATIC_NAME.fullmatch(name)
    body = _static(name) if match and name in _static_names() else None
    if match is None or body is None:
        return error(404, f"no such path: {STATIC_PREFIX}{name}")
    return Reply(200, body, STATIC_TYPES[match.group(1)], STATIC_HEADERS)
