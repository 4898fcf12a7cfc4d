"""Chaining a supervisor listener after whoever listened before."""

from __future__ import annotations

import pytest

from taskforce.runtime.loop.listeners import after


def test_the_listener_hears_after_the_previous_one_with_the_same_arguments() -> None:
    heard: list[tuple[str, object]] = []
    both = after(lambda event: heard.append(("first", event)), lambda e: heard.append(("then", e)))
    both({"event": "exited"})
    assert heard == [("first", {"event": "exited"}), ("then", {"event": "exited"})]


def test_without_a_previous_listener_it_is_the_listener_itself() -> None:
    def listener() -> None:
        pass

    assert after(None, listener) is listener


def test_the_listener_hears_even_when_the_previous_one_fails() -> None:
    heard: list[str] = []

    def failing() -> None:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):
        after(failing, lambda: heard.append("heard"))()
    assert heard == ["heard"]
