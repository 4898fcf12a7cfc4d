"""The control facade's parsing of what a client sends: one signal parser with the
configuration's, and its refusals as 400s."""

from __future__ import annotations

import signal

import pytest

from taskforce.runtime.manage import ControlError, parse_signal


@pytest.mark.parametrize(
    ("given", "number"),
    [("hup", signal.SIGHUP), ("SIGTERM", signal.SIGTERM), ("9", 9), (15, 15), ("usr1", 10)],
)
def test_a_signal_is_named_as_in_the_configuration(given: str | int, number: int) -> None:
    assert parse_signal(given) == number


@pytest.mark.parametrize("given", ["0", 0, "NOPE", "\u00b2", "9" * 5000, "\u017fighup", "", "-1"])
def test_anything_else_is_refused_with_a_400(given: str | int) -> None:
    with pytest.raises(ControlError) as raised:
        parse_signal(given)
    assert raised.value.status == 400
    assert "is not a signal name or number" in raised.value.message
