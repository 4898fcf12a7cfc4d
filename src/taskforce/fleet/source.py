"""An etcd key as the text of the configuration (or roles), with a copy on local disk.

The legion reads the text synchronously, so the source keeps the key's latest value in
memory: :meth:`EtcdSource.prime` reads it before the legion starts, then a watch
follows it (from the revision read, so nothing is missed across reconnections). A
change calls the legion back, which loads and applies it exactly as a file change.

The on-disk copy holds the last text that the legion loaded successfully (see
:meth:`commit`), so a taskforce started while etcd is out of reach runs the last good
configuration rather than nothing, and a bad configuration in etcd is never cached.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import Callable
from urllib.parse import quote

from taskforce.config.errors import ConfigError, Problem
from taskforce.fleet.backoff import Backoff
from taskforce.fleet.session import EtcdUnavailableError, Session
from taskforce.fleet.urls import EtcdUrl

log = logging.getLogger("taskforce.fleet")

CACHE_ENV = "TASKFORCE_FLEET_CACHE"


def cache_dir(url: EtcdUrl, host: str) -> str:
    """Where this host keeps its copies: the URL's cache=, $TASKFORCE_FLEET_CACHE, or a
    directory that survives reboots (the copy must outlive an etcd outage)."""
    base = url.cache or os.environ.get(CACHE_ENV)
    if not base:
        if os.getuid() == 0:
            base = "/var/lib/taskforce/fleet"
        else:
            state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
            base = os.path.join(state, "taskforce", "fleet")
    return os.path.join(os.path.abspath(base), quote(host, safe=""))


def cache_path(url: EtcdUrl, host: str) -> str:
    return os.path.join(cache_dir(url, host), quote(url.key.strip("/"), safe="") or "root")


class EtcdSource:
    """A :class:`~taskforce.runtime.sources.TextSource` backed by one etcd key.

    `missing` is what an absent key means: None for the configuration (nothing to run:
    an error, as a missing file is), b"" for roles (no role is active). A key deleted
    while taskforce runs changes nothing, as a deleted file does.
    """

    def __init__(
        self, session: Session, url: EtcdUrl, cache_file: str, *, missing: bytes | None
    ) -> None:
        self.session = session
        self.url = url
        self.cache_file = cache_file
        self._missing = missing
        self._value: bytes | None = None
        self._why_none = "not read yet"
        self._revision = 0  # the store revision our value is current at (0: unknown)
        self.revision_read = 0  # that of the text the legion last read
        self._on_change: Callable[[], None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_read: bytes | None = None
        self._cached = _read_file(cache_file)

    @property
    def name(self) -> str:
        return self.url.display

    @property
    def key(self) -> bytes:
        return self.url.key.encode()

    async def prime(self) -> None:
        """Read the key (or, etcd being out of reach, the copy on disk) before starting."""
        for attempt in range(len(self.session.connection.endpoints)):
            try:
                kv, self._revision = await self.session.get(self.key)
                break
            except EtcdUnavailableError as exc:  # the session moves on to the next member
                if attempt + 1 == len(self.session.connection.endpoints):
                    self._fall_back(f"cannot be read ({exc})")
                    return
        if kv is not None:
            self._value = kv.value
        elif self._missing is not None and self._cached is None:
            self._value = self._missing
        else:
            self._fall_back(f"the key {self.url.key} does not exist")

    def _fall_back(self, why: str) -> None:
        if self._cached is not None:
            log.warning("%s: %s: using the copy in %s", self.name, why, self.cache_file)
            self._value = self._cached
        elif self._missing is not None:
            log.warning("%s: %s, and there is no copy: no role is active", self.name, why)
            self._value = self._missing
        else:
            self._why_none = f"{why}, and there is no copy in {self.cache_file}"

    # ----- TextSource -----------------------------------------------------------------

    def read(self) -> bytes:
        if self._value is None:
            raise ConfigError([Problem(self.name, None, "", self._why_none)])
        self._last_read = self._value
        self.revision_read = self._revision
        return self._value

    def watch(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._follow())

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # ----- the copy on disk -----------------------------------------------------------

    def commit(self) -> None:
        """Keep the text last read (the legion has just loaded it) as the local copy."""
        text = self._last_read
        if text is None or text == self._cached:
            return
        try:
            _write_file(self.cache_file, text)
        except OSError as exc:
            log.warning("cannot keep a copy of %s in %s: %s", self.name, self.cache_file, exc)
            return
        self._cached = text

    # ----- following the key ----------------------------------------------------------

    async def _follow(self) -> None:
        backoff = Backoff()
        while True:
            try:
                if not self._revision:
                    kv, self._revision = await self.session.get(self.key)
                    self._update(kv.value if kv is not None else None)
                backoff.reset()
                async for event in self.session.watch(self.key, self._revision + 1):
                    self._revision = event.kv.mod_revision
                    self._update(None if event.deleted else event.kv.value)
            except EtcdUnavailableError as exc:
                # Read the key afresh once back: the watch's history may be compacted.
                log.debug("%s: %s", self.name, exc)
                self._revision = 0
                await asyncio.sleep(backoff.next())
            except Exception:
                # A bug, not etcd: were it to end this loop, the host would silently stop
                # following the key. Say so loudly, and follow on.
                log.exception("%s: following the key failed; retrying", self.name)
                self._revision = 0
                await asyncio.sleep(backoff.next())

    def _update(self, value: bytes | None) -> None:
        if value is None:
            if self._value is None and self._missing is not None:
                value = self._missing
            else:
                if self._value is not None:
                    log.warning("%s was deleted: nothing changes", self.name)
                return
        if value == self._value:
            return
        self._value = value
        if self._on_change is not None:
            self._on_change()


def _read_file(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _write_file(path: str, data: bytes) -> None:
    """Replace `path` atomically (a crash leaves the old copy or the new, never half)."""
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    # The configuration may hold secrets (tokens): owner only.
    fd, temporary = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
