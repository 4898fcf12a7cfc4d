"""Handing memory back to the system after a configuration load.

A load builds and drops hundreds of thousands of small objects (the parsed document, its
positions, the resolved contexts). CPython frees them into malloc's heap, which keeps the
pages: a daemon that once loaded a large configuration would stay that size for good.
"""

from __future__ import annotations

try:
    from taskforce import _syscalls
except ImportError:  # built without a C compiler
    _syscalls = None  # type: ignore[assignment]


def give_back() -> None:
    """Return free heap pages to the system (malloc_trim); cheap, safe at any time."""
    if _syscalls is not None:
        _syscalls.trim()
