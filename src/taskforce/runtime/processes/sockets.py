"""Listening sockets held for tasks: bound by taskforce, passed to each process it starts.

taskforce binds a task's sockets itself (as root, if it runs as root, before a process
drops to the task's user: an unprivileged task can serve port 80) and keeps them open for
as long as the task is configured: across restarts of its processes, reloads that keep
the socket's definition, and a re-execution of taskforce (the descriptors stay open across
exec, named in the environment of the next image). Connections that arrive while no
process accepts wait in the socket's backlog instead of being refused.

A socket is bound lazily, when a process of its task starts; a bind that fails is a start
that fails (logged, retried with the restart policy's backoff).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import stat
from collections.abc import Iterable, MutableMapping
from dataclasses import asdict, dataclass
from typing import Any

from taskforce.core.sockets import TCP, UNIX, SocketSpec
from taskforce.core.spec import DesiredState
from taskforce.runtime.processes.spawn import SpawnError, lookup_credentials

log = logging.getLogger("taskforce")

# Sockets handed from one image of taskforce to the next across a re-exec (upgrade,
# reset), as JSON: a list of {"task", "fd", "spec", "file"}.
HELD_ENV = "TASKFORCE_HELD_SOCKETS"


@dataclass(slots=True)
class Held:
    spec: SocketSpec
    sock: socket.socket
    # A unix socket's file as we made it (device, inode), removed on close if still ours.
    file: tuple[int, int] | None = None

    @property
    def bound(self) -> str:
        """Where it listens: the port the kernel chose for port 0, say."""
        if self.spec.kind == UNIX:
            return self.spec.path
        try:
            host, port = self.sock.getsockname()[:2]
        except OSError:
            return self.spec.address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class SocketHolder:
    """The sockets of every task, by (task, socket name)."""

    def __init__(self, environ: MutableMapping[str, str] | None = None) -> None:
        self._held: dict[tuple[str, str], Held] = {}
        for task, held in _inherited(os.environ if environ is None else environ):
            self._held[(task, held.spec.name)] = held

    def fds(self, task: str, sockets: Iterable[SocketSpec]) -> list[int]:
        """The descriptors to pass to a new process of `task`, bound now if need be.

        SpawnError (the start fails) for a socket that cannot be bound.
        """
        fds = []
        for spec in sockets:
            key = (task, spec.name)
            held = self._held.get(key)
            if held is not None and not held.spec.same_socket(spec):
                self._close(key)
                held = None
            if held is None:
                held = self._held[key] = _bind(task, spec)
                log.info("%s: listening on %s (socket %s)", task, held.bound, spec.name)
            elif held.spec != spec:
                _adjust(task, held, spec)
            fds.append(held.sock.fileno())
        return fds

    def keep(self, desired: DesiredState) -> None:
        """Close the sockets that no task in `desired` declares any more (a removed task,
        a removed socket, or one whose definition changed: it is bound anew at the next
        start). Processes started with one keep their own descriptor until they exit."""
        if not self._held:
            return  # nothing to close (most configurations hold no socket)
        wanted = {
            (name, s.name): s
            for name, spec in desired.tasks.items()
            for instance in spec.instances[:1]
            for s in instance.launch.sockets
        }
        for key, held in list(self._held.items()):
            spec = wanted.get(key)
            if spec is None or not held.spec.same_socket(spec):
                self._close(key)

    def describe(self, task: str) -> list[dict[str, Any]]:
        """The task's held sockets, for status."""
        return [
            {
                "name": held.spec.name,
                "kind": held.spec.kind,
                "listen": held.spec.address,
                "address": held.bound,
                "fd": held.sock.fileno(),
            }
            for (owner, _), held in self._held.items()
            if owner == task
        ]

    def __len__(self) -> int:
        return len(self._held)

    def hand_over(self) -> None:
        """Leave every socket open for the image about to be exec'd, named in HELD_ENV."""
        handed = []
        for (task, _), held in self._held.items():
            fd = held.sock.detach()
            os.set_inheritable(fd, True)
            handed.append({"task": task, "fd": fd, "spec": asdict(held.spec), "file": held.file})
        self._held.clear()
        if handed:
            os.environ[HELD_ENV] = json.dumps(handed)

    def close(self) -> None:
        for key in list(self._held):
            self._close(key)

    def _close(self, key: tuple[str, str]) -> None:
        held = self._held.pop(key)
        log.info("%s: socket %s (%s) closed", key[0], held.spec.name, held.bound)
        held.sock.close()
        if held.file is not None:
            _remove_file(held.spec.path, held.file)


