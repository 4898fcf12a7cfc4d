"""Who may use which paths: control allowed or not, bearer tokens, private listeners."""

from __future__ import annotations

import pytest

from taskforce.api.auth import Access, Denied, bearer, check_control, check_status


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (None, None),
        (b"Bearer abc", b"abc"),
        (b"bearer   abc ", b"abc"),
        (b"BEARER abc", b"abc"),
        (b"Basic YWJj", None),
        (b"Bearer", None),
        (b"Bearer ", None),
        (b"abc", None),
    ],
)
def test_bearer_tokens(header: bytes | None, token: bytes | None) -> None:
    assert bearer(header) == token


OPEN = Access()
CONTROL = Access(allow_control=True)
CONTROL_TOKEN = Access(allow_control=True, token=b"s3cret")
PRIVATE = Access(token=b"s3cret", private=True)
GOOD = b"Bearer s3cret"


def test_status_paths_are_open_unless_private() -> None:
    assert check_status(OPEN, None) is None
    assert check_status(CONTROL_TOKEN, None) is None  # the token guards control only
    assert check_status(PRIVATE, GOOD) is None
    denied = check_status(PRIVATE, None)
    assert denied is not None and denied.status == 401 and "needs an access token" in denied.message
    assert check_status(PRIVATE, b"Bearer wrong") == Denied(401, "the access token is not valid")


def test_control_paths() -> None:
    refused = check_control(OPEN, GOOD)
    assert refused is not None and refused.status == 403  # a token does not allow control
    assert check_control(CONTROL, None) is None
    assert check_control(CONTROL_TOKEN, GOOD) is None
    assert check_control(CONTROL_TOKEN, b"Bearer s3cre") == Denied(
        401, "the access token is not valid"
    )
    missing = check_control(CONTROL_TOKEN, b"Basic czNjcmV0")
    assert missing is not None and missing.status == 401
