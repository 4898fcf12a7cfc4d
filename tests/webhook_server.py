"""A webhook receiver for the notification tests: a threaded HTTP server on 127.0.0.1.

It records every request (path, headers, JSON body) and answers with the next status of
`statuses` (the last one repeats), or, while `hang` is set, not at all until released.
Used as a context manager: on the way out the hung requests are released, the server is
shut down and its threads are joined.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEADLINE = 20.0


class Received:
    def __init__(self, path: str, headers: dict[str, str], body: Any) -> None:
        self.path = path
        self.headers = headers  # names in lower case
        self.body = body


class WebhookServer:
    def __init__(self, statuses: tuple[int, ...] = (200,), hang: bool = False) -> None:
        self.statuses = list(statuses)
        self.hang = hang
        self.released = threading.Event()
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                raw = self.rfile.read(length)
                with server.changed:
                    server.received.append(
                        Received(
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            json.loads(raw) if raw else None,
                        )
                    )
                    # The last status repeats.
                    statuses = server.statuses
                    status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
                    server.changed.notify_all()
                if server.hang:  # until the server closes (the bound: a leak's limit)
                    server.released.wait(10 * DEADLINE)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the tests look at `received`

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a hung request's client has gone: writing to it fails, as it should

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,))

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    def wait(
        self,
        condition: Callable[[list[Received]], bool],
        what: str,
        timeout: float = DEADLINE,
    ) -> list[Received]:
        """Block until `condition(received)` holds; fail after `timeout` seconds."""
        end = time.monotonic() + timeout
        with self.changed:
            while not condition(self.received):
                left = end - time.monotonic()
                assert left > 0, f"timed out waiting for {what}: {[r.body for r in self.received]}"
                self.changed.wait(left)
            return list(self.received)

    def events(self) -> list[str]:
        with self.lock:
            return [r.body["event"] for r in self.received]

    def __enter__(self) -> WebhookServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()  # joins the request threads
        self.thread.join(DEADLINE)
