"""Facts about the host that resolution depends on, gathered in one place.

Resolution is pure: everything it needs to know about the machine (names, ids, the
user and group databases) arrives in a :class:`HostFacts`. :meth:`HostFacts.from_system`
is the one impure function here; tests build ``HostFacts`` directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# Overrides the host name (Task_host, and Task_fqdn) that taskforce reports and resolves with.
HOST_ENV = "TASKFORCE_HOST"


@dataclass(frozen=True, slots=True)
class UserInfo:
    name: str
    uid: int
    gid: int  # primary group
    home: str = "/"  # the home directory and login shell of the user's entry
    shell: str = "/bin/sh"


@dataclass(frozen=True, slots=True)
class HostFacts:
    hostname: str  # short host name (Task_host)
    fqdn: str  # fully qualified name (Task_fqdn)
    pid: int  # taskforce's own pid (Task_ppid)
    uid: int  # taskforce's uid: Task_uid when a task sets no user
    gid: int  # taskforce's gid: Task_gid when a task sets neither user nor group
    # A name or a numeric id (int, or a string of digits) -> the entry, None if unknown.
    user_lookup: Callable[[str | int], UserInfo | None]
    group_lookup: Callable[[str | int], int | None]

    @classmethod
    def from_system(cls) -> HostFacts:
        """Read the facts from the running system.

        ``socket.getfqdn`` may consult DNS: call this once at start-up (and on an
        explicit reload), not on every resolve.
        """
        import os
        import socket

        # Several taskforces on one machine can stand for different hosts of a fleet
        # (tests, a demonstration); the name is then taken as given, without a DNS lookup.
        override = os.environ.get(HOST_ENV, "").strip()
        hostname = override or socket.gethostname()
        return cls(
            hostname=hostname.split(".", 1)[0],
            fqdn=hostname if override else _fqdn(hostname),
            pid=os.getpid(),
            uid=os.getuid(),
            gid=os.getgid(),
            user_lookup=_system_user,
            group_lookup=_system_group,
        )


def _fqdn(hostname: str) -> str:
    """socket.getfqdn, asking with bytes: with a str, Python loads the idna codec, which
    imports unicodedata and stringprep (0.3 MB of a daemon's memory) for an ASCII name."""
    import socket

    try:
        # (typeshed says str; the C function takes bytes as they are)
        primary, aliases, _ = socket.gethostbyaddr(hostname.encode())  # type: ignore[arg-type]
    except (OSError, UnicodeError):
        return hostname
    for name in (primary, *aliases):
        if "." in name:
            return str(name)
    return str(primary)


def _system_user(key: str | int) -> UserInfo | None:
    import pwd

    try:
        if isinstance(key, str):
            try:
                entry = pwd.getpwnam(key)
            except KeyError:
                # "1000" is a uid when no user has that name.
                if not key.isascii() or not key.isdigit():
                    return None
                entry = pwd.getpwuid(int(key))
        else:
            entry = pwd.getpwuid(key)
    except (KeyError, ValueError, OverflowError):
        return None
    return UserInfo(
        entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir or "/", entry.pw_shell or "/bin/sh"
    )


def _system_group(key: str | int) -> int | None:
    import grp

    try:
        if isinstance(key, str):
            try:
                return grp.getgrnam(key).gr_gid
            except KeyError:
                if not key.isascii() or not key.isdigit():
                    return None
                return grp.getgrgid(int(key)).gr_gid
        return grp.getgrgid(key).gr_gid
    except (KeyError, ValueError, OverflowError):
        return None
