"""The floor under start-up: bench/spawn_floor.c starting N children of the benchmark's child
with nothing of a supervisor around the spawns, in the ways taskforce could (see its
header), timed as the benchmark times a supervisor: from the launch to the last child's own
start stamp."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness import reaper
from harness.build import build_tool

if TYPE_CHECKING:
    from taskforce.runtime.limits.cgroups import Cgroups

# (label, spawn_floor mode, threads): (a), (b), (c) of the floor, and two to tell parts apart.
MODES = (
    ("vfork+exec", "vfork", 1),
    ("vfork+exec, 2 threads", "vfork", 2),
    ("mkdir + clone3 into it", "cgroup", 1),
    ("mkdir + clone3 into it, 2 threads", "cgroup", 2),
    ("clone3 into one shared cgroup, 2 threads", "shared", 2),
)
# The modes run beside taskforce in the scale report.
SCALE_MODES = ("vfork+exec", "mkdir + clone3 into it, 2 threads")


@dataclass
class Series:
    """One mode's trials: launch to all running, the spawn calls alone, the CPU time of the
    spawning process until the last spawn returned (ms each)."""

    startup: list[float] = field(default_factory=list)
    spawning: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def cgroup_base(label: str) -> tuple[str, Cgroups]:
    """A cgroup v2 directory to make the children's cgroups in, where taskforce makes its
    instances' (taskforce's own code finds it), and the object that removes it all."""
    from taskforce.runtime.limits.cgroups import Cgroups

    cgroups = Cgroups.discover(f"/spawn-floor/{label}/{os.getpid()}")
    v2 = [h for h in cgroups.hierarchies if h.version == 2]
    if not v2:
        cgroups.remove_all()
        raise SystemExit("no cgroup v2 hierarchy taskforce could use here")
    return v2[0].base, cgroups


def check_pids(count: int) -> None:
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    running = sum(1 for entry in os.listdir("/proc") if entry.isdigit())
    if count + running + 2_000 > pid_max:
        raise SystemExit(f"{count:,} children do not fit: {running:,} running, pid_max {pid_max:,}")


class Floor:
    """Runs spawn_floor (built once) in a cgroup directory of its own; `close` removes every
    cgroup and process left, whatever happened."""

    def __init__(self, cache: Path, child: Path) -> None:
        exe = build_tool("spawn_floor", cache)
        if exe is None:
            raise SystemExit("no C compiler: the floor needs bench/spawn_floor.c built")
        self.exe, self.child = exe, child
        self.root = Path(tempfile.mkdtemp(prefix="tfb-floor-", dir="/tmp"))
        self.base, self._cgroups = cgroup_base("floor")

    def close(self) -> None:
        reaper.kill_descendants()
        self._cgroups.remove_all()
        shutil.rmtree(self.root, ignore_errors=True)

    def trial(self, mode: str, threads: int, count: int, series: Series) -> None:
        ts_dir = self.root / "ts"
        shutil.rmtree(ts_dir, ignore_errors=True)
        ts_dir.mkdir()
        argv = [str(self.exe), mode, str(count), str(threads), str(self.child), str(ts_dir)]
        t0 = time.monotonic_ns()
        done = subprocess.run(
            [*argv, self.base], capture_output=True, text=True, check=False, timeout=900
        )
        shutil.rmtree(ts_dir, ignore_errors=True)
        if done.returncode != 0:
            series.failures.append(done.stderr.strip().splitlines()[-1:][0] if done.stderr else "")
            return
        got = dict(word.split("=", 1) for word in done.stdout.split())
        series.startup.append((int(got["last_stamp_ns"]) - t0) / 1e6)
        series.spawning.append((int(got["spawned_ns"]) - int(got["start_ns"])) / 1e6)
        series.cpu.append(float(got["cpu_ms"]))


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None
