#!/usr/bin/env python3
"""Profile taskforce on the benchmark's workloads with py-spy, and say where time goes.

    .venv/bin/python bench/profile_taskforce.py startup   # 1,000 children from launch
    .venv/bin/python bench/profile_taskforce.py shutdown  # SIGTERM to exit, 1,000 children
    .venv/bin/python bench/profile_taskforce.py restart   # 200 SIGKILLed children, 100 running
    .venv/bin/python bench/profile_taskforce.py reload    # 10 one-task changes out of 1,000
    .venv/bin/python bench/profile_taskforce.py memory    # RSS by mapping, heap by module
    .venv/bin/python bench/profile_taskforce.py spawn     # one start: fork+exec vs vfork

`--tasks N` changes the size of startup and shutdown (10,000 for the scale figures).

py-spy is installed (once) into bench/.peers/venv-tools. Raw stacks are written to
bench/results/raw/profile-<scenario>.txt; the summary (top functions by own and by
inclusive samples, on CPU only) is printed.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import install, procfs, reaper
from harness.build import build_child
from harness.context import wait_all_started
from harness.tswatch import TsWatcher, read_starts
from harness.workload import Workload
from peers.base import Env
from peers.taskforce import Taskforce, config_text

BENCH = Path(__file__).resolve().parent
RAW = BENCH / "results" / "raw"
SETTINGS = {"restart": {"min_uptime": 1}}


def py_spy() -> Path:
    bin_dir = install.venv(Path(sys.executable), BENCH / ".peers" / "venv-tools", "py-spy")
    return bin_dir / "py-spy"


def taskforce_argv(workload: Workload) -> list[str]:
    """The benchmark's taskforce command line (snapshot of src/, own pidfile and socket)."""
    conf = workload.root / "taskforce.conf"
    conf.write_text(config_text(workload, SETTINGS))
    roles = workload.root / "roles"
    roles.write_text("")
    pidfile = workload.root / "taskforce.pid"
    flags = ["-e", "-q", "-p", str(pidfile), "-f", str(conf), "-r", str(roles)]
    return [*_TASKFORCE.command(), *flags]


_ENV = Env(BENCH, BENCH / ".peers", Path(sys.executable), print)
_TASKFORCE = Taskforce(_ENV)


class Ctx:
    """The bits of harness.context.Context that wait_all_started needs."""

    def __init__(self) -> None:
        self.watcher = TsWatcher()


