"""Processes as the kernel shows them in /proc: never through a shell or `ps`."""

from __future__ import annotations

import contextlib
import os
import signal


def processes_with_marker(marker: str) -> list[int]:
    """Pids of live processes whose environment carries TF_TEST_MARKER=marker."""
    needle = f"TF_TEST_MARKER={marker}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def kill_marked(marker: str) -> list[int]:
    """SIGKILL every process marked with `marker`; the pids it signalled."""
    pids = processes_with_marker(marker)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return pids


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state is [0], ppid [1])."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_state(pid: int) -> str | None:
    """The state letter of a process (R running, S asleep of its own accord, D in the
    kernel, Z zombie...); None once it is gone."""
    fields = _stat_fields(pid)
    return fields[0] if fields is not None else None


def pid_alive(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def same_process(pid: int, ticks: int | None) -> bool:
    """Whether `pid` is alive and still the process that started at `ticks` (None: any)."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] == "Z":
        return False
    return ticks is None or int(fields[19]) == ticks


def parent_pid(pid: int) -> int | None:
    """The parent of a live (or zombie) process; None once it is gone."""
    fields = _stat_fields(pid)
    return int(fields[1]) if fields is not None else None


def start_ticks(pid: int) -> int:
    """When the process started, in clock ticks since boot: a pid's identity across reuse."""
    fields = _stat_fields(pid)
    assert fields is not None, f"no process {pid}"
    return int(fields[19])


def zombies_of(ppid: int) -> list[int]:
    """Zombie children of `ppid`: exited, but not reaped."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None and fields[0] == "Z" and int(fields[1]) == ppid:
                found.append(int(entry))
    return found


def proc_environ(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            data = f.read()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in data.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def proc_exe(pid: int) -> str | None:
    """The program the process runs (after its last exec), or None if it is gone."""
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def proc_cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            data = f.read()
    except OSError:
        return []
    return [arg.decode(errors="replace") for arg in data.split(b"\0")[:-1]]


def task_processes(marker: str) -> dict[str, list[int]]:
    """Live task processes of one test (by TF_TEST_MARKER), by their Task_name, each list
    sorted."""
    tasks: dict[str, list[int]] = {}
    for pid in sorted(processes_with_marker(marker)):
        name = proc_environ(pid).get("Task_name")
        if name is not None and pid_alive(pid):
            tasks.setdefault(name, []).append(pid)
    return tasks


def task_instances(marker: str, task: str) -> dict[int, list[int]]:
    """Live processes of one task, by Task_instance."""
    found: dict[int, list[int]] = {}
    for pid in processes_with_marker(marker):
        env = proc_environ(pid)
        if env.get("Task_name") == task and pid_alive(pid):
            found.setdefault(int(env.get("Task_instance", "0")), []).append(pid)
    return found


def remove_cgroups(log: str) -> None:
    """Kill what is in the task cgroups a taskforce logged it made, and remove them (one
    killed with SIGKILL leaves them for its successor, which no test starts)."""
    import re
    import time

    bases = set(re.findall(r"(/\S+/taskforce\.[0-9a-f]+) \(", log))
    groups = [entry.path for base in bases if os.path.isdir(base) for entry in os.scandir(base)]
    groups = [path for path in groups if os.path.isdir(path) and "@" in os.path.basename(path)]
    for path in groups:
        with contextlib.suppress(OSError), open(os.path.join(path, "cgroup.kill"), "w") as f:
            f.write("1")
    end = time.monotonic() + 10
    for path in groups:
        while time.monotonic() < end:
            try:
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError:
                with contextlib.suppress(OSError), open(os.path.join(path, "cgroup.procs")) as f:
                    for pid in f.read().split():
                        with contextlib.suppress(OSError):
                            os.kill(int(pid), signal.SIGKILL)
                time.sleep(0.01)  # polling interval while the killed processes go
    for base in bases:
        with contextlib.suppress(OSError):
            os.rmdir(base)
