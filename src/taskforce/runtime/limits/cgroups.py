# Over 450 lines: one job, an instance's cgroups in v2 and v1 hierarchies, which share paths.
"""A cgroup of its own for every task instance: membership, limits, accounting, killing.

Where taskforce may create cgroups below its own, each instance gets the directory
`<taskforce's cgroup>/taskforce.<key>/<task>@<instance>` in every hierarchy it uses: the
cgroup v2 hierarchy (membership, and the controllers enabled there) and,
for the controllers v2 does not have on this host, their cgroup v1 hierarchies (memory,
pids, cpu, cpuacct, freezer). `key` comes from the process records' path, so that the
same taskforce finds the same directories after a re-exec or after being killed: the
path of an instance's cgroup follows from its task name and instance number alone.

The child is born in its v2 cgroup (clone3 CLONE_INTO_CGROUP, on the C spawn path) and
joins the others before exec (see child_setup.py): every process the task ever makes is
born inside, whatever it does to its session, parentage or environment, so
stopping an instance can kill its whole cgroup. Without a usable hierarchy one line is
logged and instances run as before (process groups, and the Task_* variables
processes/leftovers.py looks for).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass

from taskforce.core.spec import NO_CGROUP_LIMITS, CgroupLimits
from taskforce.runtime.own.paths import name_digest
from taskforce.runtime.processes.usage import GroupFiles, read_group

log = logging.getLogger("taskforce")

# The v1 controllers used where cgroup v2 does not provide them.
_V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct", "freezer")
_CPU_PERIOD_US = 100_000
# Seconds taskforce waits, as it exits, for killed processes to leave their cgroups.
_EMPTYING_TIME = 2.0
# Rounds of SIGKILL to every member where there is no freezer. Not cgroup.kill: on this
# kernel (6.18) a process later born into a cgroup through clone3 CLONE_INTO_CGROUP is
# killed at birth once the cgroup has seen a cgroup.kill (its kill sequence is compared
# with its parent's cgroup's). Nothing leaves the cgroup, so rounds end with it empty.
_KILL_ROUNDS = 20


@dataclass(frozen=True, slots=True)
class Hierarchy:
    """One mounted cgroup hierarchy, as seen from taskforce's own cgroup in it."""

    version: int  # 1 or 2
    controllers: frozenset[str]  # those taskforce uses in it
    base: str  # taskforce's directory of instance cgroups in it


@dataclass(frozen=True, slots=True)
class GroupUsage:
    cpu_seconds: float | None
    memory_bytes: int | None
    processes: int


@dataclass(frozen=True, slots=True)
class _Sources:
    """Where an instance's CPU time and memory are read: (taskforce's directory in the
    hierarchy, file), or None where it has no such cgroup."""

    cpu: tuple[str, str] | None
    memory: tuple[str, str] | None


@dataclass(slots=True)
class _Instance:
    oom_kills: int  # the cgroup's OOM kill count when its process started
    limits: CgroupLimits  # as last set
    # The hierarchies where its directory is, as far as known: bit `index` of the
    # hierarchy (an int, not a set: a set costs 216 bytes an instance, 2 MB with 10,000).
    present: int
    sources: _Sources | None = None  # found at its first reading after it was prepared
    # Where prepare() had its last process join (bits as `present`), for `watch_memory`:
    # the next one with the same limits (a restart) joins the same cgroups, their
    # directories known to be there. None: looked for afresh. Bits, not the cgroup.procs
    # paths: those are made again from them (a microsecond a restart), where keeping
    # them took 180 bytes an instance (1.7 MB with 10,000).
    joined: int | None = None
    watch_memory: bool = False


def parse_mounts(mountinfo: str) -> list[tuple[str, str, str, frozenset[str]]]:
    """(fstype, root in the hierarchy, mount point, v1 controllers) of cgroup mounts."""
    found = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        dash = fields.index("-")
        fstype = fields[dash + 1]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        options = set(fields[dash + 3].split(",")) if len(fields) > dash + 3 else set()
        controllers = frozenset(options & set(_V1_CONTROLLERS))
        found.append((fstype, _unescape(fields[3]), _unescape(fields[4]), controllers))
    return found


