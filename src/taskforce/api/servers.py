"""Where clients find a running taskforce: the records it keeps of its own listeners.

A taskforce that serves its API writes one record (JSON: its pid, pidfile, configuration
file, the servers a client can use, best first, and the client command that reaches it):

- beside its pidfile, ``PIDFILE.server``, so that ``taskforce -p PIDFILE status`` finds
  it wherever ``settings.http`` put the socket;
- in the per-user runtime directory (``instance-PID.server``), so that a plain
  ``taskforce status`` finds the one taskforce running, whatever its pidfile.

Records are replaced atomically and removed when the service closes. A record is
believed only while its pid is alive (and, beside a pidfile, the pid holding the
pidfile), and only when it belongs to us or root: a client sends its token where the
record points. Imports stay cheap (the client reads these records).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
from dataclasses import dataclass
from typing import Any

from taskforce.runtime.own import paths

RECORD_SUFFIX = ".server"
_PREFIX = "instance-"
_MAX_RECORD = 64 * 1024


@dataclass(frozen=True, slots=True)
class ServerRecord:
    pid: int
    servers: tuple[str, ...]  # socket paths or URLs, as `--server` takes them; best first
    pidfile: str | None = None
    config: str | None = None
    command: str = ""

    def to_json(self) -> bytes:
        data = {
            "pid": self.pid,
            "pidfile": self.pidfile,
            "config": self.config,
            "servers": list(self.servers),
            "command": self.command,
        }
        return json.dumps(data, indent=1).encode() + b"\n"


def beside_pidfile(pidfile: str) -> str:
    return os.path.abspath(pidfile) + RECORD_SUFFIX


def registry() -> str:
    """The directory of this user's records (taskforce's private runtime directory)."""
    return paths.runtime_dir()


def client_command(pidfile: str | None, servers: list[str], default_socket: str) -> str:
    """The shortest client command that reaches a taskforce with these servers."""
    if pidfile is not None:
        return f"taskforce -p {_quoted(pidfile)} status"
    if servers and servers[0] == default_socket:
        return "taskforce status"
    return f"taskforce --server {_quoted(servers[0])} status" if servers else ""


def _quoted(text: str) -> str:
    import shlex  # only the server computes commands

    return shlex.quote(text)


class Published:
    """The records of one running service; `remove()` takes them back."""

    def __init__(self, record: ServerRecord) -> None:
        self.record = record
        self.paths: list[str] = []
        self.problems: list[str] = []
        targets = [beside_pidfile(record.pidfile)] if record.pidfile else []
        try:
            directory = paths.ensure_private_dir(registry())
            targets.append(os.path.join(directory, f"{_PREFIX}{record.pid}{RECORD_SUFFIX}"))
            _prune(directory)
        except (OSError, paths.UnsafePathError) as exc:
            self.problems.append(f"{registry()}: {exc}")
        for target in targets:
            try:
                _write(target, record.to_json())
                self.paths.append(target)
            except OSError as exc:
                self.problems.append(f"{target}: {exc.strerror or exc}")

    def remove(self) -> None:
        for path in self.paths:
            found = read_record(path)
            if found is not None and found.pid == self.record.pid:
                with contextlib.suppress(OSError):
                    os.unlink(path)
        self.paths = []


def _write(path: str, data: bytes) -> None:
    """Replace `path` atomically with `data` (a reader never sees half a record)."""
    temporary = f"{path}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    try:
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _prune(directory: str) -> None:
    """Forget the records of instances that died without removing theirs."""
    for name in os.listdir(directory):
        if name.startswith(_PREFIX) and name.endswith(RECORD_SUFFIX):
            pid = name[len(_PREFIX) : -len(RECORD_SUFFIX)]
            if pid.isascii() and pid.isdigit() and not pid_alive(int(pid)):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(directory, name))


def read_record(path: str) -> ServerRecord | None:
    """The record at `path`, if it is a plain file of ours (or root's) and well formed."""
    data = paths.read_small_file(path, _MAX_RECORD, trusted=True)
    if data is None:
        return None
    try:
        raw: Any = json.loads(data)
        servers = tuple(str(s) for s in raw["servers"] if isinstance(s, str) and s)
        pid = raw["pid"]
        if not isinstance(pid, int) or pid <= 0 or not servers:
            return None
        pidfile = raw.get("pidfile")
        config = raw.get("config")
        return ServerRecord(
            pid,
            servers,
            pidfile if isinstance(pidfile, str) else None,
            config if isinstance(config, str) else None,
            str(raw.get("command") or ""),
        )
    except (ValueError, KeyError, TypeError):
        return None


def registered() -> list[ServerRecord]:
    """The records of this user's live instances, by pid."""
    directory = registry()
    try:
        info = os.lstat(directory)
        names = os.listdir(directory)
    except OSError:
        return []
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        return []
    found = []
    for name in sorted(names):
        if name.startswith(_PREFIX) and name.endswith(RECORD_SUFFIX):
            record = read_record(os.path.join(directory, name))
            if record is not None and pid_alive(record.pid):
                found.append(record)
    return sorted(found, key=lambda r: r.pid)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def socket_live(path: str) -> bool:
    """Whether a process listens on the unix socket at `path`."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.setblocking(False)
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True  # listening, but its backlog is full: as good as taken
    finally:
        probe.close()
    return True
