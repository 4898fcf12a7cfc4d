#!/usr/bin/env python3
"""The status views at scale: a real taskforce running N `wait` tasks of `sleep 1000`
(one JSON configuration), and the time of its status requests over the unix socket.

    .venv/bin/python bench/status_scale.py                      # 10,000 tasks, 9 runs
    .venv/bin/python bench/status_scale.py --ref main           # main's code, then this tree's
    .venv/bin/python bench/status_scale.py --tasks 100 --rss    # RSS with 100 tasks only

Each code under test is a copy of src/taskforce (`--ref REF`: as committed at REF, with the
working tree's built extension), started with `-e -q -p PIDFILE -f CONF -r ROLES`; its
control socket is beside the pidfile. Once every task runs, each request is sent once to
warm up and then `--runs` times; the time is from the request's first byte sent to the
answer's last byte read (the client's JSON decoding is not counted). Medians are
printed, with the fastest and slowest run (the machine may be shared), and the CPU time
taskforce itself spent per request (from /proc: less sensitive to a busy machine).

This script is a child subreaper: whatever taskforce leaves behind comes back to it, and
every such process is killed before it exits.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PR_SET_CHILD_SUBREAPER = 36
GROUPS = ("web", "worker", "db", "cache")  # task names: web-00000, worker-00001...

# Seconds between two requests that must not share a usage reading (taskforce keeps one
# for a second: api/readings.py USAGE_MAX_AGE).
FRESH_GAP = 1.2
# Seconds after a fresh table's request that a summary is asked (see stalled()).
STALL_AFTER = 0.03

# (label, path): the unfiltered table, then what the filters make of it. "fresh": each
# request waits FRESH_GAP first, so that it reads every process's usage anew (the others
# follow each other at once: after the first, they are served the figures it read).
QUERIES = (
    ("tasks (unfiltered), fresh", "/status/tasks"),
    ("tasks (unfiltered)", "/status/tasks"),
    # The same usage readers, for every running process, in the Prometheus text format.
    ("metrics, fresh", "/metrics"),
    ("metrics", "/metrics"),
    ("summary", "/status/summary"),
    ("one task", "/status/tasks?task=web-00040"),
    ("glob, 1/4 of tasks, 2 fields", "/status/tasks?task=web-*&fields=state,running"),
    ("state=failed (none)", "/status/tasks?state=failed"),
    ("not in wanted state (none)", "/status/tasks?state=unwanted"),
    ("all, fields=state", "/status/tasks?fields=state"),
    # Every key but the processes (whose usage is read from /proc and cgroupfs per request):
    # what the table costs without those reads.
    (
        "all, every field but processes",
        "/status/tasks?fields=control,count,running,state,why,error,restarts,requires,"
        "next_run,next_run_t,output_captured,sockets,rolling,history",
    ),
)


def config(tasks: int, seconds: int) -> str:
    entries = {
        f"{GROUPS[i % len(GROUPS)]}-{i:05d}": {
            "control": "wait",
            "commands": {"start": ["sleep", str(seconds)]},
        }
        for i in range(tasks)
    }
    return json.dumps({"tasks": entries})


def snapshot(ref: str | None, into: Path) -> Path:
    """A copy of src/taskforce (the working tree's, or as committed at `ref`)."""
    target = into / "src"
    target.mkdir()
    if ref is None:
        shutil.copytree(
            REPO / "src" / "taskforce",
            target / "taskforce",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    else:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", ref, "src/taskforce"],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
        for built in (REPO / "src" / "taskforce").glob("_syscalls*.so"):
            shutil.copy2(built, target / "taskforce" / built.name)
    return target


def request(path: str, sock_path: str) -> tuple[float, int, int]:
    """(seconds, HTTP status, body bytes) of one GET."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(300)
        s.connect(sock_path)
        start = time.perf_counter()
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := s.recv(1 << 20):
            chunks.append(chunk)
        elapsed = time.perf_counter() - start
    data = b"".join(chunks)
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        body = _unchunk(body)
    return elapsed, status, len(body)


def _unchunk(body: bytes) -> bytes:
    out = []
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out.append(rest[:size])
        body = rest[size + 2 :]
    return b"".join(out)


def get_json(path: str, sock_path: str) -> object:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(300)
        s.connect(sock_path)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(1 << 20):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        body = _unchunk(body)
    return json.loads(body)


def cpu_ms(pid: int) -> float:
    """The process's user + system time so far, in milliseconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def children(pid: int) -> int:
    """How many children the process has (every thread's), from /proc."""
    count = 0
    for thread in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{thread}/children") as f:
            count += len(f.read().split())
    return count


def wait_running(sock_path: str, tasks: int, proc: subprocess.Popen[bytes]) -> float:
    """Seconds until every task runs: its children are counted from /proc (asking the
    status would slow the start-up being waited for), then the status confirms."""
    start = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"taskforce exited ({proc.returncode}) before all tasks ran")
        if children(proc.pid) >= tasks:
            with contextlib.suppress(OSError, ValueError):
                table = get_json("/status/tasks?fields=state", sock_path)
                if isinstance(table, dict):
                    running = sum(1 for t in table.values() if t.get("state") == "running")
                    if running == tasks:
                        return time.monotonic() - start
        if time.monotonic() - start > 900:
            raise SystemExit("not all tasks ran within 15 minutes")
        time.sleep(1)


def measure(label: str, ref: str | None, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="tf-status-scale-") as tmp:
        root = Path(tmp)
        src = snapshot(ref, root)
        conf = root / "tasks.json"
        conf.write_text(config(args.tasks, args.sleep))
        roles = root / "roles"
        roles.write_text("")
        pidfile = root / "taskforce.pid"
        sock_path = str(root / "taskforce.sock")
        argv = [sys.executable, "-m", "taskforce", "-e", "-q", "-p", str(pidfile)]
        argv += ["-f", str(conf), "-r", str(roles)]
        env = {**os.environ, "PYTHONPATH": str(src)}
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL)
        try:
            took = wait_running(sock_path, args.tasks, proc)
            time.sleep(1)  # the start-up's tail (readiness, logs) settles
            print(f"\n## {label}: {args.tasks} tasks running after {took:.1f} s")
            print(f"taskforce RSS {rss_kib(proc.pid) / 1024:.1f} MiB")
            if args.rss:
                return
            print(
                f"| request ({args.runs} runs) | median ms | min | max "
                "| taskforce CPU ms per request | status | bytes |"
            )
            print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
            for name, path in QUERIES:
                request(path, sock_path)  # warm-up
                times = []
                used = cpu_ms(proc.pid)
                for _ in range(args.runs):
                    if name.endswith(", fresh"):
                        time.sleep(FRESH_GAP)
                    elapsed, status, size = request(path, sock_path)
                    times.append(elapsed * 1000)
                used = (cpu_ms(proc.pid) - used) / args.runs
                print(
                    f"| {name} `{path}` | {statistics.median(times):.1f} | {min(times):.1f} "
                    f"| {max(times):.1f} | {used:.0f} | {status} | {size} |"
                )
            print(stalled(sock_path, args.runs))
            print(f"taskforce RSS after the requests {rss_kib(proc.pid) / 1024:.1f} MiB")
        finally:
            stop(proc)