def _unescape(path: str) -> str:
    # mountinfo writes space, tab, newline and backslash as octal escapes.
    for code in ("\\040", "\\011", "\\012", "\\134"):
        path = path.replace(code, chr(int(code[1:], 8)))
    return path


def parse_membership(text: str) -> dict[str, str]:
    """/proc/PID/cgroup: the cgroup path by hierarchy ('' for v2, else its controllers)."""
    paths = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            paths[parts[1]] = parts[2]
    return paths


def key_for(records_path: str | None) -> str:
    """The directory below taskforce's cgroup that this taskforce's instances go in."""
    seed = records_path if records_path is not None else f"pid {os.getpid()}"
    return "taskforce." + name_digest(seed)


def group_name(task: str, slot: int) -> str:
    return f"{task}@{slot}"


class Cgroups:
    """The cgroups of one taskforce's task instances (none: `available` is False)."""

    def __init__(self, hierarchies: list[Hierarchy]) -> None:
        self.hierarchies = hierarchies
        self._instances: dict[tuple[str, int], _Instance] = {}
        self._warned: set[tuple[str, str]] = set()
        # The instance directories in each hierarchy before this taskforce made any (an
        # earlier image's): listed once, so that a start looks up nothing in the cgroup
        # file systems (a lookup there waits on every cgroup made or removed on the host).
        self._listed: list[set[str]] | None = None
        # The sources of instances taskforce did not prepare (adopted, taken over), and
        # every distinct one once: instances share them.
        self._adopted: dict[tuple[str, int], _Sources] = {}
        self._distinct: dict[_Sources, _Sources] = {}
        v2 = [h for h in hierarchies if h.version == 2]
        # Where membership is read and the kill done: v2 if there, else a v1 freezer.
        self._members = (
            v2[0]
            if v2
            else next(
                (h for h in hierarchies if "freezer" in h.controllers),
                hierarchies[0] if hierarchies else None,
            )
        )

    @property
    def available(self) -> bool:
        return self._members is not None

    @classmethod
    def discover(
        cls,
        records_path: str | None,
        mountinfo: str = "/proc/self/mountinfo",
        membership: str = "/proc/self/cgroup",
    ) -> Cgroups:
        """The hierarchies taskforce may create its instances' cgroups in; logs one line."""
        try:
            with open(mountinfo) as f:
                mounts = parse_mounts(f.read())
            with open(membership) as f:
                own = parse_membership(f.read())
        except OSError:
            mounts, own = [], {}
        key = key_for(records_path)
        hierarchies: list[Hierarchy] = []
        problems: list[str] = []
        v2_controllers: frozenset[str] = frozenset()
        for fstype, root, mount, controllers in sorted(mounts, key=lambda m: m[0] != "cgroup2"):
            if fstype == "cgroup2":
                if any(h.version == 2 for h in hierarchies):
                    continue
                found = _prepare_base(mount, root, own.get(""), key, problems)
                if found is not None:
                    v2_controllers = _enable_v2_controllers(found)
                    hierarchies.append(Hierarchy(2, v2_controllers, found))
                continue
            wanted = set(controllers - v2_controllers)
            wanted -= {c for h in hierarchies for c in h.controllers}
            if hierarchies and hierarchies[0].version == 2:
                wanted.discard("freezer")  # v2 membership is enough to find every member
            if not wanted:
                continue
            path = next(
                (p for names, p in own.items() if controllers <= set(names.split(","))), None
            )
            found = _prepare_base(mount, root, path, key, problems)
            if found is not None:
                hierarchies.append(Hierarchy(1, frozenset(wanted), found))
        cgroups = cls(hierarchies)
        if not cgroups.available:
            why = "; ".join(problems) or "no cgroup hierarchy is mounted"
            log.warning(
                "tasks run without cgroups of their own (%s): limits memory, cpu and pids do "
                "not apply, and only their process groups are stopped",
                why,
            )
        else:
            log.info(
                "each task instance runs in a cgroup of its own, below %s",
                ", ".join(
                    f"{h.base} ({','.join(sorted(h.controllers)) or 'v2'})" for h in hierarchies
                ),
            )
        return cgroups

    # ----- one instance ---------------------------------------------------------------

    def directories(self, task: str, slot: int) -> Iterator[tuple[Hierarchy, str]]:
        name = group_name(task, slot)
        for hierarchy in self.hierarchies:
            yield hierarchy, os.path.join(hierarchy.base, name)

    def _needed(self, hierarchy: Hierarchy, limits: CgroupLimits, watch_memory: bool) -> bool:
        """Whether an instance joins `hierarchy`: the v2 one (or, without it, the one
        for membership) always; a v1 one only for a limit, or memory, it is asked for.
        Each cgroup made costs its start time (a v1 memory cgroup most)."""
        if hierarchy is self._members:
            return True
        wanted = {
            name
            for name, value in (
                ("memory", limits.memory),
                ("pids", limits.pids),
                ("cpu", limits.cpu),
            )
            if value is not None
        }
        if watch_memory:
            wanted.add("memory")
        if self._members is not None and self._members.version == 1:
            wanted.add("cpuacct")  # CPU time: v2 counts it in cpu.stat without a controller
        return bool(wanted & hierarchy.controllers)

    def prepare(
        self, task: str, slot: int, limits: CgroupLimits, watch_memory: bool = False
    ) -> tuple[str, ...]:
        """Make the instance's cgroups (or find them) and set their limits: the
        cgroup.procs files its next process joins. `watch_memory`: it needs a memory
        cgroup though it has no memory limit (memory_restart). Raises OSError."""
        known = self._instances.get((task, slot))
        if (
            known is not None
            and known.joined is not None
            and known.limits == limits
            and known.watch_memory == watch_memory
        ):
            # Made for its previous process: the directories are there, the limits set.
            known.oom_kills = self.oom_kills(task, slot)
            joined = known.joined
            return tuple(
                os.path.join(path, "cgroup.procs")
                for index, (_, path) in enumerate(self.directories(task, slot))
                if joined >> index & 1
            )
        procs = []
        joined = 0
        present = known.present if known is not None else self._found(group_name(task, slot))
        # Where a v1 memory cgroup is reused, each start empties it (see below).
        again = True
        reused = False
        for index, (hierarchy, path) in enumerate(self.directories(task, slot)):
            bit = 1 << index
            if not self._needed(hierarchy, limits, watch_memory):
                if present & bit:
                    present &= ~bit
                    _remove(path)  # one an earlier process of the instance needed, if empty
                continue
            fresh = False
            if not present & bit:
                try:
                    os.mkdir(path)
                    fresh = True  # its limits are the kernel's defaults: none
                except FileExistsError:
                    pass
                present |= bit
            reused = reused or not fresh
            if hierarchy.version == 1 and "memory" in hierarchy.controllers:
                again = False
            if not fresh and hierarchy.version == 1 and "memory" in hierarchy.controllers:
                # What earlier processes left charged (page cache) is not the new one's.
                with contextlib.suppress(OSError):
                    if not _pids(os.path.join(path, "cgroup.procs")):
                        _write(os.path.join(path, "memory.force_empty"), "0")
            if fresh and limits == NO_CGROUP_LIMITS:
                pass
            elif fresh or known is None or known.limits != limits:
                self._set_limits(task, hierarchy, path, limits)
            procs.append(os.path.join(path, "cgroup.procs"))
            joined |= bit
        instance = _Instance(0, limits, present, None, joined if again else None, watch_memory)
        self._instances[task, slot] = instance
        # A cgroup just made has seen no OOM kill.
        instance.oom_kills = self.oom_kills(task, slot) if reused else 0
        return tuple(procs)

    def forget(self, task: str, slot: int) -> None:
        """Look for the instance's directories afresh at its next start (its process
        could not start: one may have been removed behind taskforce's back)."""
        known = self._instances.get((task, slot))
        if known is not None:
            known.joined = None
            known.present = sum(
                1 << index
                for index, (_, path) in enumerate(self.directories(task, slot))
                if os.path.isdir(path)
            )

    def _found(self, name: str) -> int:
        """The hierarchies in which an instance directory `name` was there before us (bit
        `index` of each)."""
        if self._listed is None:
            self._listed = []
            for hierarchy in self.hierarchies:
                try:
                    with os.scandir(hierarchy.base) as entries:
                        self._listed.append({e.name for e in entries if e.is_dir()})
                except OSError:
                    self._listed.append(set())
        return sum(1 << index for index, names in enumerate(self._listed) if name in names)

    def _set_limits(self, task: str, hierarchy: Hierarchy, path: str, limits: CgroupLimits) -> None:
        v2 = hierarchy.version == 2
        settings: list[tuple[str, str, object]] = []
        if "memory" in hierarchy.controllers:
            memory = limits.memory
            settings.append(
                ("memory", "memory.max" if v2 else "memory.limit_in_bytes",
                 memory if memory is not None else ("max" if v2 else -1))
            )  # fmt: skip
        if "pids" in hierarchy.controllers:
            settings.append(("pids", "pids.max", limits.pids if limits.pids is not None else "max"))
        if "cpu" in hierarchy.controllers:
            quota = None if limits.cpu is None else max(1000, round(limits.cpu * _CPU_PERIOD_US))
            if v2:
                settings.append(("cpu", "cpu.max", f"{quota or 'max'} {_CPU_PERIOD_US}"))
            else:
                settings.append(("cpu", "cpu.cfs_period_us", _CPU_PERIOD_US))
                settings.append(("cpu", "cpu.cfs_quota_us", -1 if quota is None else quota))
        for _, name, value in settings:
            try:
                _write(os.path.join(path, name), str(value))
            except OSError as exc:
                log.warning("%s: cannot set %s to %s: %s", task, name, value, exc.strerror or exc)
        for controller, value in (
            ("memory", limits.memory),
            ("cpu", limits.cpu),
            ("pids", limits.pids),
        ):
            if (
                value is not None
                and not self._has(controller)
                and (task, controller) not in self._warned
            ):
                self._warned.add((task, controller))
                log.warning(
                    "%s: its %s limit does not apply: no %s cgroup controller is available",
                    task,
                    controller,
                    controller,
                )

    def _has(self, controller: str) -> bool:
        return any(controller in h.controllers for h in self.hierarchies)

    def _dir(self, controller: str | None, task: str, slot: int) -> tuple[Hierarchy, str] | None:
        """The instance's cgroup for membership (None) or with `controller`, if it has one."""
        for index, hierarchy in enumerate(self.hierarchies):
            if controller is None and hierarchy is self._members:
                return hierarchy, os.path.join(hierarchy.base, group_name(task, slot))
            if controller is not None and controller in hierarchy.controllers:
                # Only where it needed one (see _needed): a v1 one exists or not.
                if hierarchy.version == 2 or self._has_dir(index, hierarchy, task, slot):
                    return hierarchy, os.path.join(hierarchy.base, group_name(task, slot))
                return None
        return None

    def _has_dir(self, index: int, hierarchy: Hierarchy, task: str, slot: int) -> bool:
        known = self._instances.get((task, slot))
        if known is None:
            # Not started by this taskforce: look.
            return os.path.isdir(os.path.join(hierarchy.base, group_name(task, slot)))
        return bool(known.present & 1 << index)

    def members(self, task: str, slot: int) -> list[int]:
        """The pids of the processes in the instance's cgroup."""
        found = self._dir(None, task, slot)
        if found is None:
            return []
        return _pids(os.path.join(found[1], "cgroup.procs"))

    def signal(self, task: str, slot: int, signum: int, signalled: int | None = None) -> int:
        """Send `signum` to every process of the instance's cgroup but `signalled` and its
        process group, which were sent it already (a second SIGTERM means "at once,
        without finishing" to many daemons); how many got it."""
        sent = 0
        for pid in self.members(task, slot):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if signalled is not None and signalled in (pid, os.getpgid(pid)):
                    continue
                os.kill(pid, signum)
                sent += 1
        return sent

    def kill(self, task: str, slot: int) -> int:
        """SIGKILL every process of the instance's cgroup, those it forks meanwhile too.
        Returns how many there were."""
        found = self._dir(None, task, slot)
        if found is None:
            return 0
        hierarchy, path = found
        count = len(_pids(os.path.join(path, "cgroup.procs")))
        if not count:
            return 0
        frozen = "freezer" in hierarchy.controllers and _freeze(path)
        try:
            for _ in range(1 if frozen else _KILL_ROUNDS):
                pids = _pids(os.path.join(path, "cgroup.procs"))
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
                if not pids:
                    break
        finally:
            if frozen:
                # A frozen process dies of its SIGKILL once thawed.
                with contextlib.suppress(OSError):
                    _write(os.path.join(path, "freezer.state"), "THAWED")
        return count

    def oom_kills(self, task: str, slot: int) -> int:
        """How many processes the kernel's OOM killer has killed in the instance's cgroup."""
        found = self._dir("memory", task, slot)
        if found is None:
            return 0
        hierarchy, path = found
        name = "memory.events" if hierarchy.version == 2 else "memory.oom_control"
        try:
            with open(os.path.join(path, name)) as f:
                for line in f:
                    if line.startswith("oom_kill "):
                        return int(line.split()[1])
        except (OSError, ValueError):
            pass
        return 0

    def out_of_memory(self, task: str, slot: int) -> str | None:
        """Why the instance's process died, if the OOM killer was at work in its cgroup
        since it started: words for its exit."""
        known = self._instances.get((task, slot))
        kills = self.oom_kills(task, slot)
        before = known.oom_kills if known is not None else 0
        if kills <= before:
            return None
        if known is not None:
            known.oom_kills = kills
        limit = known.limits.memory if known is not None else None
        count = kills - before
        kills_text = f"{count} OOM kill{'s' * (count > 1)} in its cgroup"
        if limit is None:
            return f"out of memory: the kernel's OOM killer was at work ({kills_text})"
        return (
            f"out of memory: its cgroup's memory limit of {_size(limit)} was reached ({kills_text})"
        )

    def usage(self, task: str, slot: int) -> GroupUsage | None:
        """The CPU time, memory and process count of the instance's cgroup."""
        files = self.usage_files(task, slot)
        return None if files is None else GroupUsage(*read_group(files))

    def usage_files(self, task: str, slot: int) -> GroupFiles | None:
        """Where the instance's usage is read (processes/usage.py reads it): a status
        request reads this for every instance, so no directory is looked up at each
        reading (where they are was found once)."""
        members = self._members
        if members is None:
            return None
        sources = self._sources_of(task, slot)
        return GroupFiles(
            group_name(task, slot), sources.cpu, sources.memory, (members.base, "cgroup.procs")
        )

    def _sources_of(self, task: str, slot: int) -> _Sources:
        """Where the instance's usage is read: looked up at its first reading since
        `prepare` made its cgroups (a v1 one exists only where it was needed)."""
        known = self._instances.get((task, slot))
        found = self._adopted.get((task, slot)) if known is None else known.sources
        if found is not None:
            return found
        cpu: tuple[str, str] | None = None
        at = self._dir("cpuacct", task, slot)
        if at is not None:
            cpu = (at[0].base, "cpuacct.usage")
        elif self._members is not None and self._members.version == 2:
            cpu = (self._members.base, "cpu.stat")
        memory: tuple[str, str] | None = None
        at = self._dir("memory", task, slot)
        if at is not None:
            memory = (
                at[0].base,
                "memory.current" if at[0].version == 2 else "memory.usage_in_bytes",
            )
        sources = _Sources(cpu, memory)
        found = self._distinct.setdefault(sources, sources)
        if known is None:
            self._adopted[task, slot] = found
        else:
            known.sources = found
        return found

    def memory_file(self, task: str, slot: int) -> tuple[int, str] | None:
        """(version, directory) of the instance's memory cgroup, if there is one."""
        found = self._dir("memory", task, slot)
        return None if found is None else (found[0].version, found[1])

    # ----- all of them ----------------------------------------------------------------

    def remove_all(self) -> None:
        """At a stop: remove every instance's cgroup, killing what is left in it first.

        Most are empty (their process exited, and what it left was killed then): those
        are removed at once, without reading their members (rmdir fails on a cgroup
        with processes in it)."""
        busy = []
        for hierarchy in self.hierarchies:
            with contextlib.suppress(OSError):
                for entry in os.scandir(hierarchy.base):
                    if not entry.is_dir():
                        continue
                    try:
                        os.rmdir(entry.path)
                        continue
                    except OSError:
                        busy.append(entry.path)
                    task, _, slot = entry.name.rpartition("@")
                    if hierarchy is self._members and task and slot.isdigit():
                        self.kill(task, int(slot))
        # SIGKILL takes a moment to end a process, and a cgroup with one left cannot go.
        deadline = time.monotonic() + _EMPTYING_TIME
        for path in busy:
            procs = os.path.join(path, "cgroup.procs")
            while _pids(procs) and time.monotonic() < deadline:
                time.sleep(0.005)
            _remove(path)
        for hierarchy in self.hierarchies:
            _remove(hierarchy.base)


