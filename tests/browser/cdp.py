"""Headless Chromium driven through the DevTools protocol over a pipe: no extra packages.

`chromium --remote-debugging-pipe` reads protocol messages from its fd 3 and writes its
own to fd 4, each a JSON document ended by a NUL byte. That is all a test needs: no
websocket client, no node, no browser download (Debian's chromium, see setup.sh).

Every wait has a deadline; the browser runs in its own session, so that close() (or a
failed test) can kill it with every helper process it started.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEADLINE = 20.0
# Required on this machine (root, no GPU, no network but loopback), and quiet otherwise.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
)


class BrowserError(Exception):
    """The browser answered an error, went away, or did not answer in time."""


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


class Browser:
    def __init__(self, executable: str, profile: Path, log: Path) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # Out of the way of 3 and 4, which the child is about to take.
        child_in = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD_CLOEXEC, 10)
        child_out = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_browser_r)
        os.close(from_browser_w)

        def pipe_fds() -> None:  # in the child, before exec: dup2 leaves 3 and 4 inheritable
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        with open(log, "ab") as output:
            self.proc = subprocess.Popen(
                [executable, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                preexec_fn=pipe_fds,
                close_fds=False,  # Python's own descriptors are close-on-exec anyway
                start_new_session=True,
            )
        os.close(child_in)
        os.close(child_out)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    # ----- the protocol -------------------------------------------------------------------

    def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._to_browser, data) :]
        return self._next_id

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float = DEADLINE,
    ) -> dict[str, Any]:
        """Send a command and return its result; events read meanwhile go to `events`."""
        wanted = self.send(method, params, session)
        end = time.monotonic() + timeout
        while True:
            message = self._receive(end, f"the answer to {method}")
            if message.get("id") == wanted:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            if "method" in message:
                self.events.append(message)

    def wait_event(
        self, method: str, match: Callable[[dict[str, Any]], bool] = lambda e: True,
        timeout: float = DEADLINE,
    ) -> dict[str, Any]:  # fmt: skip
        """The first event `method` (already read, or to come) that `match`es; removed."""
        end = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event["method"] == method and match(event):
                    self.events.remove(event)
                    return event
            message = self._receive(end, f"the event {method}")
            if "method" in message:
                self.events.append(message)

    def _receive(self, end: float, what: str) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = end - time.monotonic()
            if left <= 0:
                raise BrowserError(f"timed out waiting for {what}")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise BrowserError(f"the browser went away while waiting for {what}")
                self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        message: dict[str, Any] = json.loads(raw)
        return message

    # ----- pages --------------------------------------------------------------------------

    def new_page(self, width: int = 1280, height: int = 800) -> Page:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})
        page = Page(self, session["sessionId"])
        for domain in ("Page", "Runtime", "Log"):
            page.call(f"{domain}.enable")
        page.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        return page

    def close(self) -> None:
        """Ask the browser to quit; kill it (and its helpers) if it does not at once."""
        with contextlib.suppress(BrowserError, OSError):
            if self.proc.poll() is None:
                self.call("Browser.close", timeout=5)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # its renderers, zygotes and the rest
        self.proc.wait(DEADLINE)
        for fd in (self._to_browser, self._from_browser):
            with contextlib.suppress(OSError):
                os.close(fd)


class Page:
    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.call(method, params, self.session)

    def goto(self, url: str) -> None:
        self.call("Page.navigate", {"url": url})
        self.browser.wait_event("Page.loadEventFired", lambda e: e.get("sessionId") == self.session)

    def evaluate(self, expression: str, timeout: float = DEADLINE) -> Any:
        """The value of a JavaScript expression (a promise is awaited)."""
        result = self.browser.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            self.session,
            timeout=timeout + 5,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"{expression!r} failed: {text}")
        return result["result"].get("value")

    def wait_for(self, condition: str, what: str, timeout: float = DEADLINE) -> Any:
        """Wait, in the page, until the expression `condition` is truthy; its value.

        The page checks it on every animation frame and DOM change, so the wait ends as
        soon as it can, and fails after `timeout` seconds with `what` in the message.
        """
        script = f"""
            new Promise((resolve, reject) => {{
                const end = performance.now() + {timeout * 1000};
                const check = () => {{
                    let value;
                    try {{ value = ({condition}); }} catch (e) {{ value = undefined; }}
                    if (value) {{ observer.disconnect(); resolve(value); return true; }}
                    if (performance.now() > end) {{
                        observer.disconnect();
                        reject(new Error({json.dumps("timed out waiting for " + what)}));
                        return true;
                    }}
                    return false;
                }};
                const observer = new MutationObserver(check);
                observer.observe(document, {{subtree: true, childList: true,
                                             characterData: true, attributes: true}});
                const tick = () => {{ if (!check()) setTimeout(tick, 50); }};
                tick();
            }})
        """
        return self.evaluate(script, timeout)

    def click(self, selector: str, timeout: float = DEADLINE) -> None:
        """Click the middle of the element, as a mouse would, once it is there to click.

        The pointer is aimed, then pressed a moment later (later still on a busy machine):
        if the page moved meanwhile, a mouse would press whatever is there now. So the
        element must be in the same place for two frames and be what is under its middle,
        and the press is checked: one that lands on anything else is stopped before the page
        sees it, and the click is tried again, until `timeout`.
        """
        end = time.monotonic() + timeout
        while True:
            aim = self.evaluate(_AIM % json.dumps(selector))
            if aim and aim["ready"]:
                for kind in ("mousePressed", "mouseReleased"):
                    self.call(
                        "Input.dispatchMouseEvent",
                        {"type": kind, "x": aim["x"], "y": aim["y"], "button": "left",
                         "clickCount": 1},
                    )  # fmt: skip
                missed = self.evaluate(_DISARM)
                if not missed:
                    return
                why = f"the press landed elsewhere, the page having moved: {missed}"
            else:
                why = f"it is not there to click: {aim}"
            if time.monotonic() > end:
                raise BrowserError(f"could not click {selector}: {why}")

    def dark(self, on: bool) -> None:
        features = [{"name": "prefers-color-scheme", "value": "dark" if on else "light"}]
        self.call("Emulation.setEmulatedMedia", {"features": features})

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))

    def problems(self) -> list[str]:
        """Errors the page reported: exceptions, console errors, refused resources (CSP)."""
        found = []
        for event in self.browser.events:
            if event.get("sessionId") != self.session:
                continue
            params = event.get("params", {})
            if event["method"] == "Runtime.exceptionThrown":
                found.append(str(params["exceptionDetails"].get("text")))
            elif event["method"] == "Runtime.consoleAPICalled" and params.get("type") == "error":
                found.append(" ".join(str(a.get("value")) for a in params.get("args", [])))
            elif event["method"] == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(str(params["entry"].get("text")))
        return found


# Where to click the element `%s` (a JSON string): its middle, if it has stood still for two
# frames and is what is under that point; then a guard stops the mouse's events that land
# elsewhere until _DISARM, which says what they hit.
_AIM = """new Promise((resolve) => {
    const node = document.querySelector(%s);
    if (!node) return resolve(null);
    node.scrollIntoView({block: "center"});
    const place = () => {
        const r = node.getBoundingClientRect();
        return {x: r.left + r.width / 2, y: r.top + r.height / 2, w: r.width, h: r.height};
    };
    // A frame, or 100 ms where frames are not drawn (a page in the background).
    const frame = (then) => {
        let done = false;
        const once = () => { if (!done) { done = true; then(); } };
        requestAnimationFrame(once);
        setTimeout(once, 100);
    };
    const before = place();
    frame(() => frame(() => {
        const now = place();
        const still = ["x", "y", "w", "h"].every((k) => now[k] === before[k]);
        const hit = document.elementFromPoint(now.x, now.y);
        const ready = still && node.contains(hit);
        if (ready) {
            const missed = [];
            const guard = (event) => {
                if (node.contains(event.target)) return;
                event.preventDefault();
                event.stopImmediatePropagation();
                const t = event.target;
                missed.push(`${event.type} on ${t.tagName} ${t.className || ""}`.trim());
            };
            const kinds = ["mousedown", "mouseup", "click"];
            for (const kind of kinds) window.addEventListener(kind, guard, true);
            window.__clickGuard = () => {
                for (const kind of kinds) window.removeEventListener(kind, guard, true);
                return missed;
            };
        }
        resolve({x: now.x, y: now.y, still, hit: hit && hit.tagName, ready});
    }));
})"""
_DISARM = (
    "(() => { const disarm = window.__clickGuard; delete window.__clickGuard; return disarm(); })()"
)
