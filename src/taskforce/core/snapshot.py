"""The planner's observed state as plain data, to survive a re-exec of taskforce.

A hitless self-restart (`taskforce upgrade`) hands the running processes to the new
image: they stay its children across exec(2); this snapshot tells the new image which
task instance each pid is, how it was started, and the history and counters that
status shows. Monotonic times stay valid: the clock is system-wide.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from taskforce.core.planner import Planner
from taskforce.core.sockets import SocketSpec
from taskforce.core.spec import (
    NO_CGROUP_LIMITS,
    NO_LIMITS,
    CgroupLimits,
    InstanceSpec,
    LaunchSpec,
    ProcessLimits,
)
from taskforce.core.state import ExitRecord, HistoryEntry, Instance, Phase, TaskState
from taskforce.core.vocabulary import Control

FORMAT = 1


def take(planner: Planner) -> dict[str, Any]:
    tasks = {}
    for name, state in planner.tasks.items():
        tasks[name] = {
            "generation": state.generation,
            "up_since": state.up_since,
            "history": [[h.wall, h.slot, h.kind, h.pid, h.detail] for h in state.history],
            "instances": [_instance(i) for i in state.instances.values()],
        }
    return {"format": FORMAT, "tasks": tasks}


def _instance(inst: Instance) -> dict[str, Any]:
    spec = inst.spec
    return {
        "slot": inst.slot,
        "phase": str(inst.phase),
        "pid": inst.pid,
        "started_at": inst.started_at,
        "started_wall": inst.started_wall,
        "executable": inst.executable,
        "control": inst.control,
        "failures": inst.failures,
        "failure_times": list(inst.failure_times),
        "gave_up": inst.gave_up,
        "not_before": inst.not_before,
        "starts": inst.starts,
        "ran_generation": inst.ran_generation,
        "foreign": inst.foreign,
        # A rolling restart under way goes on in the new image.
        "replaces": inst.replaces,
        "replace_request": inst.replace_request,
        "last_exit": None
        if inst.last_exit is None
        else [
            inst.last_exit.status,
            inst.last_exit.at,
            inst.last_exit.wall,
            inst.last_exit.uptime,
            inst.last_exit.expected,
            inst.last_exit.error,
            inst.last_exit.cause,
        ],
        "spec": None
        if spec is None
        else {
            "program": spec.launch.program,
            "argv": list(spec.launch.argv),
            "env": [list(kv) for kv in spec.launch.env],
            "cwd": spec.launch.cwd,
            "user": spec.launch.user,
            "group": spec.launch.group,
            "no_new_privs": spec.launch.no_new_privs,
            "sockets": [dataclasses.asdict(s) for s in spec.launch.sockets],
            "limits": _limits(spec.launch.limits),
            "cgroup": _cgroup(spec.launch.cgroup),
            "commands": {k: list(v) for k, v in spec.commands.items()},
            "pidfile": spec.pidfile,
        },
    }


def restore(planner: Planner, data: dict[str, Any]) -> list[int]:
    """Load a snapshot into a fresh planner; returns the pids of running processes.

    Only running processes and counters come back; a process that was stopping is
    finished off by the new image like any process whose task left the configuration.
    """
    if data.get("format") != FORMAT:
        raise ValueError(f"unknown snapshot format {data.get('format')!r}")
    pids = []
    for name, saved in data["tasks"].items():
        state = planner.tasks.get(name)
        if state is None:
            state = planner.tasks[name] = TaskState(name)
        state.generation = int(saved["generation"])
        state.up_since = saved["up_since"]
        state.ready_since = saved["up_since"]  # what ran before the hand-over was ready
        state.history.extend(HistoryEntry(*h) for h in saved["history"])
        for item in saved["instances"]:
            inst = _restore_instance(item)
            state.instances[inst.slot] = inst
            if inst.pid is not None:
                planner.take_over(name, inst)
                pids.append(inst.pid)
    return pids


def _restore_instance(item: dict[str, Any]) -> Instance:
    inst = Instance(int(item["slot"]))
    running = item["pid"] is not None and item["phase"] in (Phase.RUNNING, Phase.STOPPING)
    inst.phase = Phase.RUNNING if running else Phase.IDLE
    inst.pid = item["pid"] if running else None
    inst.ready = running
    inst.started_at = item["started_at"]
    inst.started_wall = item["started_wall"]
    inst.executable = item["executable"]
    control = item["control"]
    inst.control = Control(control) if control else None
    inst.failures = item["failures"]
    # Absent from the snapshots of earlier versions.
    inst.failure_times = tuple(item.get("failure_times", ()))
    inst.gave_up = bool(item.get("gave_up", False))
    inst.not_before = item["not_before"]
    inst.starts = item["starts"]
    inst.ran_generation = item["ran_generation"]
    inst.foreign = item["foreign"]
    if running:
        inst.replaces = item.get("replaces")
        inst.replace_request = item.get("replace_request")
    if item["last_exit"] is not None:
        inst.last_exit = ExitRecord(*item["last_exit"])
    spec = item["spec"]
    if spec is not None:
        launch = LaunchSpec(
            spec["program"],
            tuple(spec["argv"]),
            tuple((k, v) for k, v in spec["env"]),
            spec["cwd"],
            spec["user"],
            spec["group"],
            # (Not in the snapshots of older images.)
            bool(spec.get("no_new_privs", False)),
            tuple(SocketSpec(**s) for s in spec.get("sockets", ())),
            _restore_limits(spec.get("limits")),
            CgroupLimits(**spec["cgroup"]) if spec.get("cgroup") else NO_CGROUP_LIMITS,
        )
        commands = {k: tuple(v) for k, v in spec["commands"].items()}
        inst.spec = InstanceSpec(launch, commands, spec["pidfile"])
    return inst


# A launch's limits as the snapshot keeps them: a process taken over after an upgrade is
# compared with the configuration by its whole launch, and must not look changed.


def _limits(limits: ProcessLimits) -> dict[str, Any] | None:
    if limits == NO_LIMITS:
        return None
    return {
        "rlimits": [list(item) for item in limits.rlimits],
        "umask": limits.umask,
        "nice": limits.nice,
        "oom_score_adj": limits.oom_score_adj,
    }


def _restore_limits(saved: dict[str, Any] | None) -> ProcessLimits:
    if not saved:
        return NO_LIMITS
    rlimits = tuple((str(n), int(soft), int(hard)) for n, soft, hard in saved["rlimits"])
    return ProcessLimits(rlimits, saved["umask"], saved["nice"], saved["oom_score_adj"])


def _cgroup(limits: CgroupLimits) -> dict[str, Any] | None:
    if limits == NO_CGROUP_LIMITS:
        return None
    return {"memory": limits.memory, "cpu": limits.cpu, "pids": limits.pids}
