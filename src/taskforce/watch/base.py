"""FileWatcher: report changes of a set of paths to one callback, on the asyncio loop.

The kernel backend (inotify on Linux, kqueue on BSD/macOS) watches what it can; paths it cannot
watch (no backend, watch limits) are handed to the polling backend, so a limit degrades latency
instead of failing.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import select
import sys
from collections.abc import Callable, Iterable
from typing import Protocol

from .polling import PollingBackend

log = logging.getLogger("taskforce.watch")

Report = Callable[[set[str]], None]

# A burst under debounce is delivered at the latest this many debounce periods after its first
# event, so a file written continuously still produces callbacks.
_MAX_WAIT_FACTOR = 10


def _absolute(path: str | os.PathLike[str]) -> str:
    path = os.fspath(path)
    # Most paths are already absolute and normal: skip abspath, a tenth of set_paths' time.
    if path[:1] == "/" and "//" not in path and "/." not in path and path[-1:] != "/":
        return path
    return os.path.abspath(path)


class Backend(Protocol):
    """A kernel watcher: reports changed paths through the ``report`` it was created with.

    Paths it cannot watch go to the ``give_up`` callback it was created with, at any time
    (during :meth:`add` or later, when re-arming hits a limit); it forgets them.
    """

    name: str

    @property
    def watch_count(self) -> int: ...

    def add(self, paths: Iterable[str]) -> None: ...

    def remove(self, paths: Iterable[str]) -> None: ...

    def close(self) -> None: ...


def _kernel_backend(
    loop: asyncio.AbstractEventLoop, report: Report, give_up: Report
) -> Backend | None:
    if sys.platform == "linux":
        try:
            from .inotify import InotifyBackend
        except ImportError as exc:
            log.warning("inotify unavailable (%s): watching files by polling", exc)
            return None
        try:
            return InotifyBackend(loop, report, give_up)
        except ImportError as exc:
            log.warning("inotify unavailable (%s): watching files by polling", exc)
            return None
        except OSError as exc:
            hint = ""
            if exc.errno == errno.EMFILE:
                hint = " (limit: the sysctl fs.inotify.max_user_instances, or open files)"
            log.warning("cannot start inotify: %s%s: watching files by polling", exc, hint)
            return None
    elif sys.platform != "win32" and hasattr(select, "kqueue"):
        from .kqueue import KqueueBackend

        try:
            return KqueueBackend(loop, report, give_up)
        except OSError as exc:
            log.warning("cannot start kqueue: %s: watching files by polling", exc)
            return None
    return None


class FileWatcher:
    """Calls ``on_change(paths)`` with the watched paths that changed.

    A change is a write (reported when the writer closes the file), a creation, a replacement by
    rename, a deletion or an attribute change of the file; or a change of a directory or symbolic
    link on the way to it that makes the path refer to another file (a tree renamed or replaced,
    a link switched). Paths are reported as given to :meth:`set_paths`, made absolute.

    Events read together are delivered together. With ``debounce`` > 0, further events are
    gathered until none has arrived for ``debounce`` seconds (at most ten periods in all).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_change: Callable[[frozenset[str]], None],
        *,
        debounce: float = 0.0,
        force_polling: bool = False,
        poll_interval: float = 1.0,
    ) -> None:
        if debounce < 0 or poll_interval <= 0:
            raise ValueError("debounce must not be negative, poll_interval must be positive")
        self._loop = loop
        self._on_change = on_change
        self._debounce = debounce
        self._poll_interval = poll_interval
        self._paths: frozenset[str] = frozenset()
        self._polled: set[str] = set()
        self._poller: PollingBackend | None = None
        self._pending: set[str] = set()
        self._first_pending = 0.0
        self._last_pending = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._kernel: Backend | None = None
        if not force_polling:
            self._kernel = _kernel_backend(loop, self._report, self._give_up)

    @property
    def backend(self) -> str:
        return "polling" if self._kernel is None else self._kernel.name

    @property
    def watch_count(self) -> int:
        """Kernel watches in use: one per directory holding or leading to watched files (with
        kqueue, also one per existing file); 0 when polling."""
        return 0 if self._kernel is None else self._kernel.watch_count

    @property
    def paths(self) -> frozenset[str]:
        return self._paths

    @property
    def polled_paths(self) -> frozenset[str]:
        """Paths watched by polling (all of them when the backend is "polling")."""
        return self._paths if self._kernel is None else frozenset(self._polled)

    def set_paths(self, paths: Iterable[str | os.PathLike[str]]) -> None:
        """Watch exactly ``paths`` from now on; only the differences touch the kernel."""
        if self._closed:
            raise RuntimeError("FileWatcher is closed")
        old = self._paths
        # A path already watched is in normal form: repeated calls with a large set stay cheap.
        new = frozenset(p if p in old else _absolute(p) for p in paths)
        added = new - old
        removed = old - new
        self._paths = new
        self._pending &= new
        if removed:
            polled = removed & self._polled
            if polled:
                self._polled -= polled
                if self._poller is not None:
                    self._poller.remove(polled)
            if self._kernel is not None:
                self._kernel.remove(removed - polled)
            elif self._poller is not None:
                self._poller.remove(removed)
        if added:
            if self._kernel is not None:
                self._kernel.add(added)
            else:
                self._poll(added)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pending.clear()
        if self._kernel is not None:
            self._kernel.close()
        if self._poller is not None:
            self._poller.close()

    def _give_up(self, paths: set[str]) -> None:
        paths = paths & self._paths
        if paths and not self._closed:
            self._polled |= paths
            self._poll(paths)

    def _poll(self, paths: set[str] | frozenset[str]) -> None:
        if self._poller is None:
            log.warning(
                "watching files by polling every %gs: changes are seen late and cost CPU",
                self._poll_interval,
            )
            self._poller = PollingBackend(self._loop, self._report, self._poll_interval)
        self._poller.add(paths)

    def _report(self, paths: set[str]) -> None:
        if self._closed:
            return
        if self._debounce <= 0:
            current = paths & self._paths
            if current:
                self._deliver(frozenset(current))
            return
        now = self._loop.time()
        if not self._pending:
            self._first_pending = now
        self._pending |= paths
        self._last_pending = now
        # The timer is not moved on each event: when it fires it re-arms itself if needed,
        # which keeps a burst from cancelling and creating a timer per event.
        if self._timer is None:
            self._timer = self._loop.call_at(now + self._debounce, self._flush)

    def _flush(self) -> None:
        self._timer = None
        due = min(
            self._last_pending + self._debounce,
            self._first_pending + self._debounce * _MAX_WAIT_FACTOR,
        )
        if self._loop.time() < due:
            self._timer = self._loop.call_at(due, self._flush)
            return
        current = self._pending & self._paths
        self._pending = set()
        if current:
            self._deliver(frozenset(current))

    def _deliver(self, paths: frozenset[str]) -> None:
        try:
            self._on_change(paths)
        except Exception:
            log.exception("file change callback failed")
