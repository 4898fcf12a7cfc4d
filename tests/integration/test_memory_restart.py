"""memory_restart where no cgroup event tells: the process's memory, sampled on the
interval the operator set, and no timer at all while no instance has a threshold."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from taskforce.runtime.limits.cgroups import Cgroups
from taskforce.runtime.limits.memory_restart import MemoryRestart

# Takes about 64M, says so, and waits.
GROW = (
    "x = bytearray(64 << 20)\nx[::4096] = b'x' * (len(x) // 4096)\nprint(1, flush=True)\ninput()\n"
)


def test_without_a_memory_cgroup_the_process_memory_is_sampled() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", GROW], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()

        async def watch() -> list[tuple[str, int, str]]:
            loop = asyncio.get_running_loop()
            told: list[tuple[str, int, str]] = []
            done = loop.create_future()

            def restart(task: str, slot: int, why: str) -> None:
                told.append((task, slot, why))
                done.set_result(None)

            watcher = MemoryRestart(loop, Cgroups([]), restart)
            watcher.interval = 0.05
            watcher.started("quiet", 0, proc.pid, None)
            assert watcher._timer is None  # no threshold: no timer
            watcher.started("big", 1, proc.pid, 32 << 20)
            assert watcher._timer is not None
            await asyncio.wait_for(done, 30)
            assert watcher._timer is None  # its one instance is being restarted
            watcher.close()
            return told

        told = asyncio.run(watch())
        assert len(told) == 1
        task, slot, why = told[0]
        assert (task, slot) == ("big", 1)
        assert why.endswith("passed memory_restart 32.0M")
    finally:
        proc.kill()
        proc.communicate()
