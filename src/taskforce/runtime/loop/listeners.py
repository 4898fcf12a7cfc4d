"""Listening to the supervisor (`on_change`, `on_event`) beside whoever listens already."""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec

P = ParamSpec("P")


def after(previous: Callable[P, None] | None, listener: Callable[P, None]) -> Callable[P, None]:
    """A callback that calls `previous` (whoever listened before, if anyone), then
    `listener`, with the same arguments; `listener` hears even when `previous` fails."""
    if previous is None:
        return listener
    earlier = previous

    def both(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            earlier(*args, **kwargs)
        finally:
            listener(*args, **kwargs)

    return both
