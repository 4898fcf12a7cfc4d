#!/usr/bin/env python3
"""Throughput of task output capture, and what it costs taskforce in CPU.

    .venv/bin/python bench/output_capture.py [--seconds 5] [--line-bytes 100] [--runs 3]

A task writes lines as fast as it can (one os.write of ~64 KiB of whole lines at a time,
so the writer is never the bottleneck) and taskforce captures its stdout to a file with
rotation (max_bytes 64M, one backup, so the disk holds at most 128 MB). Over a window of
`--seconds`, once output flows, the script reads from /proc:
  - bytes taskforce wrote (/proc/PID/io wchar), hence MB/s captured;
  - taskforce's CPU time (utime + stime), as a share of one core and per GB captured;
  - the writing task's CPU time, for context.
For comparison it runs the same writer straight into a file (no taskforce): the ceiling
the disk and page cache allow. The files live in a temporary directory beside this
script (not /tmp, which may be a small tmpfs); everything is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
MB = 1e6
WRITER = (
    "import os, sys\n"
    "line = b'x' * (int(sys.argv[1]) - 1) + b'\\n'\n"
    "chunk = line * max(1, 65536 // len(line))\n"
    "fd = int(sys.argv[2]) if len(sys.argv) > 2 else 1\n"
    "while True: os.write(fd, chunk)\n"
)
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def written(pid: int) -> int:
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    raise RuntimeError(f"no wchar for pid {pid}")


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def is_writer(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return WRITER.encode() in f.read()
    except OSError:
        return False


def wait_for(condition: Callable[[], object], timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise RuntimeError("timed out")
        time.sleep(0.01)  # polling interval of a bounded wait


def through_taskforce(work: Path, seconds: float, line_bytes: int) -> dict[str, float]:
    log = work / "out.log"
    conf = work / "tf.conf"
    conf.write_text(
        "settings: {http: [], stop_timeout: 2}\n"
        "tasks:\n"
        "  flood:\n"
        f"    commands: {{start: [{sys.executable}, -c, {WRITER!r}, '{line_bytes}']}}\n"
        f"    output: {{stdout: {str(log)!r}, max_bytes: 64M, backups: 1}}\n"
    )
    tf = subprocess.Popen(
        [sys.executable, "-m", "taskforce", "-e", "-q", "-f", str(conf), "-p", "-"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=open(work / "taskforce.log", "wb"),  # noqa: SIM115 - the child's
    )
    try:
        wait_for(lambda: log.exists() and log.stat().st_size > 0)
        (task,) = [pid for pid in children(tf.pid) if is_writer(pid)]
        bytes0, cpu0, task0 = written(tf.pid), cpu_seconds(tf.pid), cpu_seconds(task)
        t0 = time.monotonic()
        time.sleep(seconds)  # the measured window
        elapsed = time.monotonic() - t0
        moved = written(tf.pid) - bytes0
        cpu = cpu_seconds(tf.pid) - cpu0
        task_cpu = cpu_seconds(task) - task0
    finally:
        tf.send_signal(signal.SIGTERM)
        try:
            tf.wait(30)
        except subprocess.TimeoutExpired:
            tf.kill()
            tf.wait()
    return {
        "mb_s": moved / MB / elapsed,
        "cpu_share": cpu / elapsed,
        "cpu_per_gb": cpu / (moved / 1e9) if moved else float("inf"),
        "task_share": task_cpu / elapsed,
    }


def straight_to_file(work: Path, seconds: float, line_bytes: int) -> float:
    path = work / "direct.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(line_bytes), str(fd)], pass_fds=(fd,)
    )
    os.close(fd)
    try:
        wait_for(lambda: path.stat().st_size > 0)
        before, t0 = written(writer.pid), time.monotonic()
        time.sleep(min(seconds, 2.0))  # the measured window (short: no rotation here)
        moved = written(writer.pid) - before
        elapsed = time.monotonic() - t0
    finally:
        writer.kill()
        writer.wait()
        path.unlink()
    return moved / MB / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window per run")
    parser.add_argument("--line-bytes", type=int, default=100, help="bytes per line, newline in")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="output-bench-", dir=HERE))
    try:
        runs = []
        for number in range(args.runs):
            (work / str(number)).mkdir()
            runs.append(through_taskforce(work / str(number), args.seconds, args.line_bytes))
        ceiling = straight_to_file(work, args.seconds, args.line_bytes)
    except BaseException:
        print(f"failed; the taskforce logs are in {work}", file=sys.stderr)
        raise
    else:
        with contextlib.suppress(OSError):
            shutil.rmtree(work)

    def median(key: str) -> float:
        return statistics.median(run[key] for run in runs)

    print(f"output capture: {args.line_bytes}-byte lines, {args.runs} runs of {args.seconds:g}s")
    print(f"  captured to a file:        {median('mb_s'):8.1f} MB/s (median)")
    each = ", ".join(f"{run['mb_s']:.1f}" for run in runs)
    print(f"    runs:                    {each}")
    print(f"  taskforce CPU:             {median('cpu_share') * 100:8.1f} % of one core")
    print(f"  taskforce CPU per GB:      {median('cpu_per_gb'):8.2f} s")
    print(f"  writing task's CPU:        {median('task_share') * 100:8.1f} % of one core")
    print(f"  writer straight to a file: {ceiling:8.1f} MB/s (no taskforce: the ceiling)")
    print(f"  cores on this machine:     {os.cpu_count()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
