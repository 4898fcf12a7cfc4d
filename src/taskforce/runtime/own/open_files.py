"""taskforce's own open file limit: raised at start, put back for its tasks and re-exec.

systemd and most shells give a soft RLIMIT_NOFILE of 1024 under a far higher hard limit:
programs that need more are to raise it themselves, and to put it back for the programs
they start (some still use select(), which breaks past 1024). taskforce needs more when it
runs many tasks (a pipe or two each) while clients hold connections, so it raises its
soft limit to the hard one at start; its tasks get the limit it was given.

The HTTP service, the one place where strangers make taskforce open descriptors, keeps
out of a reserve at the top of the range (`in_reserve`), so that whatever clients do,
starting tasks, capturing their output and writing records still find descriptors.
"""

from __future__ import annotations

import resource

# Past this, a raised limit only makes loops that close every descriptor slower.
_CEILING = 1 << 20

_given: tuple[int, int] | None = None  # the limit taskforce was started with, if raised


def raise_open_files() -> None:
    """Raise the soft limit to the hard one (at most _CEILING); remember the one given."""
    global _given
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _CEILING if hard == resource.RLIM_INFINITY else min(hard, _CEILING)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError):
            return
        if _given is None:
            _given = (soft, hard)


def for_children() -> tuple[int, int] | None:
    """The limit processes we start get back (None: ours is the one we were given)."""
    return _given


def restore_open_files() -> None:
    """Put back the limit we were given (before re-executing: the new image raises it
    again, and knows then what to give its tasks)."""
    global _given
    if _given is not None:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, _given)
        except (OSError, ValueError):
            return
        _given = None


def reserve(soft: int) -> int:
    """How many descriptors below the soft limit the HTTP service leaves alone."""
    return max(32, soft // 8)


def in_reserve(fd: int) -> bool:
    """Whether descriptor `fd`, just opened for a client, lies in the reserve: the kernel
    gives the lowest free number, so all below it are taken."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return False
    return fd >= soft - reserve(soft)
