"""runtime.usage reads real processes' /proc entries: a name with spaces and ')' in it,
CPU time as the process itself counts it, a process that is gone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from support.procfs import process_state
from support.wait import wait_for
from taskforce.runtime.processes.usage import own_descriptors, process_usage


def test_a_command_name_with_a_parenthesis_and_spaces(tmp_path: Path) -> None:
    sleep = shutil.which("sleep")
    assert sleep is not None
    odd = tmp_path / "a) (b c"
    shutil.copy(sleep, odd)
    # Start times are whole clock ticks after a boot time known to the second: up to a
    # second and a tick early.
    before = time.time() - 1 - 1 / os.sysconf("SC_CLK_TCK")
    proc = subprocess.Popen([str(odd), "1000"])
    try:
        # Asleep in its nanosleep: until then the loader is still mapping and touching
        # pages, and the resident size read twice differs.
        wait_for(lambda: process_state(proc.pid) == "S", what="the copy of sleep asleep")
        used = process_usage(proc.pid)
        assert used is not None
        with open(f"/proc/{proc.pid}/statm") as f:
            resident = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        assert used.rss_bytes == resident
        assert used.virtual_bytes >= used.rss_bytes
        assert 0 <= used.cpu_seconds < 5
        assert before <= used.start_time <= time.time() + 1
    finally:
        proc.kill()
        proc.wait()
    assert process_usage(proc.pid) is None  # reaped: gone


def test_cpu_time_is_the_process_own() -> None:
    # The child spends CPU time, then says how much it counted and waits to be read.
    code = (
        "import sys, time\n"
        "while time.process_time() < 0.2: pass\n"
        "print(time.process_time(), flush=True)\n"
        "sys.stdin.read()\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            counted = float(proc.stdout.readline())
            used = process_usage(proc.pid)
            assert used is not None
            # /proc counts in clock ticks, sampled: close to the process's own figure.
            assert counted / 2 <= used.cpu_seconds <= counted + 0.5
        finally:
            proc.kill()


def test_own_descriptors() -> None:
    fds = own_descriptors()
    assert fds is not None
    assert fds.open == len(os.listdir("/proc/self/fd")) - 1
    assert fds.max is None or fds.max > fds.open
