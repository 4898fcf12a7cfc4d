"""What a task's process is given between fork and exec: its cgroups and its limits.

Both spawn paths apply the same :class:`ChildSetup`: the C one (_syscalls.c) from the
tuple `for_c` gives, the Python fork path through :func:`apply` in the child. Order
matters, and is the same on both: the cgroups are joined first (no code of the task ever
runs outside them), the limits are set before the credentials change (raising a hard
limit, a negative nice and a lower oom_score_adj need privileges the task's user may lack).
"""

from __future__ import annotations

import errno
import os
import resource
from collections.abc import Sequence
from dataclasses import dataclass

from taskforce.core.spec import NO_LIMITS, UNLIMITED, ProcessLimits
from taskforce.runtime.own import open_files

# `limits` keys -> resource constants (those this platform has).
_RESOURCES: dict[str, int] = {
    name: getattr(resource, constant)
    for name, constant in (
        ("as", "RLIMIT_AS"),
        ("core", "RLIMIT_CORE"),
        ("cpu_time", "RLIMIT_CPU"),
        ("data", "RLIMIT_DATA"),
        ("fsize", "RLIMIT_FSIZE"),
        ("locks", "RLIMIT_LOCKS"),
        ("memlock", "RLIMIT_MEMLOCK"),
        ("msgqueue", "RLIMIT_MSGQUEUE"),
        ("nofile", "RLIMIT_NOFILE"),
        ("nproc", "RLIMIT_NPROC"),
        ("rss", "RLIMIT_RSS"),
        ("rtprio", "RLIMIT_RTPRIO"),
        ("rttime", "RLIMIT_RTTIME"),
        ("sigpending", "RLIMIT_SIGPENDING"),
        ("stack", "RLIMIT_STACK"),
    )
    if hasattr(resource, constant)
}


class SetupError(Exception):
    """A limit this platform does not have."""


@dataclass(frozen=True, slots=True)
class Rlimit:
    name: str
    resource: int
    soft: int  # resource.RLIM_INFINITY for none
    hard: int
    strict: bool  # the task asked for it: failing to set it fails the start


@dataclass(frozen=True, slots=True)
class ChildSetup:
    cgroups: tuple[str, ...] = ()  # cgroup.procs files to join
    rlimits: tuple[Rlimit, ...] = ()
    umask: int | None = None
    nice: int | None = None
    oom_score_adj: int | None = None

    def for_c(
        self,
    ) -> tuple[list[bytes], list[tuple[int, int, int, bool]], int, int | None, bytes | None]:
        """The setup argument of _syscalls.spawn (-1 there means unlimited)."""
        return (
            [os.fsencode(path) for path in self.cgroups],
            [(r.resource, _c_limit(r.soft), _c_limit(r.hard), r.strict) for r in self.rlimits],
            -1 if self.umask is None else self.umask,
            self.nice,
            None if self.oom_score_adj is None else str(self.oom_score_adj).encode(),
        )

    def failure(self, step: str, index: int) -> str:
        """Words for the C child's failure at `step` ("cgroup", "rlimit") and `index`."""
        if step == "cgroup":
            return f"joining the cgroup {os.path.dirname(self.cgroups[index])}"
        if step == "rlimit":
            return _setting(self.rlimits[index])
        if step == "nice":
            return f"setting nice {self.nice}"
        return f"setting oom_score_adj {self.oom_score_adj}"


def setup_for(process_limits: ProcessLimits, cgroups: Sequence[str] = ()) -> ChildSetup:
    """The setup of a task process: `process_limits` over the open file limit taskforce
    was given (it raised its own), joining the `cgroups` (cgroup.procs files)."""
    wanted: dict[int, Rlimit] = {}
    given = open_files.for_children()
    if given is not None:
        nofile = resource.RLIMIT_NOFILE
        wanted[nofile] = Rlimit("nofile", nofile, *given, strict=False)
    for name, soft, hard in process_limits.rlimits:
        number = _RESOURCES.get(name)
        if number is None:
            raise SetupError(f"this system has no rlimit {name!r}")
        wanted[number] = Rlimit(name, number, _limit(soft), _limit(hard), strict=True)
    if not wanted and not cgroups and process_limits is NO_LIMITS:
        return NO_SETUP
    return ChildSetup(
        tuple(cgroups),
        tuple(wanted.values()),
        process_limits.umask,
        process_limits.nice,
        process_limits.oom_score_adj,
    )


NO_SETUP = ChildSetup()


class SetupStepError(Exception):
    """A step of :func:`apply` failed: `step` in words, and the error."""

    def __init__(self, step: str, cause: BaseException) -> None:
        super().__init__(step)
        self.step = step
        self.cause = cause


def apply(setup: ChildSetup) -> None:  # pragma: no cover - runs in the fork path's child
    """In the child, before its credentials change: the setup, in the C path's order.
    Raises SetupStepError."""
    step = "preparing"
    try:
        for index in range(len(setup.cgroups)):
            step = setup.failure("cgroup", index)
            _write(setup.cgroups[index], b"0")
        for item in setup.rlimits:
            step = _setting(item)
            try:
                resource.setrlimit(item.resource, (item.soft, item.hard))
            except ValueError as exc:
                # Python words EPERM and EINVAL its own way: the C path's words instead.
                if item.strict:
                    raising = "raise" in str(exc)
                    code = errno.EPERM if raising else errno.EINVAL
                    raise OSError(code, os.strerror(code)) from None
            except OSError:
                if item.strict:
                    raise
        if setup.umask is not None:
            os.umask(setup.umask)
        if setup.nice is not None:
            step = setup.failure("nice", 0)
            os.setpriority(os.PRIO_PROCESS, 0, setup.nice)
        if setup.oom_score_adj is not None:
            step = setup.failure("oom_score_adj", 0)
            _write("/proc/self/oom_score_adj", str(setup.oom_score_adj).encode())
    except (OSError, ValueError) as exc:
        raise SetupStepError(step, exc) from None


def _write(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _setting(item: Rlimit) -> str:
    return f"setting the {item.name} limit to {_show(item.soft)}:{_show(item.hard)}"


def _show(value: int) -> str:
    return "unlimited" if value == resource.RLIM_INFINITY else str(value)


def _limit(value: int) -> int:
    return resource.RLIM_INFINITY if value == UNLIMITED else value


def _c_limit(value: int) -> int:
    return -1 if value == resource.RLIM_INFINITY else value
