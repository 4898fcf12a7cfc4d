"""An HTTP connection to taskforce's API over a unix socket, loopback TCP or TLS."""

from __future__ import annotations

import http.client
import socket
import ssl
from urllib.parse import urlsplit

from support.wait import DEADLINE


def unix_connection(address: str, timeout: float | None = DEADLINE) -> socket.socket:
    """A socket connected to `unix:PATH`, every wait on it bounded by `timeout`."""
    assert address.startswith("unix:"), address
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.settimeout(timeout)
        sock.connect(address[len("unix:") :])
    except BaseException:
        sock.close()
        raise
    return sock


class Client(http.client.HTTPConnection):
    """http.client for `unix:PATH`, `http://...` or `https://...` (with `tls`); every wait
    on the socket is bounded by `timeout`."""

    def __init__(
        self, address: str, tls: ssl.SSLContext | None = None, timeout: float = DEADLINE
    ) -> None:
        url = urlsplit(address)
        super().__init__(url.hostname or "localhost", url.port, timeout=timeout)
        self.address = address
        self.tls = tls

    def connect(self) -> None:
        if self.address.startswith("unix:"):
            self.sock = unix_connection(self.address, self.timeout)
            return
        super().connect()
        if self.tls is not None:
            self.sock = self.tls.wrap_socket(self.sock, server_hostname=self.host)
