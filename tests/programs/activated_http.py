#!/usr/bin/env python3
"""A small HTTP server for the tests, socket-activated the systemd way.

With LISTEN_FDS set (and LISTEN_PID naming this process) it serves the listening socket
on descriptor 3, as a program started by taskforce's `sockets:` (or systemd) does;
otherwise it binds HOST:PORT from its argument itself, as a program without held sockets
does. Every GET is answered 200 with this process's pid.

SIGTERM: stop accepting, finish the request under way, exit 0. Connections not yet
accepted stay in the socket's backlog: with a held socket another process accepts them;
with its own socket they are refused (closed with the socket).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

stopping = False


def stop(signum: int, frame: object) -> None:
    global stopping
    stopping = True


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"{os.getpid()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: hundreds of requests a second


def activated() -> socket.socket | None:
    """The socket passed by socket activation (sd_listen_fds), if any."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    if int(os.environ.get("LISTEN_FDS", "0")) < 1:
        return None
    return socket.socket(fileno=3)


def main() -> None:
    signal.signal(signal.SIGTERM, stop)
    sock = activated()
    if sock is None:
        host, _, port = sys.argv[1].rpartition(":")
        server = HTTPServer((host, int(port)), Handler)
    else:
        server = HTTPServer(sock.getsockname(), Handler, bind_and_activate=False)
        server.socket.close()
        server.socket = sock
    # Shared with other processes: never block in accept() when another took the
    # connection (the flag is the socket's, not ours, and harmless to the others).
    server.socket.setblocking(False)
    server.timeout = 0.05
    while not stopping:
        server.handle_request()
    server.socket.close()


if __name__ == "__main__":
    main()
