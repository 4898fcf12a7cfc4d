"""Teardown that nothing cuts short: a test's processes must die with it."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

# pytest-timeout's SIGALRM (it raises from its handler), and ^C.
_HELD = (signal.SIGALRM, signal.SIGINT)


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Hold SIGALRM and SIGINT until the block is done, then deliver them: a timeout that
    strikes while a test cleans up is still reported, after the cleanup instead of in
    the middle of it (which left detached daemons running for good)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread handles signals; teardown runs there
        return
    held: dict[int, FrameType | None] = {}

    def hold(signum: int, frame: FrameType | None) -> None:
        held.setdefault(signum, frame)

    previous = {sig: signal.signal(sig, hold) for sig in _HELD}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        for signum, frame in held.items():
            handler = previous[signal.Signals(signum)]
            if callable(handler):
                handler(signum, frame)
            elif handler != signal.SIG_IGN:
                signal.raise_signal(signum)
