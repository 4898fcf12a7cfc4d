"""A small HTTP client for the taskforce control API: unix socket, TCP or TLS.

Built on the standard library's ``http.client`` so that the client commands cost no
dependency and import nothing of the daemon (no asyncio, no yaml). Every failure becomes
a :class:`ClientError` carrying one sentence for the user and the exit code to use.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from taskforce import __version__

# Exit codes of the client commands (0 is success; 2 is also what argparse uses).
EXIT_FAILED = 1  # the server answered, but refused or failed the request
EXIT_USAGE = 2  # bad options: an unusable --server, an unreadable --cafile...
EXIT_UNREACHABLE = 4  # no answer from the server at all

DEFAULT_TIMEOUT = 10.0
# A request's parameters: a mapping, or pairs where a name repeats (?task=a&task=b).
Query = dict[str, str] | list[tuple[str, str]]
_SNIPPET = 120  # characters of a non-JSON body quoted in an error message


class ClientError(Exception):
    exit_code = EXIT_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(ClientError):
    exit_code = EXIT_USAGE


class UnreachableError(ClientError):
    exit_code = EXIT_UNREACHABLE


class RequestError(ClientError):
    """The server answered with an error status, or with something that is not JSON."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def default_socket(pidfile: str | None) -> str:
    """Where a taskforce with this pidfile (or none) serves its API by default.

    The one place the client asks; the server's own rule answers, so the two cannot drift
    (:mod:`taskforce.api.paths` imports only :mod:`os`, cheap enough for the client).
    """
    from taskforce.api.paths import default_socket_path

    return default_socket_path(pidfile)


@dataclass(frozen=True)
class Endpoint:
    scheme: str  # "unix", "http" or "https"
    address: str  # the socket path, or the host name
    port: int = 0
    prefix: str = ""  # a path the API is mounted under (behind a reverse proxy)
    # How the client came to this server (--server, a pidfile...), for its messages.
    origin: str = field(default="", compare=False)
    # Whether the user named it (--server, $TASKFORCE_SERVER, -p) rather than a default.
    named: bool = field(default=False, compare=False)

    def __str__(self) -> str:
        if self.scheme == "unix":
            return self.address
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.scheme}://{host}:{self.port}{self.prefix}"

    @property
    def described(self) -> str:
        """The address, and how it was chosen."""
        return f"{self} ({self.origin})" if self.origin else str(self)