def record(out: Path, argv: list[str]) -> subprocess.Popen[bytes]:
    cmd = [str(py_spy()), "record", "-r", "1000", "-f", "raw", "-o", str(out)]
    return subprocess.Popen([*cmd, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize(raw: Path, top: int = 25) -> None:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [_short(frame) for frame in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    print(f"\n{raw}: {total} samples on CPU (1 ms each)")
    for title, counter in (("own time", own), ("inclusive time", inclusive)):
        print(f"\ntop {top} by {title}:")
        for frame, count in counter.most_common(top):
            print(f"  {100 * count / max(total, 1):5.1f}%  {count:6d}  {frame}")


def _short(frame: str) -> str:
    """'func (/long/path/site-packages/pkg/mod.py:12)' -> 'func (pkg/mod.py)'."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")")
    for marker in ("site-packages/", "src/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


def scenario_startup(root: Path, count: int = 1000) -> Path:
    workload = Workload.create(root / "startup", build_child(BENCH / ".peers"), count)
    ctx = Ctx()
    ctx.watcher.add(workload.ts_dir)
    out = RAW / "profile-startup.txt"
    spy = record(out, ["--", *taskforce_argv(workload)])
    began = time.monotonic()
    starts = wait_all_started(ctx, workload, 60 + 0.1 * count)  # type: ignore[arg-type]
    print(f"{count} children started in {time.monotonic() - began:.2f} s under py-spy")
    # Sampling ends here (SIGINT: py-spy writes its file and SIGKILLs taskforce), so that
    # no stack of the shutdown is in it; the children and their cgroups go after.
    base = _cgroup_base(next(iter(starts.values())).pid)
    spy.send_signal(signal.SIGINT)
    spy.wait(120)
    reaper.kill_descendants()
    if base is not None:
        _remove_cgroups(base)
    return out


def _cgroup_base(pid: int) -> str | None:
    """The v2 directory holding the instances' cgroups of the task process `pid`."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            path = next(line[3:].strip() for line in f if line.startswith("0::"))
    except (OSError, StopIteration):
        return None
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if "cgroup2" in fields[fields.index("-") + 1 :][:1]:
            return os.path.dirname(fields[4] + path)
    return None


def _remove_cgroups(base: str) -> None:
    """Remove a killed taskforce's instance cgroups (all empty once its children are gone)."""
    with os.scandir(base) as entries:
        for entry in entries:
            if entry.is_dir():
                with contextlib.suppress(OSError):
                    os.rmdir(entry.path)
    with contextlib.suppress(OSError):
        os.rmdir(base)


def scenario_shutdown(root: Path, count: int = 1000) -> Path:
    """From SIGTERM to taskforce's exit, with `count` children running."""
    workload = Workload.create(root / "shutdown", build_child(BENCH / ".peers"), count)
    ctx = Ctx()
    ctx.watcher.add(workload.ts_dir)
    tf = subprocess.Popen(taskforce_argv(workload), start_new_session=True)
    wait_all_started(ctx, workload, 60 + 0.1 * count)  # type: ignore[arg-type]
    time.sleep(2)
    out = RAW / "profile-shutdown.txt"
    spy = record(out, ["--pid", str(tf.pid)])
    time.sleep(1.0)  # py-spy attached
    began = time.monotonic()
    tf.terminate()
    tf.wait(120)
    print(f"{count} children: SIGTERM to taskforce's exit {time.monotonic() - began:.2f} s")
    spy.wait(60)
    return out


def scenario_restart(root: Path, kills: int = 200) -> Path:
    workload = Workload.create(root / "restart", build_child(BENCH / ".peers"), 100)
    ctx = Ctx()
    ctx.watcher.add(workload.ts_dir)
    tf = subprocess.Popen(taskforce_argv(workload), start_new_session=True)
    wait_all_started(ctx, workload, 60)  # type: ignore[arg-type]
    time.sleep(1.5)
    out = RAW / "profile-restart.txt"
    spy = record(out, ["--pid", str(tf.pid)])
    time.sleep(1.0)
    latencies = []
    for _ in range(kills):
        starts = read_starts(workload.ts_dir)
        name, start = min(starts.items(), key=lambda item: item[1].ns)
        wait = (start.ns + 1.2e9 - time.monotonic_ns()) / 1e9
        if wait > 0:
            time.sleep(wait)
        t0 = time.monotonic_ns()
        os.kill(start.pid, signal.SIGKILL)
        new = ctx.watcher.wait_for_start(workload.ts_dir, name, t0, 10)
        if new is not None:
            latencies.append((new.ns - t0) / 1e6)
        time.sleep(0.01)
    latencies.sort()
    print(f"{len(latencies)} restarts: median {latencies[len(latencies) // 2]:.2f} ms")
    spy.send_signal(signal.SIGINT)
    spy.wait(60)
    tf.terminate()
    tf.wait(30)
    return out


def scenario_reload(root: Path, changes: int = 10) -> Path:
    workload = Workload.create(root / "reload", build_child(BENCH / ".peers"), 1000)
    ctx = Ctx()
    ctx.watcher.add(workload.ts_dir)
    argv = taskforce_argv(workload)
    tf = subprocess.Popen(argv, start_new_session=True)
    wait_all_started(ctx, workload, 120)  # type: ignore[arg-type]
    time.sleep(2)
    out = RAW / "profile-reload.txt"
    spy = record(out, ["--pid", str(tf.pid)])
    time.sleep(1.0)
    conf = workload.root / "taskforce.conf"
    latencies = []
    for index in range(changes):
        name = workload.tasks[index * 37].name
        workload = workload.changed(name)
        tmp = conf.with_name(".new")
        tmp.write_text(config_text(workload, SETTINGS))
        ctx.watcher.drain()
        t0 = time.monotonic_ns()
        os.rename(tmp, conf)
        new = ctx.watcher.wait_for_start(workload.ts_dir, name, t0, 30)
        if new is not None:
            latencies.append((new.ns - t0) / 1e6)
        time.sleep(1.0)
    latencies.sort()
    print(f"{len(latencies)} reloads: median {latencies[len(latencies) // 2]:.1f} ms")
    spy.send_signal(signal.SIGINT)
    spy.wait(60)
    tf.terminate()
    tf.wait(30)
    return out


_TRACED = """
import os, signal, sys, threading, time, tracemalloc
tracemalloc.start(1)
from taskforce.runtime.legion import Legion

legion = Legion(sys.argv[1], roles_file=sys.argv[2])

def report():
    time.sleep(float(sys.argv[3]))
    stats = tracemalloc.take_snapshot().statistics("filename")
    total = sum(stat.size for stat in stats)
    print(f"traced Python heap: {total / 2**20:.1f} MB in {len(sys.modules)} modules")
    for stat in stats[:20]:
        name = str(stat.traceback[0].filename).split("site-packages/")[-1]
        print(f"  {stat.size / 2**20:6.2f} MB  {name}")
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=report, daemon=True).start()
legion.manage()
"""


_SPAWN = """
import json, os, signal, statistics, subprocess, sys, time
import taskforce.cli.main, taskforce.runtime.loop.supervisor, taskforce.runtime.legion  # real size
from taskforce.core.spec import TASK_PID_MARKER, LaunchSpec
from taskforce.runtime.processes import spawn as process

child, ts = sys.argv[1], sys.argv[2]
env = {**os.environ, "Task_pid": TASK_PID_MARKER}
rss = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
print(f"parent RSS {rss:.1f} MB")
devnull = os.open(os.devnull, os.O_RDWR)

def via_taskforce():
    launch = LaunchSpec(child, (child, ts), tuple(env.items()))
    spawned = process.spawn(launch, stdin=devnull, stdout=devnull, stderr=devnull)
    os.close(spawned.error_fd)
    return spawned.pid

def via_posix_spawn():
    plain = {**os.environ, "Task_pid": "0"}
    return os.posix_spawn(child, [child, ts], plain, setsid=True,
        file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1),
                      (os.POSIX_SPAWN_DUP2, devnull, 2)],
        setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD), setsigmask=())

def via_subprocess():
    plain = {**os.environ, "Task_pid": "0"}
    return subprocess.Popen([child, ts], env=plain, stdin=devnull, stdout=devnull,
        stderr=devnull, start_new_session=True, close_fds=True).pid

for name, fn in (("taskforce process.spawn (fork)", via_taskforce),
                 ("os.posix_spawn (vfork)", via_posix_spawn),
                 ("subprocess.Popen (vfork, C child)", via_subprocess)):
    parent, start = [], []
    for _ in range(100):
        if os.path.exists(ts):
            os.unlink(ts)
        t0 = time.monotonic_ns()
        pid = fn()
        parent.append((time.monotonic_ns() - t0) / 1e6)
        while not os.path.exists(ts) or not open(ts).read().endswith("\\n"):
            time.sleep(0.0002)
        start.append((int(open(ts).read().split()[0]) - t0) / 1e6)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    print(f"  {name:36s} parent busy {statistics.median(parent):5.2f} ms, "
          f"call to child running {statistics.median(start):5.2f} ms (medians of 100)")
"""


def scenario_spawn(root: Path) -> None:
    """What one process start costs: taskforce's fork+exec against vfork-based spawning."""
    child = build_child(BENCH / ".peers")
    root.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-c", _SPAWN, str(child.exe), str(root / "ts")]
    subprocess.run(cmd, check=False, timeout=300)


def scenario_memory(root: Path) -> None:
    workload = Workload.create(root / "memory", build_child(BENCH / ".peers"), 100)
    ctx = Ctx()
    ctx.watcher.add(workload.ts_dir)
    tf = subprocess.Popen(taskforce_argv(workload), start_new_session=True)
    wait_all_started(ctx, workload, 60)  # type: ignore[arg-type]
    time.sleep(2)
    _mappings(tf.pid)
    tf.terminate()
    tf.wait(30)
    for path in workload.ts_dir.iterdir():
        path.unlink()
    conf, roles = str(workload.root / "taskforce.conf"), str(workload.root / "roles")
    print("\nPython allocations by file (tracemalloc, same workload, in-process):")
    subprocess.run([sys.executable, "-c", _TRACED, conf, roles, "5"], check=False, timeout=120)


def _mappings(pid: int) -> None:
    """RSS of a process by mapping (file or [heap]/anon), largest first."""
    sizes: collections.Counter[str] = collections.Counter()
    current = "?"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        parts = line.split()
        if parts and "-" in parts[0] and len(parts) >= 5:
            name = parts[5] if len(parts) > 5 else "[anon]"
            current = name.split("site-packages/")[-1]
        elif parts and parts[0] == "Rss:":
            sizes[current] += int(parts[1])
    print(f"\nRSS of taskforce (pid {pid}), 100 children: {sum(sizes.values()) / 1024:.1f} MB")
    for name, kb in sizes.most_common(15):
        print(f"  {kb / 1024:6.1f} MB  {name}")


def _stop_target(spy: subprocess.Popen[bytes]) -> None:
    """End the profiled taskforce (py-spy's child) so that py-spy writes its file."""
    for pid in procfs.descendants(spy.pid)[1:]:
        if "taskforce" in procfs.cmdline(pid):
            os.kill(pid, signal.SIGTERM)
    spy.wait(120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "scenario", choices=["startup", "shutdown", "restart", "reload", "memory", "spawn"]
    )
    parser.add_argument("--tasks", type=int, default=1000, help="children (startup, shutdown)")
    args = parser.parse_args()
    reaper.become_subreaper()
    print(f"taskforce {_TASKFORCE.install()} (snapshot of src/)")
    os.environ.update(_TASKFORCE.environment() or {})
    RAW.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="tfp-", dir="/tmp"))
    try:
        if args.scenario in ("memory", "spawn"):
            (scenario_memory if args.scenario == "memory" else scenario_spawn)(root)
            return 0
        if args.scenario in ("startup", "shutdown"):
            if args.scenario == "startup":
                summarize(scenario_startup(root, args.tasks))
            else:
                summarize(scenario_shutdown(root, args.tasks))
            return 0
        scenarios = {"restart": scenario_restart, "reload": scenario_reload}
        summarize(scenarios[args.scenario](root))
    finally:
        reaper.kill_descendants()
        subprocess.run(["rm", "-rf", str(root)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