def _prepare_base(
    mount: str, root: str, own: str | None, key: str, problems: list[str]
) -> str | None:
    """taskforce's directory in a hierarchy (made if need be), or None if it cannot be."""
    if own is None:
        return None
    if own != root and not own.startswith(root.rstrip("/") + "/"):
        problems.append(f"{mount}: taskforce's cgroup {own} is not below the mount")
        return None
    inside = own[len(root.rstrip("/")) :].lstrip("/")
    base = os.path.join(mount, inside, key)
    try:
        os.mkdir(base)
    except FileExistsError:
        pass
    except OSError as exc:
        problems.append(f"cannot create {base}: {exc.strerror or exc}")
        return None
    return base


def _enable_v2_controllers(base: str) -> frozenset[str]:
    """The memory, pids and cpu controllers enabled for the instances below `base`, as far
    as the parent cgroup lets them be (a parent holding processes may not, by v2's rules)."""
    enabled = set()
    parent = os.path.dirname(base)
    offered = _controllers(base) or set()
    # A write to cgroup.subtree_control waits on the kernel's cgroup lock (a tenth of a
    # second each on a busy host): none where nothing would change, and the parent is not
    # asked for a controller it has not got (that fails).
    parents = _controllers(parent)
    already = _controllers(base, "cgroup.subtree_control") or set()
    for controller in ("memory", "pids", "cpu"):
        if controller in already:  # (a taskforce before this one's, as after a re-exec)
            enabled.add(controller)
            continue
        if controller not in offered and (parents is None or controller in parents):
            # Perhaps the parent offers it without having passed it down yet.
            with contextlib.suppress(OSError):
                _write(os.path.join(parent, "cgroup.subtree_control"), f"+{controller}")
                offered.add(controller)
        if controller in offered:
            with contextlib.suppress(OSError):
                _write(os.path.join(base, "cgroup.subtree_control"), f"+{controller}")
                enabled.add(controller)
    return frozenset(enabled)


def _controllers(group: str, file: str = "cgroup.controllers") -> set[str] | None:
    """The controllers a v2 cgroup has (its parent passed down), or has passed down
    (`file` cgroup.subtree_control); None if unreadable."""
    try:
        with open(os.path.join(group, file)) as f:
            return set(f.read().split())
    except OSError:
        return None


def _freeze(path: str) -> bool:
    """Freeze a v1 freezer cgroup: no process in it forks or runs meanwhile."""
    state = os.path.join(path, "freezer.state")
    try:
        _write(state, "FROZEN")
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            with open(state) as f:
                if f.read().strip() == "FROZEN":
                    return True
            os.sched_yield()
    except OSError:
        return False
    return True  # still freezing: killing now does no harm


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _pids(procs: str) -> list[int]:
    # os.open and os.read: a third of what open() costs, read at every exit of a stop.
    try:
        fd = os.open(procs, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return [int(pid) for pid in b"".join(chunks).split()]
    except (OSError, ValueError):
        return []
    finally:
        os.close(fd)


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.rmdir(path)


def _size(value: int) -> str:
    for unit, size in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if value >= size and value % size == 0:
            return f"{value // size}{unit}"
    return f"{value} bytes"
