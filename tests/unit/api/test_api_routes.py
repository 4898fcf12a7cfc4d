"""The route table against a fake controller: paths, methods, access, parameters, errors."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from support.fakes import FakeController
from taskforce.api import routes
from taskforce.api.auth import Access
from taskforce.api.routes import EVENT_STREAM, Deferred, Reply, Request, Router

CONTROL = Access(allow_control=True)


@pytest.fixture
def fake() -> FakeController:
    return FakeController()


def handle(
    fake: FakeController,
    method: str,
    target: str,
    access: Access = CONTROL,
    body: bytes = b"",
    token: str | None = None,
) -> Reply:
    headers = {b"authorization": f"Bearer {token}".encode()} if token else {}
    router = Router(fake, access)
    outcome = router.handle(Request(method, target, headers, body))
    if isinstance(outcome, Deferred):  # the status table and /metrics: read in a thread
        outcome = asyncio.run(router.finish(outcome))
    assert isinstance(outcome, Reply)
    return outcome


def data(reply: Reply) -> Any:
    assert reply.content_type == routes.JSON_TYPE
    return json.loads(bytes(reply.body))


# --- status -----------------------------------------------------------------------------


def test_status_paths(fake: FakeController) -> None:
    assert data(handle(fake, "GET", "/status/version")) == {"taskforce": "test"}
    assert data(handle(fake, "GET", "/status/config")) == fake.config()
    assert data(handle(fake, "GET", "/status/reload")) == {"file": "/etc/taskforce.conf"}
    reply = handle(fake, "GET", "/status/tasks")
    assert (
        reply.status == 200 and bytes(reply.body) == b'{"web":{"running":1},"db":{"running":1}}\n'
    )
    metrics = handle(fake, "GET", "/metrics")
    assert metrics.status == 200 and b"\ntaskforce_reloads_total 3\n" in bytes(metrics.body)
    assert metrics.content_type == "text/plain; version=0.0.4; charset=utf-8"
    stream = Router(fake, Access()).handle(Request("GET", "/events"))
    assert stream is EVENT_STREAM


@pytest.mark.parametrize(
    ("access", "token", "status"),
    [
        (Access(), None, 401),  # status only, no token: nobody here may control
        (Access(allow_control=True), None, 200),  # the owner's unix socket
        (Access(allow_control=True, token=b"s3cret"), None, 401),
        (Access(allow_control=True, token=b"s3cret"), "wrong", 401),
        (Access(allow_control=True, token=b"s3cret"), "s3cret", 200),
        (Access(token=b"s3cret"), "s3cret", 200),  # the token holder, control off
    ],
)
def test_the_configuration_needs_a_caller_that_may_control(
    fake: FakeController, access: Access, token: str | None, status: int
) -> None:
    reply = handle(fake, "GET", "/status/config", access, token=token)
    assert reply.status == status
    if status == 401:
        assert "error" in data(reply) and "password" not in bytes(reply.body).decode()
        assert ("WWW-Authenticate", 'Bearer realm="taskforce"') in reply.headers
    # The other status paths stay open.
    assert handle(fake, "GET", "/status/reload", access, token=token).status == 200


def test_indent_pretty_prints(fake: FakeController) -> None:
    reply = handle(fake, "GET", "/status/version?indent=2")
    assert reply.body == b'{\n  "taskforce": "test"\n}\n'
    for bad in ("x", "-1", "17", ""):
        reply = handle(fake, "GET", f"/status/version?indent={bad}")
        assert reply.status == 400 and "indent" in data(reply)["error"]


def test_the_dashboard_page(fake: FakeController, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(routes, "DASHBOARD", "/nonexistent/dashboard.html")
    routes._page.cache_clear()
    try:
        reply = handle(fake, "GET", "/")
        assert reply.status == 200 and reply.content_type == "text/html; charset=utf-8"
        assert b"dashboard is not installed" in bytes(reply.body)
        assert ("X-Frame-Options", "DENY") in reply.headers
    finally:
        routes._page.cache_clear()


def test_the_dashboard_file_is_served_once_read(
    fake: FakeController, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    page = tmp_path / "dashboard.html"
    page.write_text("<p>hello</p>")
    monkeypatch.setattr(routes, "DASHBOARD", str(page))
    routes._page.cache_clear()
    try:
        assert handle(fake, "GET", "/").body == b"<p>hello</p>"
        page.unlink()
        assert handle(fake, "GET", "/").body == b"<p>hello</p>"  # cached
    finally:
        routes._page.cache_clear()


# --- errors -----------------------------------------------------------------------------


def test_unknown_paths_get_404(fake: FakeController) -> None:
    for path in ("/nope", "/status", "/status/tasks/", "/manage/nope", "/manage/tasks/web/x"):
        reply = handle(fake, "GET", path)
        assert reply.status == 404, path
        assert data(reply) == {"error": f"no such path: {path}"}


def test_wrong_methods_get_405_with_allow(fake: FakeController) -> None:
    reply = handle(fake, "POST", "/status/tasks")
    assert (reply.status, reply.headers) == (405, (("Allow", "GET"),))
    reply = handle(fake, "GET", "/manage/tasks/web/restart")
    assert (reply.status, reply.headers) == (405, (("Allow", "POST"),))
    assert data(reply) == {"error": "/manage/tasks/web/restart takes POST"}
    reply = handle(fake, "DELETE", "/manage/reload")
    assert (reply.status, reply.headers) == (405, (("Allow", "GET, POST"),))
    assert handle(fake, "GET", "/manage/plan").status == 405
    assert fake.calls == []


def test_a_bug_is_a_500_that_is_logged(
    fake: FakeController, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("oops")

    monkeypatch.setattr(fake, "version", broken)
    reply = handle(fake, "GET", "/status/version")
    assert reply.status == 500 and "internal error" in data(reply)["error"]
    assert "RuntimeError: oops" in caplog.text


# --- access -----------------------------------------------------------------------------


def test_control_paths_need_allow_control(fake: FakeController) -> None:
    status_only = Access(allow_control=False)
    for method, path in [
        ("GET", "/manage/reload"),
        ("POST", "/manage/stop"),
        ("POST", "/manage/tasks/web/restart"),
        ("GET", "/manage/tasks/web/restart"),
        ("GET", "/manage/anything"),
    ]:
        reply = handle(fake, method, path, status_only)
        assert reply.status == 403, path
        assert "control is not allowed" in data(reply)["error"]
    assert handle(fake, "GET", "/status/tasks", status_only).status == 200
    assert fake.calls == []


def test_tokens(fake: FakeController) -> None:
    guarded = Access(allow_control=True, token=b"s3cret")
    assert handle(fake, "GET", "/status/tasks", guarded).status == 200
    reply = handle(fake, "POST", "/manage/reload", guarded)
    assert reply.status == 401
    assert reply.headers == (("WWW-Authenticate", 'Bearer realm="taskforce"'),)
    assert handle(fake, "POST", "/manage/reload", guarded, token="wrong").status == 401
    assert fake.calls == []
    assert handle(fake, "POST", "/manage/reload", guarded, token="s3cret").status == 200
    assert fake.calls == [("reload",)]


def test_private_listeners_guard_everything(fake: FakeController) -> None:
    private = Access(token=b"s3cret", private=True)
    for path in ("/status/tasks", "/metrics", "/events", "/", "/nope", "/manage/reload"):
        assert handle(fake, "GET", path, private).status == 401, path
    assert handle(fake, "GET", "/status/tasks", private, token="s3cret").status == 200
    assert handle(fake, "GET", "/manage/reload", private, token="s3cret").status == 403


# --- control ----------------------------------------------------------------------------


def test_control_and_count_overrides(fake: FakeController) -> None:
    reply = handle(fake, "GET", "/manage/control?web=off&db=wait")
    assert data(reply) == {
        "web": {"task": "web", "control": "off"},
        "db": {"task": "db", "control": "wait"},
    }
    assert handle(fake, "POST", "/manage/count?web=3").status == 200
    reply = handle(fake, "POST", "/manage/count", body=b"db=2&web=0")
    assert reply.status == 200
    assert fake.calls == [
        ("override", "control", {"web": "off", "db": "wait"}),
        ("override", "count", {"web": "3"}),
        ("override", "count", {"db": "2", "web": "0"}),
    ]


def test_bad_overrides(fake: FakeController) -> None:
    assert handle(fake, "GET", "/manage/control?nope=off").status == 404
    assert handle(fake, "GET", "/manage/count?web=-1").status == 400
    assert handle(fake, "GET", "/manage/count?web=x").status == 400
    assert handle(fake, "GET", "/manage/count").status == 400
    reply = handle(fake, "GET", "/manage/count?web=1&web=2")
    assert data(reply) == {"error": "give the 'web' parameter only once"}
    reply = handle(fake, "POST", "/manage/count", body=b"\xff")
    assert reply.status == 400
    assert fake.calls == []


def test_task_actions(fake: FakeController) -> None:
    for action in ("start", "stop", "restart"):
        reply = handle(fake, "POST", f"/manage/tasks/web/{action}")
        assert data(reply) == {"task": "web", "action": action}
    assert handle(fake, "POST", "/manage/tasks/web/signal?signal=HUP").status == 200
    assert handle(fake, "POST", "/manage/tasks/nope/restart").status == 404
    assert handle(fake, "POST", "/manage/tasks/web/signal").status == 400
    assert handle(fake, "POST", "/manage/tasks/web/signal?signal=NOPE").status == 400
    assert handle(fake, "POST", "/manage/tasks/we%62/restart").status == 200
    assert fake.calls == [
        ("start", "web"),
        ("stop", "web"),
        ("restart", "web"),
        ("signal", "web", 1),
        ("restart", "web"),
    ]


def test_legion_wide_controls(fake: FakeController) -> None:
    for path, answer in [
        ("/manage/reload", {"reloaded": True}),
        ("/manage/stop", {"stopping": True}),
        ("/manage/reset", {"resetting": True}),
    ]:
        assert data(handle(fake, "GET", path)) == answer
        assert data(handle(fake, "POST", path)) == answer
    assert [call[0] for call in fake.calls] == ["reload"] * 2 + ["shutdown"] * 2 + ["reset"] * 2


def test_plan(fake: FakeController) -> None:
    reply = handle(fake, "POST", "/manage/plan", body=b"tasks: {}")
    assert data(reply) == {"changes": [], "problems": []}
    assert fake.calls == [("plan", "tasks: {}")]
    assert handle(fake, "POST", "/manage/plan").status == 400
    assert handle(fake, "POST", "/manage/plan", body=b"\xff\xfe").status == 400
    reply = handle(fake, "POST", "/manage/plan", body=b"bad")
    assert (reply.status, data(reply)) == (422, {"error": "t.conf:1:1: bad"})
