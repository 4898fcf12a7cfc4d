"""At start-up: recognise task processes that outlived an earlier taskforce.

A process is taken as ours only on evidence another user cannot forge. Three sources:
the process records the earlier taskforce kept (pid and start time, so a recycled pid is
never mistaken for one of ours); the task processes it started after it last wrote its
records (it was killed in between), recognised by the environment taskforce gives each
one (Task_name, Task_instance, Task_pid its own pid, Task_ppid a pid the records name, of
a taskforce that is gone: not another taskforce's that died too) and their exact command
line, but only when they run as the task's user and started after the earlier taskforce
did (anyone can put Task_* variables in an environment); and the pidfiles of nowait and
adopt tasks (checked against the task's program). What is found is adopted (adopt tasks),
stopped and started afresh (wait and nowait tasks), or, when no task claims it any more,
terminated.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

from taskforce.core.planner import Planner
from taskforce.core.spec import LaunchSpec
from taskforce.core.vocabulary import DAEMON, Control
from taskforce.runtime.processes.identity import (
    identify,
    read_pidfile,
    real_uid,
    runs_program,
    same_process,
)
from taskforce.runtime.processes.records import Earlier
from taskforce.runtime.processes.spawn import SpawnError, find_program, lookup_credentials

log = logging.getLogger("taskforce")

LEFTOVER = "left running by an earlier taskforce"


@dataclass(frozen=True, slots=True)
class Found:
    task: str
    slot: int
    pid: int
    leftover: str | None  # None: adopt and keep; else stop it, with this reason


def recover(planner: Planner, earlier: Earlier | None) -> tuple[list[Found], list[int]]:
    """(processes for the planner to take charge of, stray pids to terminate).

    `earlier`: what an earlier taskforce that did not stop cleanly left; it may have
    died with processes not yet recorded, so they are looked for through /proc (reading
    every process's environment: costly on a busy host, so skipped when it is known that
    the last one stopped cleanly, `earlier` None).
    """
    found: dict[tuple[str, int], Found] = {}
    claimed: set[int] = set()
    strays: list[int] = []
    desired = planner.desired.tasks
    records = earlier.processes if earlier is not None else []
    since = earlier.started if earlier is not None else None
    parents = earlier.pids if earlier is not None else None
    for record in records:
        if planner.owner(record.pid) is not None:
            continue  # already ours (handed over by a re-exec)
        identity = identify(record.pid)
        if identity is None or not same_process(identity, record.start_ticks):
            continue  # gone, or the pid now belongs to someone else: leave it alone
        spec = desired.get(record.task)
        if spec is None or record.slot >= spec.count or record.pid in claimed:
            strays.append(record.pid)
            continue
        found[(record.task, record.slot)] = _found(
            spec.control, record.task, record.slot, record.pid
        )
        claimed.add(record.pid)
    unrecorded = _unrecorded(planner, claimed, since, parents) if since is not None else ()
    for task, slot, orphan in unrecorded:
        spec = desired[task]
        if (task, slot) in found:
            strays.append(orphan)  # a second process for one instance: never two at once
            continue
        found[(task, slot)] = _found(spec.control, task, slot, orphan)
        claimed.add(orphan)
    for name, spec in desired.items():
        if spec.control not in DAEMON:
            continue  # a pidfile alone is no evidence: anyone may name any process in one
        for slot, instance in enumerate(spec.instances):
            state = planner.tasks.get(name)
            running = state is not None and slot in state.instances and state.instances[slot].pid
            if (name, slot) in found or instance.pidfile is None or running:
                continue
            pid = read_pidfile(instance.pidfile)
            if pid is None or pid in claimed or planner.owner(pid) is not None:
                continue
            identity = identify(pid)
            if identity is None:
                continue
            try:
                program = find_program(instance.launch.program, dict(instance.launch.env))
            except SpawnError:
                continue
            if not runs_program(identity, program, instance.launch.argv):
                log.warning(
                    "%s[%d]: pidfile %s names pid %d, which does not run %s: leaving it alone",
                    name,
                    slot,
                    instance.pidfile,
                    pid,
                    program,
                )
                continue
            found[(name, slot)] = _found(spec.control, name, slot, pid)
            claimed.add(pid)
    return list(found.values()), strays


def _unrecorded(
    planner: Planner, claimed: set[int], since: int, earlier: tuple[int, ...] | None
) -> Iterator[tuple[str, int, int]]:
    """(task, slot, pid) of task processes an earlier taskforce, started at `since`
    (clock ticks) as one of the pids `earlier` (None: unknown), started but had not yet
    recorded when it died: one pass over /proc, reading environments."""
    desired = planner.desired.tasks
    if not desired:
        return
    us = str(os.getpid())
    try:
        entries = os.listdir("/proc")
    except OSError:
        return
    for entry in entries:
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid in claimed or planner.owner(pid) is not None:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        if f"Task_pid={entry}".encode() not in raw.split(b"\0"):
            continue  # not a process taskforce started (a descendant, or a stranger)
        env = dict(
            item.decode(errors="replace").split("=", 1) for item in raw.split(b"\0") if b"=" in item
        )
        task, instance, parent = (
            env.get("Task_name"),
            env.get("Task_instance"),
            env.get("Task_ppid"),
        )
        spec = desired.get(task or "")
        if spec is None or instance is None or not instance.isdigit() or parent in (None, us):
            continue
        slot = int(instance)
        if slot >= spec.count or not parent or not parent.isdigit():
            continue
        if earlier is not None and int(parent) not in earlier:
            continue  # another taskforce's (it died too): the same task names, not ours
        identity = identify(pid)
        launch = spec.instances[slot].launch
        if identity is None or identity.argv != launch.argv:
            continue  # not (or no longer) the command this task runs
        parent_identity = identify(int(parent))
        if parent_identity is not None and parent_identity.start_ticks <= identity.start_ticks:
            # Its taskforce lives: another instance's, not ours to take. A process that
            # started after it cannot be its taskforce: the pid was used again.
            continue
        if identity.start_ticks < since or real_uid(pid) != _task_uid(launch):
            continue  # the variables are forged: not started by that taskforce for the task
        yield spec.name, slot, pid


def _task_uid(launch: LaunchSpec) -> int | None:
    """The uid the task's processes run as; None if its user is unknown (none ran)."""
    try:
        credentials = lookup_credentials(launch.user, launch.group)
    except SpawnError:
        return None
    return os.getuid() if credentials is None else credentials.uid


def _found(control: Control, task: str, slot: int, pid: int) -> Found:
    if control in (Control.ADOPT, Control.ONCE, Control.EVENT):
        return Found(task, slot, pid, None)
    return Found(task, slot, pid, LEFTOVER)