def parse_server(text: str) -> Endpoint:
    """`--server`: a socket path (anything with a '/'), or an http(s)://host:port URL."""
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"--server {text!r}: expected http://HOST:PORT or https://HOST:PORT")
        try:
            port = parts.port
        except ValueError:
            raise UsageError(f"--server {text!r}: the port is not a number") from None
        if parts.query or parts.fragment:
            raise UsageError(f"--server {text!r}: a query or fragment makes no sense here")
        default_port = 443 if parts.scheme == "https" else 80
        return Endpoint(parts.scheme, parts.hostname, port or default_port, parts.path.rstrip("/"))
    if "/" in text or text.startswith("~"):
        return Endpoint("unix", os.path.expanduser(text))
    # A bare word is ambiguous (a socket in the current directory, or host:port?): ask.
    raise UsageError(
        f"--server {text!r}: give a socket path containing '/' (./{text}) "
        "or a URL (http://HOST:PORT, https://HOST:PORT)"
    )


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket: http.client with the TCP connect swapped out."""

    def __init__(self, path: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        # The Host header needs some name; the server does not look at it.
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class Client:
    def __init__(
        self,
        endpoint: Endpoint,
        *,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        cafile: str | None = None,
        insecure: bool = False,
    ) -> None:
        self.endpoint = endpoint
        self.token = token
        self.timeout = timeout
        self.cafile = cafile
        self.insecure = insecure

    def get(self, path: str, query: Query | None = None) -> Any:
        return self.request("GET", path, query)

    def post(self, path: str, query: dict[str, str] | None = None, body: bytes = b"") -> Any:
        return self.request("POST", path, query, body)

    def request(self, method: str, path: str, query: Query | None = None, body: bytes = b"") -> Any:
        """Send one request; return the decoded JSON answer or raise ClientError."""
        target = self.endpoint.prefix + path + (f"?{urlencode(query)}" if query else "")
        headers = {"Accept": "application/json", "User-Agent": f"taskforce/{__version__}"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if body:
            headers["Content-Type"] = "text/plain; charset=utf-8"
        conn = self._connection()
        try:
            conn.request(method, target, body=body if method == "POST" else None, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except http.client.HTTPException as exc:
            # Something answered, but not in HTTP (or hung up): a failure, not absence.
            problem = _http_problem(exc)
            raise RequestError(
                f"taskforce at {self.endpoint.described} sent no valid HTTP answer ({problem})"
            ) from None
        except OSError as exc:
            raise UnreachableError(
                f"cannot reach taskforce at {self.endpoint.described}: {self._why(exc)}"
            ) from None
        finally:
            conn.close()
        return self._decode(response.status, response.reason, data)

    def _connection(self) -> http.client.HTTPConnection:
        ep = self.endpoint
        if ep.scheme == "unix":
            return UnixHTTPConnection(ep.address, timeout=self.timeout)
        if ep.scheme == "http":
            return http.client.HTTPConnection(ep.address, ep.port, timeout=self.timeout)
        return http.client.HTTPSConnection(
            ep.address, ep.port, timeout=self.timeout, context=self._tls_context()
        )

    def _tls_context(self) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(cafile=self.cafile)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise UsageError(f"cannot use --cafile {self.cafile}: {reason}") from None
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _why(self, exc: OSError) -> str:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return (
                f"its TLS certificate is not trusted ({exc.verify_message}); "
                "use --cafile, or --insecure"
            )
        if isinstance(exc, ssl.SSLError):
            return f"TLS failed ({exc.reason or exc})"
        if isinstance(exc, TimeoutError):
            return f"no answer within {self.timeout:g}s"
        if isinstance(exc, FileNotFoundError):
            return "no such socket (is it running?)"
        if isinstance(exc, ConnectionRefusedError):
            return "connection refused (is it running?)"
        if isinstance(exc, PermissionError):
            return "permission denied"
        if isinstance(exc, socket.gaierror):
            return f"cannot resolve {self.endpoint.address} ({exc.strerror})"
        return exc.strerror or str(exc) or type(exc).__name__

    def _decode(self, status: int, reason: str, data: bytes) -> Any:
        try:
            payload = json.loads(data)
        except ValueError:  # UnicodeDecodeError and JSONDecodeError both are
            payload = None
            decoded = False
        else:
            decoded = True
        if 200 <= status < 300:
            if not decoded:
                raise RequestError(
                    f"taskforce at {self.endpoint.described} sent an answer that is not JSON: "
                    f"{_snippet(data)}",
                    status,
                )
            return payload
        message = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(message, str) and message.strip():
            message = _one_line(message)
        else:
            message = f"{reason or 'error'}: {_snippet(data)}" if data.strip() else reason
        if status == 401:
            message += " (give a token with --token or TASKFORCE_TOKEN)"
        raise RequestError(f"{message} (HTTP {status})", status)


def task_path(task: str, action: str) -> str:
    """/manage/tasks/NAME/ACTION, the name quoted whole (it may hold '/' or '?')."""
    return f"/manage/tasks/{quote(task, safe='')}/{action}"


def _snippet(data: bytes) -> str:
    text = data.decode("utf-8", "replace").strip()
    line = text.splitlines()[0] if text else ""
    if len(line) > _SNIPPET or len(text) > len(line):
        line = line[:_SNIPPET] + "..."
    return repr(line)


def _one_line(text: str) -> str:
    """A server's message as one line, without escape codes for the terminal."""
    joined = "; ".join(line.strip() for line in text.splitlines() if line.strip())
    return "".join(c if c.isprintable() else "?" for c in joined)


def _http_problem(exc: http.client.HTTPException) -> str:
    if isinstance(exc, http.client.RemoteDisconnected):
        return "it closed the connection"
    return f"{type(exc).__name__}: {exc}"[:_SNIPPET]


__all__ = [
    "EXIT_FAILED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "Client",
    "ClientError",
    "Endpoint",
    "RequestError",
    "UnixHTTPConnection",
    "UnreachableError",
    "UsageError",
    "default_socket",
    "parse_server",
    "task_path",
]
