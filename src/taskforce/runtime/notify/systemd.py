"""systemd's readiness protocol: tell the service manager how taskforce is doing.

Started by systemd as a `Type=notify` service, taskforce finds `NOTIFY_SOCKET` in its
environment (a unix datagram socket; `@name` is an abstract one) and sends:
- `READY=1` after its first planning pass, once the tasks that can start at once have
  been started (tasks waiting for `requires` or a `start_delay` do not hold up start-up,
  or a slow chain would make systemd give up on the whole service);
- `STATUS=12 tasks, 30 processes running, 0 failing` whenever that line changes, at
  most one every `interval` seconds (changes in between are folded into one); a timer
  exists only to space out two sends, so an idle taskforce sends nothing;
- `STOPPING=1` when it exits, and `RELOADING=1` when it re-executes itself (a reset or an
  upgrade), which the new image ends with its own `READY=1`;
- `WATCHDOG=1` every half of `WATCHDOG_USEC` when the unit has `WatchdogSec=` (and
  `WATCHDOG_PID`, if set, is our pid), from a timer of the event loop: a loop that hangs
  stops sending, and systemd restarts the service. Without a watchdog there is no timer.
Everything is best effort: a message that cannot be sent is dropped (logged once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from taskforce.core.planner import Planner
from taskforce.runtime.loop.listeners import after

log = logging.getLogger("taskforce")

ENV = "NOTIFY_SOCKET"
WATCHDOG_ENV = ("WATCHDOG_USEC", "WATCHDOG_PID")  # systemd's, for us alone
INTERVAL = 1.0  # seconds, at least, between two STATUS updates
MAX_NAMES = 3  # failing tasks named in the status line


class Notifier:
    """A datagram socket to systemd's notification socket."""

    def __init__(self, address: str) -> None:
        if not address or address[0] not in "/@":
            raise ValueError(f"{ENV}={address!r} is neither a path nor an @abstract name")
        # An abstract socket's name starts with a NUL byte where systemd writes '@'.
        self.address = "\0" + address[1:] if address[0] == "@" else address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.setblocking(False)  # never wait on systemd: drop instead
        self._failed = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier | None:
        """The notifier `NOTIFY_SOCKET` asks for, or None when not started that way."""
        address = (os.environ if environ is None else environ).get(ENV, "")
        if not address:
            return None
        try:
            return cls(address)
        except (ValueError, OSError) as exc:
            log.warning("not notifying systemd: %s", exc)
            return None

    def send(self, *lines: str) -> bool:
        """Send `lines` (VARIABLE=value each) in one datagram; whether it went."""
        try:
            self.sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.warning("cannot notify systemd through %s: %s", self.address, exc)
            return False
        return True

    def close(self) -> None:
        self.sock.close()


class Supervised(Protocol):
    """What the status needs of :class:`taskforce.runtime.loop.supervisor.Supervisor`."""

    planner: Planner
    on_change: Callable[[], None] | None


def status_line(planner: Planner) -> str:
    """'12 tasks, 30 processes running, 0 failing' (naming a few failing tasks)."""
    states = [planner.tasks[name] for name in planner.desired.tasks if name in planner.tasks]
    running = sum(1 for state in planner.tasks.values() for i in state.instances.values() if i.pid)
    if planner.shutting_down:
        return f"stopping: {running} {_plural(running, 'process', 'processes')} left"
    failing = [s.name for s in states if any(i.failures for i in s.instances.values())]
    tasks = len(planner.desired.tasks)
    line = (
        f"{tasks} {_plural(tasks, 'task', 'tasks')}, "
        f"{running} {_plural(running, 'process', 'processes')} running, {len(failing)} failing"
    )
    if failing:
        line += ": " + _names(failing)
    return line


def _plural(count: int, one: str, many: str) -> str:
    return one if count == 1 else many


def _names(names: Iterable[str]) -> str:
    names = list(names)
    shown = ", ".join(names[:MAX_NAMES])
    return shown + (", ..." if len(names) > MAX_NAMES else "")


class SystemdStatus:
    """Follows a supervisor's planning passes: READY=1 after the first, STATUS= on change."""

    def __init__(
        self,
        notifier: Notifier,
        interval: float = INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.notifier = notifier
        self.interval = interval
        self._clock = clock
        self._supervisor: Supervised | None = None
        self._ready = False
        self._sent: str | None = None
        self._sent_at = -interval
        self._timer: asyncio.TimerHandle | None = None

    def attach(self, supervisor: Supervised) -> None:
        """Hear `supervisor`'s planning passes, after whoever listened before."""
        supervisor.on_change = after(supervisor.on_change, self.changed)
        self._supervisor = supervisor

    def changed(self) -> None:
        if self._supervisor is None or self._timer is not None:
            return  # detached; or a send is due, and will take this change along
        line = status_line(self._supervisor.planner)
        if not self._ready:
            self._ready = True
            self._send("READY=1", line)
            return
        if line == self._sent:
            return
        wait = self._sent_at + self.interval - self._clock()
        if wait <= 0:
            self._send(line)
        else:
            self._timer = asyncio.get_running_loop().call_later(wait, self._due)

    def _due(self) -> None:
        self._timer = None
        self.changed()

    def _send(self, *fields: str) -> None:
        line = fields[-1]
        self.notifier.send(*fields[:-1], f"STATUS={line}")
        self._sent, self._sent_at = line, self._clock()

    def ended(self, reexecuting: bool) -> None:
        """The supervisor has ended: taskforce exits, or (`reexecuting`) comes back."""
        self.detach()
        if reexecuting:
            usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            self.notifier.send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=re-executing")
        else:
            self.notifier.send("STOPPING=1", "STATUS=stopped")

    def detach(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._supervisor = None

    def close(self) -> None:
        self.detach()
        with contextlib.suppress(OSError):
            self.notifier.close()


def watchdog_interval(
    environ: Mapping[str, str] | None = None, pid: int | None = None
) -> float | None:
    """Seconds between two `WATCHDOG=1`: half the timeout systemd gives in WATCHDOG_USEC;
    None when systemd watches no process of ours (no timeout, or WATCHDOG_PID names another
    process: a child that inherited the variables)."""
    environ = os.environ if environ is None else environ
    usec, watched = environ.get("WATCHDOG_USEC", ""), environ.get("WATCHDOG_PID", "")
    if not usec:
        return None
    if watched and watched != str(os.getpid() if pid is None else pid):
        return None
    try:
        timeout = int(usec)
    except ValueError:
        timeout = 0
    if timeout <= 0:
        log.warning("not feeding systemd's watchdog: WATCHDOG_USEC=%r is not a timeout", usec)
        return None
    return timeout / 2e6


class Watchdog:
    """Sends `WATCHDOG=1` every `interval` seconds from the running event loop."""

    def __init__(self, notifier: Notifier, interval: float) -> None:
        self.notifier = notifier
        self.interval = interval
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    def start_if_asked(cls, notifier: Notifier) -> Watchdog | None:
        """A started watchdog when systemd asks for one (call from the loop), else None."""
        interval = watchdog_interval()
        if interval is None:
            return None
        watchdog = cls(notifier, interval)
        watchdog._feed()
        return watchdog

    def _feed(self) -> None:
        self.notifier.send("WATCHDOG=1")
        self._timer = asyncio.get_running_loop().call_later(self.interval, self._feed)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
