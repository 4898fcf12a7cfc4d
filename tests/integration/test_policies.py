"""Runtime policies with real processes: a schedule running a task (run_on_start, overlap
skip, next_run in status), a liveness probe failing until the process is restarted (and
notified), and a task giving up at restart.max_failures until `taskforce start`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from support.config import FAST, write_config
from support.probes import Probes, probe_task
from support.runner import Taskforce
from support.wait import wait_for

# A notification command that appends "EVENT TASK DETAIL" to the file named in argv[1].
NOTE = "import os, sys\nwith open(sys.argv[1], 'a') as f: f.write(' '.join(os.environ[k] for k in ('TASKFORCE_EVENT', 'TASKFORCE_TASK', 'TASKFORCE_DETAIL')) + '\\n')"  # noqa: E501


def start(taskforce: Taskforce, tmp_path: Path, tasks: dict[str, Any]) -> tuple[str, Path]:
    """Run taskforce on `tasks` with a control socket and notifications to a file."""
    sock, notes = str(tmp_path / "tf.sock"), tmp_path / "notes"
    settings = {
        **FAST,
        "http": {"listen": sock, "allow_control": True},
        "notify": {"command": [sys.executable, "-c", NOTE, str(notes)]},
    }
    conf = write_config(tmp_path / "tf.conf", tasks, settings=settings)
    taskforce.start("-f", str(conf))
    wait_for(lambda: os.path.exists(sock), what="the control socket")
    return sock, notes


def status(taskforce: Taskforce, sock: str) -> tuple[int, dict[str, Any]]:
    done = taskforce.run("status", "--json", "--server", sock)
    return done.returncode, json.loads(done.stdout)


def notes_of(path: Path, event: str) -> list[str]:
    text = path.read_text() if path.exists() else ""
    return [line for line in text.splitlines() if line.startswith(event + " ")]


def test_an_interval_schedule_runs_a_once_task_and_shows_its_next_run(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    job = probe_task("--exit-after", "0", control="once", schedule={"interval": 1})
    sock, _ = start(taskforce, tmp_path, {"job": job, "anchor": probe_task()})
    (anchor,) = probes.wait(1, task="anchor")
    _, tasks = status(taskforce, sock)
    assert tasks["job"]["next_run_t"] is not None
    first, second = probes.wait(2, task="job")[:2]

    # Not at start (run_on_start is false) but an interval later, the second run two
    # intervals after the start at least (the timer never fires early); no upper bound.
    # By when each process was made (its start in /proc), not when its interpreter got
    # round to stamping: that lags by a varying amount on a busy machine.
    def made(probe: dict[str, Any]) -> float:
        return int(probe["start_ticks"]) / os.sysconf("SC_CLK_TCK")

    assert made(first) - made(anchor) >= 0.9
    assert made(second) - made(anchor) >= 1.9
    assert "job: run requested (schedule)" in taskforce.log()


def test_run_on_start_and_overlap_skip_never_run_twice_at_once(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    # Each run takes 1.2 s and one is due every 0.5 s: most due runs find one going.
    schedule = {"interval": 0.5, "run_on_start": True, "overlap": "skip"}
    job = probe_task("--exit-after", "1.2", control="once", schedule=schedule)
    start(taskforce, tmp_path, {"job": job})
    probes.wait(1, task="job")  # at start, not half a second later
    taskforce.wait_log("job: scheduled run skipped")
    exits = probes.wait(2, kind="exit", task="job")
    starts = probes.records(task="job")
    # Each run starts after the one before it exited.
    for ended, began in zip(exits, starts[1:], strict=False):
        assert began["monotonic"] >= ended["monotonic"]


def test_a_failing_liveness_probe_restarts_the_process_and_notifies(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    flag = tmp_path / "healthy"
    flag.write_text("")
    check = [sys.executable, "-c", f"import os, sys; sys.exit(not os.path.exists({str(flag)!r}))"]
    live = {"command": check, "interval": 0.2, "failures": 2, "timeout": 5}
    sock, notes = start(taskforce, tmp_path, {"svc": probe_task(live=live)})
    (first,) = probes.wait(1, task="svc")
    taskforce.wait_log("svc[0]: started")
    flag.unlink()  # the process keeps running, its probe now fails
    probes.wait(2, task="svc")
    assert probes.records("term", task="svc")[0]["pid"] == first["pid"]
    log = taskforce.log()
    assert "is unhealthy: liveness probe failed 2 times in a row: probe command exited 1" in log
    wait_for(lambda: notes_of(notes, "unhealthy"), what="the unhealthy notification")
    assert "svc liveness probe failed 2 times" in notes_of(notes, "unhealthy")[0]
    flag.write_text("")  # healthy again: no more restarts
    _, tasks = status(taskforce, sock)
    assert tasks["svc"]["processes"][0]["live_failures"] is not None


def test_max_failures_gives_up_until_taskforce_start(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    # Every end a failure, however long the interpreter takes to start and exit on a busy
    # machine: a run that outlives min_uptime is not one, and would reset the count.
    restart = {"max_failures": 3, "min_uptime": 60}
    crash = probe_task("--exit-after", "0", "--exit-code", "3", restart=restart)
    sock, notes = start(taskforce, tmp_path, {"crash": crash})
    wait_for(lambda: status(taskforce, sock)[1]["crash"]["state"] == "failed", what="failed")
    assert len(probes.records(task="crash")) == 3
    code, tasks = status(taskforce, sock)
    assert code == 3
    assert "restart.max_failures" in tasks["crash"]["why"]
    assert [h["kind"] for h in tasks["crash"]["history"]][-1] == "gave up"
    wait_for(lambda: notes_of(notes, "failed"), what="the failed notification")
    assert "giving up, restart.max_failures reached" in taskforce.log()

    started = taskforce.run("start", "--server", sock, "crash")
    assert started.returncode == 0, started.stderr
    # Counted afresh: three more failures, then failed again, and notified once each time.
    probes.wait(6, task="crash")
    wait_for(lambda: status(taskforce, sock)[1]["crash"]["state"] == "failed", what="failed")
    wait_for(lambda: len(notes_of(notes, "failed")) == 2, what="a second failed notification")
    assert len(probes.records(task="crash")) == 6
    assert len(notes_of(notes, "failed")) == 2
