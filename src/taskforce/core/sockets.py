"""Listening sockets that taskforce holds for a task (its `sockets`), as resolved.

taskforce binds each one itself and passes it to every process of the task by the systemd
socket-activation convention (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES, descriptors from 3 in
the order written). Holding them is the runtime's job (:mod:`taskforce.runtime.processes.sockets`);
here is only what a socket is, and which changes to one need a new socket.
"""

from __future__ import annotations

from dataclasses import dataclass

TCP = "tcp"
UNIX = "unix"

# The first descriptor passed (0, 1 and 2 are stdio), as sd_listen_fds(3) expects.
FIRST_FD = 3


@dataclass(frozen=True, slots=True)
class SocketSpec:
    name: str  # LISTEN_FDNAMES entry; unique within its task
    kind: str  # TCP or UNIX
    host: str = ""  # TCP: the address to bind ("" or "0.0.0.0": all IPv4, "::": all)
    port: int = 0  # TCP: 0 lets the kernel choose (status shows the port bound)
    path: str = ""  # UNIX: the socket file
    backlog: int = 128
    reuseport: bool = False  # SO_REUSEPORT (TCP)
    mode: int | None = None  # UNIX: the socket file's permissions
    owner: str | int | None = None  # UNIX: the socket file's owner and group
    group: str | int | None = None

    @property
    def address(self) -> str:
        """As written in a configuration: host:port, [v6]:port, or the path."""
        if self.kind == UNIX:
            return self.path
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def same_socket(self, other: SocketSpec) -> bool:
        """Whether a socket bound for `other` serves as one for this spec.

        The backlog and a unix socket's mode and owner are changed on the socket (or its
        file) as it is; what it is bound to, and how, needs a new one.
        """
        return (self.kind, self.host, self.port, self.path, self.reuseport) == (
            other.kind,
            other.host,
            other.port,
            other.path,
            other.reuseport,
        )


def activation_env(sockets: tuple[SocketSpec, ...], pid: str) -> tuple[tuple[str, str], ...]:
    """The environment that tells a process about its sockets (`pid`: its own, or the
    Task_pid marker the spawn code replaces with it)."""
    if not sockets:
        return ()
    return (
        ("LISTEN_FDS", str(len(sockets))),
        ("LISTEN_FDNAMES", ":".join(s.name for s in sockets)),
        ("LISTEN_PID", pid),
    )
