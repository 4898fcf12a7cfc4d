"""Notifications: task state changes reported to webhooks and commands (`settings.notify`).

The supervisor tells :class:`Notifications` about each change worth a person's eye
(Supervisor.on_event: exited, flapping, recovered, unhealthy, failed, reload_failed).
Every target of the configuration in force that wants the event gets it in its own
bounded queue (when full, the oldest event is dropped and the drops are counted in the
log), delivered in order by one asyncio task per target, which exists only while its
queue holds something: nothing runs while nothing happens.

A delivery that fails is tried again after a pause that doubles each time (1 s, 2 s...),
up to the target's `attempts`, each attempt bounded by its `timeout`. A webhook answer in
3xx or 4xx (but 408 and 429) is final: asking again would get the same. Nothing here blocks the
supervisor: webhooks are asyncio streams (:mod:`taskforce.runtime.notify.webhook`), and commands
run as the supervisor's helpers, which report their exit status through it.

A command gets the event in its environment (taskforce's own, plus):
TASKFORCE_EVENT, TASKFORCE_TASK, TASKFORCE_DETAIL, TASKFORCE_TIME (Unix time),
TASKFORCE_INSTANCE, TASKFORCE_PID, TASKFORCE_FAILURES, TASKFORCE_RETRY_IN (where they
apply), TASKFORCE_HOST, TASKFORCE_MESSAGE (one line for people) and TASKFORCE_JSON (what
a webhook is sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from taskforce.config.model import NotifyTarget
from taskforce.runtime.loop.listeners import after
from taskforce.runtime.processes.spawn import describe_status

if TYPE_CHECKING:
    from taskforce.runtime.legion import Legion

log = logging.getLogger("taskforce")

Event = Mapping[str, object]

BACKOFF = 1.0  # seconds before the second attempt; doubled before each further one
MAX_BACKOFF = 30.0
GRACE = 2.0  # seconds deliveries in flight may take to finish once taskforce stops
# Webhook answers below 500 that may change if asked again; the others are final.
RETRY_STATUSES = (408, 429)
ENV_PREFIX = "TASKFORCE_"


class DeliveryError(Exception):
    """An attempt failed; `final` when trying again cannot help."""

    def __init__(self, message: str, final: bool = False) -> None:
        super().__init__(message)
        self.final = final


class CommandRunner(Protocol):
    """What commands need of :class:`taskforce.runtime.loop.supervisor.Supervisor`."""

    def run_command(
        self,
        argv: tuple[str, ...],
        what: str,
        on_exit: Callable[[int], None],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> bool: ...


class EventSource(CommandRunner, Protocol):
    """A supervisor: it runs commands and tells `on_event` about state changes."""

    on_event: Callable[[dict[str, object]], None] | None


# ----- what is sent ---------------------------------------------------------------------


def message(event: Event) -> str:
    """The event in one line, for people: 'web[0] flapping: pid 12 exited 1 after 0.1s...'."""
    kind = str(event.get("event", "event"))
    detail = str(event.get("detail") or "")
    task = event.get("task")
    if task is None:
        return f"{kind}: {detail}" if detail else kind
    instance = event.get("instance")
    who = f"{task}[{instance}]" if instance is not None else str(task)
    text = f"{who} {kind}: {detail}" if detail else f"{who} {kind}"
    failures, retry_in = event.get("failures"), event.get("retry_in")
    if isinstance(failures, int) and isinstance(retry_in, int | float):
        text += f" (failure {failures} in a row, retrying in {retry_in:.3g}s)"
    return text


def document(event: Event, host: str) -> dict[str, object]:
    """What a webhook is sent: the event as the supervisor told it, the host, the message."""
    return {**event, "host": host, "message": message(event)}


def environment(event: Event, host: str, base: Mapping[str, str]) -> dict[str, str]:
    """The environment of a command target: `base` plus the event's TASKFORCE_* variables."""
    env = dict(base)
    for key, value in event.items():
        if value is not None:
            env[ENV_PREFIX + key.upper()] = _text(value)
    env[ENV_PREFIX + "HOST"] = host
    env[ENV_PREFIX + "MESSAGE"] = message(event)
    env[ENV_PREFIX + "JSON"] = json.dumps(document(event, host), separators=(",", ":"))
    return env


def _text(value: object) -> str:
    if isinstance(value, float):
        return str(round(value, 3))
    return str(value)