def stalled(sock_path: str, runs: int) -> str:
    """The row of /status/summary sent while a fresh unfiltered table is being read (its
    usage reading under way): how long the event loop keeps other requests (and the
    supervision of the tasks) waiting meanwhile."""
    times = []
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        for _ in range(runs):
            time.sleep(FRESH_GAP)
            table = pool.submit(request, "/status/tasks", sock_path)
            time.sleep(STALL_AFTER)  # the table's request arrives and its reading begins
            elapsed, status, size = request("/status/summary", sock_path)
            times.append(elapsed * 1000)
            table.result()
    return (
        f"| summary {STALL_AFTER * 1000:.0f} ms into a fresh table `/status/summary` "
        f"| {statistics.median(times):.1f} | {min(times):.1f} | {max(times):.1f} | - "
        f"| {status} | {size} |"
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    reap_orphans()


def reap_orphans() -> None:
    """Kill and reap what was reparented to this script (it is a subreaper)."""
    me = str(os.getpid())
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2 :].split()[1] == me:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry), signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, 0)[0]:
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=9, help="timed requests per query")
    parser.add_argument(
        "--sleep",
        type=int,
        default=1000,
        help="seconds each task's sleep lasts (a loaded machine may need longer: a run "
        "must end before the sleeps do)",
    )
    parser.add_argument(
        "--ref",
        action="append",
        default=[],
        help="also measure the code as committed at this git ref (first), e.g. main",
    )
    parser.add_argument("--rss", action="store_true", help="only the RSS once all tasks run")
    args = parser.parse_args()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    for ref in args.ref:
        measure(f"taskforce at {ref}", ref, args)
    measure("taskforce, working tree", None, args)


if __name__ == "__main__":
    main()
