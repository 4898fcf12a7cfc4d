"""Listeners made ready to bind: rules enforced, tokens read, addresses understood.

Which listeners run: those configured under `settings.http` and those given on the command
line; with none configured (the key absent), also the default unix socket, which is
best-effort (another instance may hold it) where configured listeners are required.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass

from taskforce.api.auth import Access
from taskforce.api.paths import default_socket_path
from taskforce.config.listeners import listener_problem, parse_listen
from taskforce.config.model import HttpListener

log = logging.getLogger("taskforce")


class ApiConfigError(Exception):
    """A listener that must not, or cannot, start; the message says why, for a person."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A listener checked and ready to bind."""

    listener: HttpListener
    path: str | None  # absolute path of a unix socket; None for TCP
    host: str
    port: int
    access: Access

    @property
    def timeout(self) -> float:
        return self.listener.timeout

    @property
    def tls(self) -> bool:
        return self.listener.certfile is not None


def default_listener(pidfile: str | None) -> HttpListener:
    """The unix socket offered when nothing is configured: owner-only, control allowed."""
    return HttpListener(listen=default_socket_path(pidfile), allow_control=True)


def listener_from_flags(
    listen: str,
    certfile: str | None = None,
    allow_control: bool = False,
    token_file: str | None = None,
) -> HttpListener:
    """The listener of `-w LISTEN` (with `-c CERTFILE`, `-A`); ApiConfigError if unusable."""
    listener = HttpListener(
        listen=listen, certfile=certfile, allow_control=allow_control, token_file=token_file
    )
    prepare(listener, read_token=False)
    return listener


def listeners_to_open(
    configured: Sequence[HttpListener] | None,
    pidfile: str | None,
    extra: Sequence[HttpListener] = (),
) -> tuple[list[HttpListener], list[HttpListener]]:
    """(required, best_effort): what `settings.http` and the command line ask for.

    `configured` None means the key is absent: the default socket is then offered too,
    best-effort. An empty `settings.http` turns the service off (but for `extra`).
    """
    required = [*(configured or ()), *extra]
    best_effort = [default_listener(pidfile)] if configured is None else []
    return required, best_effort


def prepare(listener: HttpListener, *, read_token: bool = True) -> Endpoint:
    """Check `listener` against the safety rules and read its token; ApiConfigError if not ok."""
    problem = listener_problem(
        listener.listen,
        allow_control=listener.allow_control,
        has_token=listener.token is not None or listener.token_file is not None,
        has_tls=listener.certfile is not None,
        private=listener.private,
    )
    if problem is not None:
        raise ApiConfigError(problem)
    address = parse_listen(listener.listen)
    token: bytes | None = None
    if listener.token is not None:
        token = _checked_token(listener.token.encode(), "the token")
    elif listener.token_file is not None and read_token:
        token = _read_token(listener.token_file)
    access = Access(listener.allow_control, token, listener.private)
    path = os.path.abspath(address.path) if address.path is not None else None
    return Endpoint(listener, path, address.host, address.port, access)


def _read_token(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            info = os.fstat(f.fileno())
            data = f.read(4096)
    except OSError as exc:
        raise ApiConfigError(f"cannot read the token file {path}: {exc.strerror}") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("token file %s can be read by others than its owner", path)
    return _checked_token(data.strip(), f"the token in {path}")


def _checked_token(token: bytes, what: str) -> bytes:
    # It travels in a header: visible ASCII only, no spaces.
    if not token:
        raise ApiConfigError(f"{what} is empty")
    if any(byte <= 0x20 or byte >= 0x7F for byte in token):
        raise ApiConfigError(f"{what} must be visible ASCII characters without spaces")
    return token