def label(target: NotifyTarget) -> str:
    """The target as the log names it; a URL without its credentials or query."""
    if target.url is not None:
        from urllib.parse import urlsplit  # here: it imports ipaddress (memory)

        parts = urlsplit(target.url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
    assert target.command is not None
    return target.command[0]


# ----- delivery ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Queue:
    target: NotifyTarget
    events: deque[Event] = field(default_factory=deque)
    dropped: int = 0
    worker: asyncio.Task[None] | None = None


class Notifications:
    """Sends each event to the targets `targets()` gives at that moment.

    Reading the targets at each event makes a reload take effect at once; a target a
    reload keeps keeps its queue. Hook it to a supervisor with :meth:`attach`; once the
    supervisor has ended, `await close()`.
    """

    def __init__(
        self,
        targets: Callable[[], Sequence[NotifyTarget]],
        *,
        host: str | None = None,
        environ: Mapping[str, str] | None = None,
        backoff: float = BACKOFF,
    ) -> None:
        self.targets = targets
        self.host = host if host is not None else socket.gethostname()
        self.environ = os.environ if environ is None else environ
        self.backoff = backoff
        self.runner: CommandRunner | None = None
        self.delivered = 0
        self.failed = 0
        self._queues: dict[NotifyTarget, _Queue] = {}
        self._closed = False

    def attach(self, supervisor: EventSource) -> None:
        """Hear the supervisor's events, after whoever listened before; run commands there."""
        supervisor.on_event = after(supervisor.on_event, self.notify)
        self.runner = supervisor

    def notify(self, event: Event) -> None:
        """Queue `event` for every target that wants it; never blocks, never raises."""
        if self._closed:
            return
        try:
            targets = self.targets()
        except Exception:
            log.exception("notifications: cannot tell the targets")
            return
        for target in targets:
            if event.get("event") in target.events:
                self._enqueue(target, event)

    def _enqueue(self, target: NotifyTarget, event: Event) -> None:
        queue = self._queues.get(target)
        if queue is None:
            queue = self._queues[target] = _Queue(target)
        if len(queue.events) >= target.queue:
            queue.events.popleft()
            queue.dropped += 1
            if queue.dropped == 1:
                log.warning(
                    "notifications to %s are falling behind: dropping the oldest", label(target)
                )
        queue.events.append(event)
        if queue.worker is None:
            queue.worker = asyncio.get_running_loop().create_task(self._work(queue))

    async def _work(self, queue: _Queue) -> None:
        try:
            while queue.events:
                await self._deliver(queue.target, queue.events.popleft())
                if queue.dropped and not queue.events:
                    log.warning(
                        "notifications to %s: %d event(s) dropped while it was behind",
                        label(queue.target),
                        queue.dropped,
                    )
                    queue.dropped = 0
        finally:
            queue.worker = None
            if not queue.events and self._queues.get(queue.target) is queue:
                del self._queues[queue.target]

    async def _deliver(self, target: NotifyTarget, event: Event) -> None:
        what = f"{event.get('event')} notification to {label(target)}"
        for attempt in range(1, target.attempts + 1):
            try:
                await self._attempt(target, event)
            except DeliveryError as exc:
                problem, final = str(exc), exc.final
            except (OSError, TimeoutError) as exc:
                problem, final = str(exc) or type(exc).__name__, False
            else:
                self.delivered += 1
                log.debug("%s delivered", what)
                return
            if final or attempt == target.attempts:
                self.failed += 1
                log.warning("%s failed after %d attempt(s): %s", what, attempt, problem)
                return
            pause = min(self.backoff * 2 ** (attempt - 1), MAX_BACKOFF)
            log.info("%s failed (%s): trying again in %gs", what, problem, pause)
            await asyncio.sleep(pause)

    async def _attempt(self, target: NotifyTarget, event: Event) -> None:
        if target.url is not None:
            await self._post(target, target.url, event)
        else:
            assert target.command is not None
            await self._run(target, target.command, event)

    async def _post(self, target: NotifyTarget, url: str, event: Event) -> None:
        from taskforce.runtime.notify import webhook  # h11 only once a webhook is used

        body = json.dumps(document(event, self.host)).encode()
        try:
            status = await webhook.post(url, body, target.headers, target.timeout)
        except webhook.WebhookError as exc:
            raise DeliveryError(str(exc)) from None
        except TimeoutError:
            raise DeliveryError(f"no answer within {target.timeout:g}s") from None
        if 200 <= status < 300:
            return
        final = status < 500 and status not in RETRY_STATUSES
        raise DeliveryError(f"the server answered {status}", final=final)

    async def _run(self, target: NotifyTarget, argv: tuple[str, ...], event: Event) -> None:
        runner = self.runner
        if runner is None:
            raise DeliveryError("taskforce is no longer running commands", final=True)
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def on_exit(status: int) -> None:
            if not done.done():
                done.set_result(status)

        env = environment(event, self.host, self.environ)
        if not runner.run_command(
            argv, "notification command", on_exit, env=env, timeout=target.timeout
        ):
            raise DeliveryError("the command could not be started")
        status = await done
        if status == -1:
            raise DeliveryError("the command could not be run")
        if status != 0:
            raise DeliveryError(f"the command {describe_status(status)}")

    async def close(self, grace: float = GRACE) -> None:
        """Stop taking events; give webhooks in flight `grace` seconds, then drop the rest.

        Commands are not run any more: the supervisor that ran them has ended.
        """
        self._closed = True
        self.runner = None
        queues = list(self._queues.values())
        workers = [q.worker for q in queues if q.worker is not None]
        left = 0
        if workers:
            _, pending = await asyncio.wait(workers, timeout=grace)
            # What a cancelled worker held: the event in flight and those queued behind it.
            left = sum(len(q.events) + 1 for q in queues if q.worker in pending)
            for worker in pending:
                worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*pending, return_exceptions=True)
        if left:
            log.warning("notifications: %d event(s) not delivered: taskforce is stopping", left)
        self._queues.clear()


def configured_targets(legion: Legion) -> Callable[[], Sequence[NotifyTarget]]:
    """The targets of the configuration `legion` has in force, whenever asked."""

    def targets() -> Sequence[NotifyTarget]:
        loaded = legion.loaded
        return loaded.config.settings.notify if loaded is not None else ()

    return targets


def attach_notifications(legion: Legion) -> Notifications:
    """Report the state changes of `legion`'s running supervisor to its `settings.notify`.

    Call it once the supervisor exists (from serve()'s `on_ready`, before the first
    planning pass); `await close()` on what it returns once serve() has ended.
    """
    supervisor = legion.supervisor
    if supervisor is None:
        raise RuntimeError("the legion is not serving")
    notifications = Notifications(configured_targets(legion))
    notifications.attach(supervisor)
    return notifications
