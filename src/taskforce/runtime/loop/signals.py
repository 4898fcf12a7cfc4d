"""The signals taskforce answers, and what each one does.

SIGCHLD reaps; SIGTERM and SIGINT stop every task and exit; SIGHUP stops them and
re-executes (a reset); SIGUSR1 reopens the files taskforce logs to; SIGUSR2 upgrades in
place, keeping the tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from types import FrameType

log = logging.getLogger("taskforce")


def install(
    loop: asyncio.AbstractEventLoop,
    *,
    on_child: Callable[[], None],
    on_stop: Callable[[str], None],
    on_reset: Callable[[str], None],
    on_upgrade: Callable[[], None],
) -> list[int]:
    """Answer the signals on `loop`; the signals handled, for remove()."""
    handlers: dict[int, Callable[[], None]] = {
        signal.SIGTERM: lambda: on_stop("SIGTERM"),
        signal.SIGINT: lambda: on_stop("SIGINT"),
        signal.SIGHUP: lambda: on_reset("SIGHUP"),
        signal.SIGUSR1: reopen_log_files,
        signal.SIGUSR2: on_upgrade,
    }
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # Started in the background by a shell: keep ignoring interrupts as it asked.
        del handlers[signal.SIGINT]
    for signum, handler in handlers.items():
        loop.add_signal_handler(signum, handler)
    _answer_sigchld(loop, on_child)
    # A thousand children exiting at once overflow asyncio's wake-up pipe; that loses
    # nothing (one wake-up reaps them all) but Python would print a traceback for
    # each lost byte, which at that rate stalls the loop.
    signal.set_wakeup_fd(signal.set_wakeup_fd(-1), warn_on_full_buffer=False)
    return [*handlers, signal.SIGCHLD]


def _answer_sigchld(loop: asyncio.AbstractEventLoop, on_child: Callable[[], None]) -> None:
    """SIGCHLD (a restart's first step) queues `on_child` from the signal's own handler.

    The handler runs as the loop's wait for events is interrupted, so `on_child` runs in
    the loop's next turn. What add_signal_handler does instead takes one turn more: its
    next turn reads the signal from the wake-up pipe, and only queues the callback then.
    """

    def queue(signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to reap for
            loop.call_soon_threadsafe(on_child)

    signal.signal(signal.SIGCHLD, queue)
    signal.siginterrupt(signal.SIGCHLD, False)  # as add_signal_handler does: SA_RESTART


def remove(loop: asyncio.AbstractEventLoop, handled: list[int]) -> None:
    for signum in handled:
        if signum == signal.SIGCHLD:
            signal.signal(signum, signal.SIG_DFL)
        else:
            loop.remove_signal_handler(signum)


def reopen_log_files() -> None:
    """SIGUSR1: the files taskforce logs to (--log-file), reopened after a rotation."""
    reopened = 0
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            with contextlib.suppress(OSError):
                handler.close()  # the next record opens the file at its path again
            reopened += 1
    log.info("SIGUSR1 received: %d log file(s) reopened", reopened)