def _bind(task: str, spec: SocketSpec) -> Held:
    what = f"cannot listen on {spec.address} (socket {spec.name})"
    if spec.kind == TCP:
        family = socket.AF_INET6 if ":" in spec.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        if spec.kind == TCP:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if spec.reuseport:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((spec.host, spec.port))
            held = Held(spec, sock)
        else:
            held = Held(spec, sock, _bind_file(sock, spec))
        sock.listen(spec.backlog)
    except (OSError, SpawnError) as exc:
        sock.close()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SpawnError(f"{what}: {reason}") from None
    return held


def _bind_file(sock: socket.socket, spec: SocketSpec) -> tuple[int, int]:
    """Bind a unix socket at its path (a dead socket's file there is replaced; anything
    else is refused), then give the file its mode and owner."""
    path = spec.path
    with contextlib.suppress(FileNotFoundError):
        info = os.lstat(path)
        if not stat.S_ISSOCK(info.st_mode):
            raise SpawnError(f"{path} exists and is not a socket")
        if _live(path):
            raise SpawnError("another process is listening on it")
        os.unlink(path)
    sock.bind(path)
    info = os.lstat(path)
    _set_file(spec, path)
    return info.st_dev, info.st_ino


def _set_file(spec: SocketSpec, path: str) -> None:
    if spec.mode is not None:
        os.chmod(path, spec.mode)
    if spec.owner is not None or spec.group is not None:
        creds = lookup_credentials(spec.owner, spec.group)
        assert creds is not None
        uid = creds.uid if spec.owner is not None else -1
        os.chown(path, uid, creds.gid, follow_symlinks=False)


def _adjust(task: str, held: Held, spec: SocketSpec) -> None:
    """The same socket with other options: change them in place."""
    try:
        if spec.backlog != held.spec.backlog:
            held.sock.listen(spec.backlog)
        if spec.kind == UNIX and (spec.mode, spec.owner, spec.group) != (
            held.spec.mode,
            held.spec.owner,
            held.spec.group,
        ):
            _set_file(spec, spec.path)
    except (OSError, SpawnError) as exc:
        log.warning("%s: socket %s: cannot apply its new options: %s", task, spec.name, exc)
    held.spec = spec


def _live(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


def _remove_file(path: str, identity: tuple[int, int]) -> None:
    with contextlib.suppress(OSError):
        info = os.lstat(path)
        if (info.st_dev, info.st_ino) == identity:
            os.unlink(path)


def _inherited(environ: MutableMapping[str, str]) -> list[tuple[str, Held]]:
    """The sockets the image we were exec'd from held (taken out of the environment)."""
    text = environ.pop(HELD_ENV, None)
    if not text:
        return []
    found = []
    try:
        entries = json.loads(text)
    except ValueError:
        log.error("%s is not JSON: sockets handed over are lost", HELD_ENV)
        return []
    for entry in entries:
        try:
            spec = SocketSpec(**entry["spec"])
            fd = int(entry["fd"])
            sock = socket.socket(fileno=fd)
        except (KeyError, TypeError, ValueError, OSError) as exc:
            log.error("a socket handed over cannot be used: %s", exc)
            continue
        os.set_inheritable(fd, False)
        file = tuple(entry["file"]) if entry.get("file") else None
        found.append((str(entry["task"]), Held(spec, sock, file)))
    return found
