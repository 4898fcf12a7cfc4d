#!/usr/bin/env python3
"""Soak test: taskforce under a steady rain of faults, watched for leaks.

For --duration seconds (30 minutes by default) against --tasks tasks (200): task
processes are killed at random (SIGKILL or SIGTERM), the configuration is rewritten
(commands changed, counts changed, tasks added and removed) and the roles file flipped.
Meanwhile taskforce's resident memory, open file descriptors and threads are sampled.

Kills hit only the "steady" half of the tasks, which rewrites and role flips leave alone,
so that every kill must be followed by a restart; the other half is the churn.

A report is written (JSON, and Markdown beside it) with the figures and a verdict:
  - every kill was followed by a restart (a new process for the same task instance);
  - memory, descriptors and threads stayed flat (after a warm-up, see the thresholds; a
    burst of starts briefly adds two spawning threads);
  - taskforce stopped cleanly at the end and left no process behind.
The exit status is 0 when all hold, 1 otherwise.

    python tests/soak/soak.py --duration 180 --report soak-report.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SLEEP = "/bin/sleep" if os.path.exists("/bin/sleep") else "/usr/bin/sleep"
SRC = Path(__file__).resolve().parents[2] / "src" / "taskforce"
RESTART_DEADLINE = 15.0  # seconds from a kill to its restart
WARM_UP = 0.15  # the first part of the run, before the baseline is taken
# What "flat" means, from the baseline (the median of the first samples after warm-up)
# to the median of the last samples.
RSS_GROWTH_LIMIT = 0.10  # fraction, and...
RSS_GROWTH_FLOOR_KB = 4096  # ...growth under this many KiB passes whatever the fraction
FD_GROWTH_LIMIT = 4
# A burst of starts spawns on two short-lived threads (runtime/processes/spawn.begin_jobs): at most
# two more at a time, and none left once the burst is over.
THREAD_BURST_LIMIT = 2


@dataclass
class Kill:
    task: str
    slot: int
    pid: int
    at: float
    restarted_at: float | None = None


@dataclass
class Run:
    args: argparse.Namespace
    root: Path
    marker: str = field(default_factory=lambda: uuid.uuid4().hex)
    rng: random.Random = field(default_factory=random.Random)
    proc: subprocess.Popen[bytes] | None = None
    kills: list[Kill] = field(default_factory=list)
    actions: dict[str, int] = field(default_factory=dict)
    samples: list[dict[str, float]] = field(default_factory=list)
    churn: dict[str, dict[str, Any]] = field(default_factory=dict)
    generation: int = 0
    roles: str = "a"

    # ----- the configuration --------------------------------------------------------------

    @property
    def conf(self) -> Path:
        return self.root / "taskforce.conf"

    @property
    def roles_file(self) -> Path:
        return self.root / "roles"

    def steady_tasks(self) -> dict[str, Any]:
        half = self.args.tasks // 2
        return {f"steady{i:03}": {"commands": {"start": [SLEEP, "86400"]}} for i in range(half)}

    def initial_churn(self) -> None:
        for i in range(self.args.tasks - self.args.tasks // 2):
            self.churn[f"churn{i:03}"] = self.churn_task(i)

    def churn_task(self, i: int) -> dict[str, Any]:
        task: dict[str, Any] = {"commands": {"start": [SLEEP, str(86400 + self.generation)]}}
        if i % 4 == 1:
            task["roles"] = "a"
        elif i % 4 == 2:
            task["roles"] = "b"
        elif i % 8 == 3:
            task["count"] = 2
        return task

    def write_config(self) -> None:
        document = {
            "settings": {
                "stop_timeout": 2,
                "restart": {"min_uptime": 0.5, "initial_delay": 0.1, "factor": 2, "max_delay": 2},
            },
            "tasks": {**self.steady_tasks(), **self.churn},
        }
        tmp = self.conf.with_suffix(".tmp")
        tmp.write_text(json.dumps(document, indent=1))
        tmp.replace(self.conf)  # as editors and deployment tools do

    # ----- taskforce ------------------------------------------------------------------------

    def start(self) -> None:
        # Run a copy of the code: taskforce re-executes itself when its code changes, and
        # an edit of the working tree must not restart it in the middle of the soak.
        code = self.root / "src"
        shutil.copytree(SRC, code / "taskforce", ignore=shutil.ignore_patterns("__pycache__"))
        env = dict(os.environ, SOAK_MARKER=self.marker, PYTHONPATH=str(code))
        log = open(self.root / "taskforce.log", "wb")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "taskforce", "-e", "-p", str(self.root / "tf.pid"),
             "-f", str(self.conf), "-r", str(self.roles_file)],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()

    def processes(self) -> dict[tuple[str, int], list[int]]:
        """Live task processes of this run, by (task, instance)."""
        needle = f"SOAK_MARKER={self.marker}".encode()
        found: dict[tuple[str, int], list[int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    items = f.read().split(b"\0")
                with open(f"/proc/{entry}/stat", "rb") as f:
                    state = f.read().rsplit(b")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if needle not in items or state == b"Z":
                continue
            env = dict(i.decode(errors="replace").split("=", 1) for i in items if b"=" in i)
            if "Task_name" in env:
                key = (env["Task_name"], int(env.get("Task_instance", "0")))
                found.setdefault(key, []).append(int(entry))
        return found

    def sample(self, elapsed: float) -> None:
        assert self.proc is not None
        pid = self.proc.pid
        try:
            with open(f"/proc/{pid}/status") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            return
        self.samples.append(
            {
                "t": round(elapsed, 1),
                "rss_kb": float(status["VmRSS"].split()[0]),
                "fds": float(fds),
                "threads": float(status["Threads"]),
            }
        )

    # ----- the faults ---------------------------------------------------------------------

    def kill_one(self, now: float, live: dict[tuple[str, int], list[int]]) -> None:
        pending = {(k.task, k.slot) for k in self.kills if k.restarted_at is None}
        steady = [
            (key, pids)
            for key, pids in live.items()
            if key[0].startswith("steady") and key not in pending and len(pids) == 1
        ]
        if not steady:
            return
        (task, slot), (pid,) = self.rng.choice(steady)
        sig = self.rng.choice([signal.SIGKILL, signal.SIGTERM])
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        self.kills.append(Kill(task, slot, pid, now))
        self.count(f"kill ({signal.Signals(sig).name})")

    def rewrite(self) -> None:
        self.generation += 1
        names = sorted(self.churn)
        kind = self.rng.choice(["change", "add-remove", "count"])
        if kind == "change":
            for name in self.rng.sample(names, k=min(10, len(names))):
                index = int(name.removeprefix("churn"))
                self.churn[name] = self.churn_task(index)
        elif kind == "add-remove":
            for name in self.rng.sample(names, k=min(5, len(names))):
                del self.churn[name]
            fresh = [f"churn{i:03}" for i in range(1000) if f"churn{i:03}" not in self.churn]
            for name in fresh[:5]:
                self.churn[name] = self.churn_task(int(name.removeprefix("churn")))
        else:
            for name in self.rng.sample(names, k=min(5, len(names))):
                self.churn[name]["count"] = self.rng.choice([0, 1, 2, 3])
        self.write_config()
        self.count(f"config rewrite ({kind})")

    def flip_roles(self) -> None:
        self.roles = "b" if self.roles == "a" else "a"
        tmp = self.roles_file.with_suffix(".tmp")
        tmp.write_text(f"{self.roles}\n")
        tmp.replace(self.roles_file)
        self.count("roles flip")

    def count(self, what: str) -> None:
        self.actions[what] = self.actions.get(what, 0) + 1

    def check_restarts(self, now: float, live: dict[tuple[str, int], list[int]]) -> None:
        for kill in self.kills:
            if kill.restarted_at is None:
                pids = live.get((kill.task, kill.slot), [])
                if pids and kill.pid not in pids:
                    kill.restarted_at = now

    # ----- the run ------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        self.rng.seed(self.args.seed)
        self.initial_churn()
        self.write_config()
        self.roles_file.write_text("a\n")
        self.start()
        assert self.proc is not None
        begin = time.monotonic()
        deadline = begin + 60
        while len(self.processes()) < self.args.tasks // 2:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit("taskforce did not start its tasks; see taskforce.log")
            time.sleep(0.2)  # polling interval of a deadline-bounded wait
        start = time.monotonic()
        end = start + self.args.duration
        next_sample = start
        next_report = start + 60
        while (now := time.monotonic()) < end:
            if self.proc.poll() is not None:
                raise SystemExit(f"taskforce exited during the soak ({self.proc.returncode})")
            live = self.processes()
            self.check_restarts(now, live)
            roll = self.rng.random()
            if roll < 0.70:
                self.kill_one(now, live)
            elif roll < 0.90:
                self.rewrite()
            else:
                self.flip_roles()
            if now >= next_sample:
                self.sample(now - start)
                next_sample = now + self.args.sample_every
            if now >= next_report:
                self.progress(now - start)
                next_report = now + 60
            time.sleep(self.rng.uniform(0.2, 0.8) * self.args.pace)  # the fault rate
        # Let the last kills be answered, then stop.
        settle = time.monotonic() + RESTART_DEADLINE
        while any(k.restarted_at is None for k in self.kills) and time.monotonic() < settle:
            self.check_restarts(time.monotonic(), self.processes())
            time.sleep(0.2)  # polling interval of a deadline-bounded wait
        self.sample(time.monotonic() - start)
        stopped_cleanly, left = self.stop()
        return self.report(time.monotonic() - start, stopped_cleanly, left)

    def progress(self, elapsed: float) -> None:
        last = self.samples[-1] if self.samples else {}
        answered = sum(1 for k in self.kills if k.restarted_at is not None)
        print(
            f"[{elapsed / 60:5.1f} min] kills {len(self.kills)} (restarted {answered}), "
            f"rss {last.get('rss_kb', 0) / 1024:.1f} MiB, fds {last.get('fds', 0):.0f}, "
            f"threads {last.get('threads', 0):.0f}",
            flush=True,
        )

    def stop(self) -> tuple[bool, list[int]]:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = -9
        left = [pid for pids in self.processes().values() for pid in pids]
        return code == 0, left

    def report(self, elapsed: float, stopped_cleanly: bool, left: list[int]) -> dict[str, Any]:
        samples = self.samples
        warm = [s for s in samples if s["t"] >= WARM_UP * elapsed] or samples
        head, tail = warm[: max(3, len(warm) // 10)], warm[-max(3, len(warm) // 10) :]

        def figures(key: str) -> dict[str, float]:
            values = [s[key] for s in samples]
            return {
                "first": values[0] if values else 0.0,
                "baseline": statistics.median(s[key] for s in head) if head else 0.0,
                "end": statistics.median(s[key] for s in tail) if tail else 0.0,
                "min": min(values, default=0.0),
                "max": max(values, default=0.0),
            }

        rss, fds, threads = figures("rss_kb"), figures("fds"), figures("threads")
        rss_growth = rss["end"] - rss["baseline"]
        missed = [
            {"task": k.task, "instance": k.slot, "pid": k.pid, "at": round(k.at, 1)}
            for k in self.kills
            if k.restarted_at is None
        ]
        late = [
            k
            for k in self.kills
            if k.restarted_at is not None and k.restarted_at - k.at > RESTART_DEADLINE
        ]
        delays = sorted(k.restarted_at - k.at for k in self.kills if k.restarted_at is not None)
        rss_limit = max(RSS_GROWTH_FLOOR_KB, rss["baseline"] * RSS_GROWTH_LIMIT)
        checks = {
            "every kill followed by a restart": not missed and not late,
            "memory flat": rss_growth <= rss_limit,
            "descriptors flat": fds["end"] - fds["baseline"] <= FD_GROWTH_LIMIT,
            "threads flat": threads["end"] == threads["baseline"]
            and threads["max"] - threads["baseline"] <= THREAD_BURST_LIMIT,
            "stopped cleanly, nothing left behind": stopped_cleanly and not left,
        }  # fmt: skip
        log = (self.root / "taskforce.log").read_text(errors="replace")
        return {
            "duration_s": round(elapsed, 1),
            "tasks": self.args.tasks,
            "seed": self.args.seed,
            "actions": dict(sorted(self.actions.items())),
            "kills": len(self.kills),
            "restarts_seen": len(self.kills) - len(missed),
            "restart_delay_s": {
                "median": round(statistics.median(delays), 3) if delays else None,
                "max": round(delays[-1], 3) if delays else None,
            },
            "missed_restarts": missed,
            "rss_kb": rss,
            "fds": fds,
            "threads": threads,
            "tracebacks_in_log": log.count("Traceback"),
            "checks": checks,
            "passed": all(checks.values()),
            "samples": samples,
        }


def markdown(report: dict[str, Any]) -> str:
    rss, fds, threads = report["rss_kb"], report["fds"], report["threads"]
    lines = [
        "# taskforce soak report",
        "",
        f"- duration: {report['duration_s'] / 60:.1f} min, {report['tasks']} tasks, "
        f"seed {report['seed']}",
        "- actions: " + ", ".join(f"{k} {v}" for k, v in report["actions"].items()),
        f"- kills: {report['kills']}, restarts seen: {report['restarts_seen']} "
        f"(delay median {report['restart_delay_s']['median']}s, "
        f"max {report['restart_delay_s']['max']}s)",
        f"- memory (RSS): baseline {rss['baseline'] / 1024:.1f} MiB, end "
        f"{rss['end'] / 1024:.1f} MiB, max {rss['max'] / 1024:.1f} MiB",
        f"- file descriptors: baseline {fds['baseline']:.0f}, end {fds['end']:.0f}, "
        f"max {fds['max']:.0f}",
        f"- threads: baseline {threads['baseline']:.0f}, max {threads['max']:.0f}",
        f"- tracebacks in the log: {report['tracebacks_in_log']}",
        "",
        "| check | result |",
        "| --- | --- |",
        *(f"| {name} | {'pass' if ok else 'FAIL'} |" for name, ok in report["checks"].items()),
        "",
        f"**{'PASSED' if report['passed'] else 'FAILED'}**",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=1800.0, help="seconds (default 1800)")
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pace", type=float, default=1.0, help="scale the pause between faults")
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds")
    parser.add_argument("--report", default="soak-report.json", help="JSON; .md beside it")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="taskforce-soak-"))
    run = Run(args, root)
    try:
        report = run.run()
    finally:
        if run.proc is not None and run.proc.poll() is None:
            run.proc.kill()
        # Whatever happened, leave nothing running.
        for pids in run.processes().values():
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if not args.keep:
            with contextlib.suppress(OSError):
                shutil.copy(root / "taskforce.log", Path(args.report).with_suffix(".log"))
            shutil.rmtree(root, ignore_errors=True)
    path = Path(args.report)
    path.write_text(json.dumps(report, indent=2) + "\n")
    path.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
