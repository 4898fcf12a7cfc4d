"""The dashboard's side of the service: its files under /static, the page's security
headers, /status/access, and checks on the shipped page itself (its files exist, its script
never writes markup)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, cast

import pytest

from taskforce.api import routes
from taskforce.api.auth import Access
from taskforce.api.routes import Reply, Request, Router

STATIC = Path(routes.STATIC)


def handle(path: str, access: Access | None = None, token: str | None = None) -> Reply:
    headers = {b"authorization": f"Bearer {token}".encode()} if token else {}
    # These paths never reach the controller.
    router = Router(cast(Any, None), access or Access(allow_control=True))
    outcome = router.handle(Request("GET", path, headers))
    assert isinstance(outcome, Reply)
    return outcome


def test_the_static_files_are_served_with_their_types() -> None:
    script = handle("/static/dashboard.js")
    assert script.status == 200 and script.content_type == "text/javascript; charset=utf-8"
    assert script.body == (STATIC / "dashboard.js").read_bytes()
    style = handle("/static/dashboard.css")
    assert style.status == 200 and style.content_type == "text/css; charset=utf-8"


@pytest.mark.parametrize(
    "name",
    ["nope.js", "dashboard.html", "../routes.py", "..%2Froutes.py", "Dashboard.js", ".js", ""],
)
def test_nothing_else_is_served(name: str) -> None:
    reply = handle(f"/static/{name}")
    assert reply.status == 404
    assert json.loads(bytes(reply.body)) == {"error": f"no such path: /static/{name}"}


def test_asking_for_many_names_does_not_grow_the_cache() -> None:
    before = routes._static.cache_info().currsize
    for n in range(50):
        assert handle(f"/static/missing{n}.js").status == 404
    assert routes._static.cache_info().currsize == before


def test_a_private_listener_guards_the_static_files_too() -> None:
    private = Access(token=b"s3cret", private=True)
    assert handle("/static/dashboard.js", private).status == 401
    assert handle("/static/dashboard.js", private, token="s3cret").status == 200


def test_the_page_may_run_only_its_own_script() -> None:
    headers = dict(handle("/").headers)
    policy = headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy and headers["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize(
    ("access", "token", "expected"),
    [
        (Access(allow_control=True), None, {"control": True}),
        (Access(allow_control=True, token=b"s3cret"), "s3cret", {"control": True}),
        (
            Access(allow_control=True, token=b"s3cret"),
            None,
            {
                "control": False,
                "status": 401,
                "why": "this path needs an access token: send 'Authorization: Bearer TOKEN'",
            },
        ),
        (
            Access(allow_control=True, token=b"s3cret"),
            "wrong",
            {"control": False, "status": 401, "why": "the access token is not valid"},
        ),
        (
            Access(allow_control=False),
            None,
            {
                "control": False,
                "status": 403,
                "why": "control is not allowed on this listener (see allow_control)",
            },
        ),
    ],
)
def test_status_access(access: Access, token: str | None, expected: dict[str, Any]) -> None:
    reply = handle("/status/access", access, token)
    assert reply.status == 200 and json.loads(bytes(reply.body)) == expected


# ----- the shipped page -------------------------------------------------------------------


def test_the_page_loads_only_files_that_exist_here() -> None:
    page = (STATIC / "dashboard.html").read_text()
    loaded = re.findall(r'<(?:script|link)[^>]* (?:src|href)="([^"]+)"', page)
    local = [url for url in loaded if not url.startswith("data:")]
    assert sorted(local) == ["/static/dashboard.css", "/static/dashboard.js"]
    assert not re.search(r'(?:src|href)="(?:https?:)?//', page)  # nothing from elsewhere
    for url in local:
        assert handle(url).status == 200, url
    assert "<script>" not in page and " style=" not in page  # nothing inline: see the CSP


def test_the_script_never_writes_markup() -> None:
    # Task names and details are data: they may only reach the page as text.
    script = (STATIC / "dashboard.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink


def test_the_script_parses() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    result = subprocess.run(
        [node, "--check", str(STATIC / "dashboard.js")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
