"""Who may use which paths of a listener: control allowed or not, bearer tokens.

A status path needs the token only on a private listener; a control path needs control to
be allowed on the listener (403 otherwise, token or not) and the token when one is set
(401). The configuration (/status/config) needs either (401 otherwise). Tokens are
compared in constant time.
"""

from __future__ import annotations

from dataclasses import dataclass

# Sent with every 401, as RFC 6750 asks, so a client knows which scheme to use.
CHALLENGE = ("WWW-Authenticate", 'Bearer realm="taskforce"')


@dataclass(frozen=True, slots=True)
class Access:
    allow_control: bool = False
    token: bytes | None = None  # required where set
    private: bool = False  # status paths need the token too


@dataclass(frozen=True, slots=True)
class Denied:
    status: int  # 401 or 403
    message: str


def bearer(authorization: bytes | None) -> bytes | None:
    """The token of an `Authorization: Bearer TOKEN` header value, or None."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    return token.strip() or None


def authorized(access: Access, authorization: bytes | None) -> bool:
    if access.token is None:
        return True
    sent = bearer(authorization)
    if sent is None:
        return False
    import hmac  # here, not at import: it maps OpenSSL (megabytes) for one comparison

    return hmac.compare_digest(sent, access.token)


def check_status(access: Access, authorization: bytes | None) -> Denied | None:
    """Whether a request may reach any path of this listener at all."""
    if access.private and not authorized(access, authorization):
        return _unauthorized(authorization)
    return None


def check_control(access: Access, authorization: bytes | None) -> Denied | None:
    """Whether a request may use a control path."""
    if not access.allow_control:
        return Denied(403, "control is not allowed on this listener (see allow_control)")
    if not authorized(access, authorization):
        return _unauthorized(authorization)
    return None


def check_secrets(access: Access, authorization: bytes | None) -> Denied | None:
    """Whether a request may read what holds secrets (the configuration: defines, argv):
    only a caller that may also control, or that holds the listener's token."""
    if access.token is not None:
        return None if authorized(access, authorization) else _unauthorized(authorization)
    if access.allow_control:
        return None  # the owner's unix socket (TCP control always has a token)
    return Denied(
        401,
        "this path shows the configuration, which holds secrets: it needs a listener "
        "that allows control, or one with an access token",
    )


def _unauthorized(authorization: bytes | None) -> Denied:
    if bearer(authorization) is None:
        return Denied(401, "this path needs an access token: send 'Authorization: Bearer TOKEN'")
    return Denied(401, "the access token is not valid")
