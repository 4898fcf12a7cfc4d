"""Configuration and roles text that does not come from a local file.

A :class:`TextSource` (the fleet's etcd key, for one) gives the latest text it holds and
says when it changes; the legion loads, validates and applies it exactly as it would a
file's content.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class TextSource(Protocol):
    @property
    def name(self) -> str:
        """How problems name this source (a URL)."""
        ...

    def read(self) -> bytes:
        """The latest content; ConfigError when there is none to be had."""
        ...

    def watch(self, on_change: Callable[[], None]) -> None:
        """From now on, call `on_change` (on the event loop) when the content changes."""
        ...

    async def close(self) -> None: ...
