"""Faults: taskforce keeps working and loses nothing when its world misbehaves.

- taskforce itself SIGKILLed while 100 tasks run (twice, the second time mid-recovery);
- task processes that escape their process group, session or parent;
- a thousand children exiting at the same moment;
- tasks that ignore SIGTERM, stop commands that hang;
- a full disk under the task log directory;
- the configuration and roles files replaced by directories, unreadable, half written;
- running out of file descriptors, and of inotify instances and watches;
- the wall clock set back and forward.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from reliability_support import (  # noqa: F401 (fixtures)
    SLEEP,
    _run_frozen_source,
    frozen_source,
    need_root,
    no_tracebacks,
    settings,
    sleep_task,
    taskforce_argv,
)

from support.config import write_config
from support.probes import Probes, probe_task
from support.procfs import pid_alive, start_ticks, task_instances, task_processes, zombies_of
from support.runner import Taskforce
from support.wait import until, wait_for
from taskforce.runtime.own import paths as runtime_paths
from taskforce.runtime.processes import spawn as process

# ----- taskforce killed while 100 tasks run -------------------------------------------------


def hundred_tasks(tmp_path: Path) -> tuple[dict[str, Any], set[str], set[str]]:
    """90 wait tasks, 3 long once tasks, 4 adopt and 3 nowait daemons: 100 processes."""
    tasks: dict[str, Any] = {f"w{i:02}": sleep_task() for i in range(90)}
    tasks.update({f"once{i}": sleep_task(control="once") for i in range(3)})
    adopt, nowait = set(), set()
    for i in range(4):
        pidfile = str(tmp_path / f"adopt{i}.pid")
        tasks[f"adopt{i}"] = probe_task("--daemonize", pidfile, control="adopt", pidfile=pidfile)
        adopt.add(f"adopt{i}")
    for i in range(3):
        pidfile = str(tmp_path / f"nowait{i}.pid")
        tasks[f"nowait{i}"] = probe_task("--daemonize", pidfile, control="nowait", pidfile=pidfile)
        nowait.add(f"nowait{i}")
    return tasks, adopt, nowait


class DuplicateWatch:
    """Scans the test's processes until stopped: a task seen with two live processes at
    once is recorded (daemonizing tasks fork on purpose, and are left out)."""

    def __init__(self, marker: str, exclude: set[str]) -> None:
        self.marker = marker
        self.exclude = exclude
        self.duplicates: dict[str, list[int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> DuplicateWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            for task, pids in task_processes(self.marker).items():
                if len(pids) > 1 and task not in self.exclude:
                    self.duplicates.setdefault(task, pids)
            self._stop.wait(0.02)


def test_sigkill_with_100_tasks_running_then_start_again(
    taskforce: Taskforce, tmp_path: Path
) -> None:
    tasks, adopt, nowait = hundred_tasks(tmp_path)
    conf = write_config(tmp_path / "tf.conf", tasks, settings=settings(stop_timeout=2))
    taskforce.start("-f", str(conf), flags=("-e",))
    everything = set(tasks)

    def one_each() -> dict[str, list[int]] | None:
        found = task_processes(taskforce.marker)
        if set(found) == everything and all(len(p) == 1 for p in found.values()):
            return found
        return None

    wait_for(lambda: taskforce.log().count("daemon pid") == len(adopt | nowait), what="daemons")
    before = wait_for(one_each, what="one process for each of the 100 tasks")
    assert sum(len(p) for p in before.values()) == 100

    with DuplicateWatch(taskforce.marker, adopt | nowait) as watch:
        assert taskforce.proc is not None
        taskforce.proc.kill()
        taskforce.proc.wait(10)
        assert task_processes(taskforce.marker) == before  # the tasks outlive taskforce
        # Start again, and SIGKILL it once more in the middle of recovering.
        taskforce.start("-f", str(conf), flags=("-e", "-v"))
        taskforce.wait_log("stopping it to start afresh")
        taskforce.proc.kill()
        taskforce.proc.wait(10)
        taskforce.start("-f", str(conf), flags=("-e",))
        fresh = everything - adopt - {"once0", "once1", "once2"}

        def recovered() -> dict[str, list[int]] | None:
            found = task_processes(taskforce.marker)
            missing = {(t, len(found.get(t, ()))) for t in everything if len(found.get(t, ())) != 1}
            stale = {t for t in fresh - {m for m, _ in missing} if found[t] == before[t]}
            recovered.state = (sorted(missing), sorted(stale))  # type: ignore[attr-defined]
            return None if missing or stale else found

        try:
            after = wait_for(recovered, what="every task running, wait and nowait ones afresh")
        except AssertionError:
            raise AssertionError(f"(missing, stale): {recovered.state}") from None  # type: ignore[attr-defined]
    assert watch.duplicates == {}  # no task ever ran twice at once
    # Adopted daemons and running once tasks were kept, not run again.
    for task in adopt | {"once0", "once1", "once2"}:
        assert after[task] == before[task], task
    # No orphan: nothing of the old processes is left but what was kept.
    old = {pid for pids in before.values() for pid in pids}
    kept = {pid for task in adopt | {"once0", "once1", "once2"} for pid in before[task]}
    assert not {pid for pid in old - kept if pid_alive(pid)}
    assert taskforce.stop() == 0
    left = task_processes(taskforce.marker)
    assert set(left) == adopt and all(left[t] == before[t] for t in adopt)  # adopt outlives us


def dead_pid() -> int:
    """A pid that no longer runs."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    return gone.pid


def look_alike(taskforce: Taskforce, task: str, parent: int, *argv: str) -> subprocess.Popen[bytes]:
    """A process as taskforce `parent` starts for instance 0 of `task`, running `argv`."""
    script = f'exec env Task_pid=$$ Task_name={task} Task_instance=0 Task_ppid={parent} "$@"'
    return subprocess.Popen(
        ["sh", "-c", script, "sh", *argv], env=taskforce.env, start_new_session=True
    )


def empty_records(pidfile: Path, pid: int) -> None:
    """The records file a taskforce of process `pid` made before it started anything (a
    clean stop removes the file: then nobody looks), as if it was killed then."""
    since = start_ticks(os.getpid())  # before any look-alike of the test
    records = {"started": since, "pids": [pid], "processes": []}
    Path(f"{pidfile}.state").write_text(json.dumps(records))


def test_task_processes_started_but_not_yet_recorded_are_recognised(
    taskforce: Taskforce, tmp_path: Path
) -> None:
    """taskforce died between starting a process and recording it: the next one knows the
    process by what taskforce gave it (Task_name, Task_instance, Task_pid its own pid,
    Task_ppid a taskforce that is gone, the task's command) and never runs a second one.
    Look-alikes whose taskforce lives, or that run another command, are left alone."""
    gone = dead_pid()  # the dead taskforce
    orphan = look_alike(taskforce, "w", gone, SLEEP, "3600")
    alive_parent = look_alike(taskforce, "x", os.getpid(), SLEEP, "3600")  # its "taskforce" lives
    other = look_alike(taskforce, "y", gone, SLEEP, "1234")  # not y's command
    try:
        wait_for(lambda: all(len(task_processes(taskforce.marker).get(t, ())) == 1 for t in "wxy"),
                 what="look-alikes running")  # fmt: skip
        tasks = {"w": sleep_task(), "x": sleep_task(), "y": sleep_task()}
        conf = write_config(tmp_path / "tf.conf", tasks, settings=settings())
        # The dead taskforce had made its records file, with nothing in it yet, before it
        # started anything (a clean stop removes the file: then nobody looks).
        pidfile = tmp_path / "tf.pid"
        empty_records(pidfile, gone)
        taskforce.start("-p", str(pidfile), "-f", str(conf))
        taskforce.wait_log(f"w[0]: found pid {orphan.pid} still running: stopping it")
        wait_for(lambda: orphan.poll() is not None, what="the orphan stopped")
        wait_for(lambda: len(task_processes(taskforce.marker).get("y", ())) == 2, what="y")
        # w's own process starts once the orphan is gone: later than y's, on a busy host.
        wait_for(lambda: len(task_processes(taskforce.marker).get("w", ())) == 1, what="w")
        found = task_processes(taskforce.marker)
        assert len(found["w"]) == 1 and found["w"] != [orphan.pid]
        assert alive_parent.pid in found["x"] and other.pid in found["y"]  # left alone
        assert f"pid {alive_parent.pid}" not in taskforce.log()
        assert f"pid {other.pid}" not in taskforce.log()
        assert taskforce.stop() == 0
    finally:
        kill_groups(orphan, alive_parent, other)


def kill_groups(*procs: subprocess.Popen[bytes]) -> None:
    """SIGKILL each look-alike's process group and reap its leader."""
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def test_the_unrecorded_processes_of_another_dead_taskforce_are_left_alone(
    taskforce: Taskforce, tmp_path: Path
) -> None:
    """Two taskforces on one host run tasks of the same names and commands, and both die
    before recording what they started: the next one takes the processes of its own
    earlier taskforce (whose pid its records hold), and neither stops nor adopts the
    other's (three suites run at once on a loaded host stopped each other's once tasks)."""
    ours_gone, theirs_gone = dead_pid(), dead_pid()
    ours = look_alike(taskforce, "w", ours_gone, SLEEP, "3600")
    theirs = look_alike(taskforce, "w", theirs_gone, SLEEP, "3600")
    theirs_x = look_alike(taskforce, "x", theirs_gone, SLEEP, "3600")
    try:
        wait_for(lambda: [len(task_processes(taskforce.marker).get(t, ())) for t in "wx"] == [2, 1],
                 what="look-alikes running")  # fmt: skip
        tasks = {"w": sleep_task(), "x": sleep_task()}
        conf = write_config(tmp_path / "tf.conf", tasks, settings=settings())
        pidfile = tmp_path / "tf.pid"
        empty_records(pidfile, ours_gone)
        taskforce.start("-p", str(pidfile), "-f", str(conf))
        taskforce.wait_log(f"w[0]: found pid {ours.pid} still running: stopping it")
        wait_for(lambda: ours.poll() is not None, what="our orphan stopped")
        # x runs a process of its own beside the other taskforce's, which is left alone.
        wait_for(lambda: len(task_processes(taskforce.marker).get("x", ())) == 2, what="x")
        wait_for(lambda: len(task_processes(taskforce.marker).get("w", ())) == 2, what="w")
        assert theirs.poll() is None and theirs_x.poll() is None
        assert f"pid {theirs.pid}" not in taskforce.log()
        assert f"pid {theirs_x.pid}" not in taskforce.log()
        assert taskforce.stop() == 0
        assert theirs.poll() is None and theirs_x.poll() is None
    finally:
        kill_groups(ours, theirs, theirs_x)


def test_an_unrecorded_process_whose_dead_taskforce_pid_was_used_again_is_recognised(
    taskforce: Taskforce, tmp_path: Path
) -> None:
    """The pid of the taskforce that started an unrecorded process now names a process
    started after it (pids wrap within seconds on a busy host): that one cannot be its
    taskforce, so the process is still recognised rather than left running beside a new
    one (a loaded run of the test above failed so)."""
    given = tmp_path / "parent"
    script = (
        f"while [ ! -s {given} ]; do sleep 0.05; done; "
        f'exec env Task_pid=$$ Task_name=w Task_instance=0 Task_ppid=$(cat {given}) "$@"'
    )
    orphan = subprocess.Popen(
        ["sh", "-c", script, "sh", SLEEP, "3600"], env=taskforce.env, start_new_session=True
    )
    later: subprocess.Popen[bytes] | None = None
    try:
        # A process started a clock tick after the orphan: it holds the "reused" pid.
        born = start_ticks(orphan.pid)
        while later is None or start_ticks(later.pid) <= born:
            if later is not None:
                later.kill()
                later.wait(10)
            later = subprocess.Popen([SLEEP, "3600"])
        given.write_text(str(later.pid))
        wait_for(lambda: len(task_processes(taskforce.marker).get("w", ())) == 1,
                 what="the orphan running")  # fmt: skip
        conf = write_config(tmp_path / "tf.conf", {"w": sleep_task()}, settings=settings())
        pidfile = tmp_path / "tf.pid"
        empty_records(pidfile, later.pid)
        taskforce.start("-p", str(pidfile), "-f", str(conf))
        taskforce.wait_log(f"w[0]: found pid {orphan.pid} still running: stopping it")
        wait_for(lambda: orphan.poll() is not None, what="the orphan stopped")
        assert taskforce.stop() == 0
    finally:
        for proc in (orphan, later):
            if proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(10)


# A task process as redis runs with `--save ""`: an empty word, and words that are not
# UTF-8 or very long, must come back from /proc exactly as they were given.
ODD_WORDS = {"empty": "", "not-utf-8": "\udcff\udcfe-\udce9", "long": "x" * 100_000}
SLEEPER = "import time\ntime.sleep(3600)"


@pytest.mark.parametrize("word", list(ODD_WORDS.values()), ids=list(ODD_WORDS))
def test_an_unrecorded_process_with_odd_arguments_is_recognised(
    taskforce: Taskforce, tmp_path: Path, word: str
) -> None:
    """taskforce SIGKILLed after starting a process but before recording it (its records
    name nothing): the next one must recognise the process by its environment and exact
    command line, never start a second one beside it."""
    # Through the environment: a configuration file is UTF-8 text, an environment is bytes.
    taskforce.env["ODD_WORD"] = word
    task = {"commands": {"start": [sys.executable, "-c", SLEEPER, "a", "{ODD_WORD}", "b"]}}
    conf = write_config(tmp_path / "tf.conf", {"w": task}, settings=settings())
    pidfile = tmp_path / "tf.pid"
    taskforce.start("-p", str(pidfile), "-f", str(conf))
    (first,) = wait_for(lambda: task_processes(taskforce.marker).get("w"), what="w running")
    given = Path(f"/proc/{first}/cmdline").read_bytes().split(b"\0")[3:6]
    assert given == [b"a", os.fsencode(word), b"b"]  # the word reached the process as is
    assert taskforce.proc is not None
    taskforce.proc.kill()
    taskforce.proc.wait(10)
    # As if it had died before recording `first`.
    state = Path(runtime_paths.default_state_file(str(pidfile), str(conf)))
    records = json.loads(state.read_text())
    records["processes"] = []
    state.write_text(json.dumps(records))
    with DuplicateWatch(taskforce.marker, set()) as watch:
        taskforce.start("-p", str(pidfile), "-f", str(conf))
        taskforce.wait_log(f"w[0]: found pid {first} still running: stopping it")
        wait_for(lambda: not pid_alive(first), what="the earlier process stopped")
        wait_for(lambda: len(task_processes(taskforce.marker).get("w", ())) == 1, what="w again")
    assert watch.duplicates == {}
    assert taskforce.stop() == 0


# ----- escaping task processes --------------------------------------------------------------

# The leader starts three escapees, all ignoring SIGTERM: one in a process group of its
# own, one in a session of its own, and a classic daemon (fork, setsid, fork) whose own
# child escapes into yet another session. It writes their pids, one per line, then waits.
ESCAPEES = r"""
import os, signal, sys, time
out = sys.argv[1]

def hold():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        time.sleep(3600)

def child(setup):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        setup(w)
        hold()
    os.close(w)
    return r

def own_group(w):
    os.setpgid(0, 0)
    os.write(w, b"%d\n" % os.getpid()); os.close(w)

def own_session(w):
    os.setsid()
    os.write(w, b"%d\n" % os.getpid()); os.close(w)

def daemon(w):
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.write(w, b"%d\n" % os.getpid())
    if os.fork() == 0:
        os.setsid()
        os.write(w, b"%d\n" % os.getpid()); os.close(w)
        hold()
    os.close(w)

pids = b""
for setup in (own_group, own_session, daemon):
    r = child(setup)
    while chunk := os.read(r, 100):
        pids += chunk
    os.close(r)
with open(out + ".tmp", "wb") as f:
    f.write(pids)
os.rename(out + ".tmp", out)
while True:
    signal.pause()
"""


def test_escapees_of_every_kind_are_stopped_and_reaped(
    taskforce: Taskforce, tmp_path: Path
) -> None:
    record = tmp_path / "escapees"
    task = {"commands": {"start": [sys.executable, "-c", ESCAPEES, str(record)]}}
    conf = write_config(tmp_path / "tf.conf", {"esc": task}, settings=settings(stop_timeout=1))
    taskforce.start("-f", str(conf))

    def escapees() -> list[int]:
        pids = [
            int(p) for p in wait_for(record.exists, what="escapees") and record.read_text().split()
        ]
        assert len(pids) == 4
        record.unlink()
        return pids

    first = escapees()
    assert all(pid_alive(p) for p in first)
    leader = int(
        taskforce.wait_log("esc[0]: started pid").split("esc[0]: started pid ")[1].split()[0]
    )
    os.kill(leader, signal.SIGKILL)  # the wait task restarts: its escapees must go first
    wait_for(lambda: not any(pid_alive(p) for p in first), what="escapees stopped")
    second = wait_for(lambda: record.exists() and escapees(), what="new escapees")
    # Everything that exited was reaped by taskforce (its subreaper), none left a zombie.
    wait_for(lambda: not zombies_of(taskforce.pid), what="no zombies under taskforce")
    assert taskforce.stop() == 0
    assert not any(pid_alive(p) for p in second)
    assert not task_processes(taskforce.marker)


# ----- a thousand children exiting at once --------------------------------------------------


@pytest.mark.timeout(180)
def test_a_thousand_children_exiting_at_once_are_all_restarted(
    taskforce: Taskforce, tmp_path: Path
) -> None:
    count = 1000
    conf = write_config(
        tmp_path / "tf.conf",
        {"many": sleep_task(count=count)},
        settings=settings(restart={"min_uptime": 0}, stop_timeout=5),
    )
    taskforce.start("-f", str(conf), flags=("-e", "-q"))

    def all_running() -> dict[int, list[int]] | None:
        found = task_instances(taskforce.marker, "many")
        ok = len(found) == count and all(len(p) == 1 for p in found.values())
        return found if ok else None

    before = wait_for(all_running, timeout=120, what=f"{count} processes")
    old = {pids[0] for pids in before.values()}
    for pid in old:  # as close to the same moment as signals get
        os.kill(pid, signal.SIGKILL)
    after = wait_for(
        lambda: (found := all_running()) and not {p[0] for p in found.values()} & old and found,
        timeout=120,
        what=f"all {count} restarted",
    )
    assert sorted(after) == list(range(count))
    wait_for(lambda: not zombies_of(taskforce.pid), what="every exit reaped")
    assert taskforce.running()
    assert taskforce.stop(timeout=120) == 0
    assert not task_processes(taskforce.marker)


SIGCHLD_BURST = r"""
import asyncio, os, signal
from taskforce.core.spec import DesiredState
from taskforce.runtime.loop.supervisor import Supervisor

async def main():
    supervisor = Supervisor(DesiredState())

    def burst():
        for _ in range(3000):
            os.kill(os.getpid(), signal.SIGCHLD)
        supervisor.stop()

    asyncio.get_running_loop().call_later(0.1, burst)
    await supervisor.run()

asyncio.run(main())
print("done")
"""


def test_a_burst_of_sigchld_does_not_flood_the_log() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SIGCHLD_BURST], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "done", result.stderr[-2000:]
    assert "Exception ignored" not in result.stderr, result.stderr[:600]


# ----- stubborn tasks and hanging stop commands ---------------------------------------------


def test_tasks_ignoring_sigterm_and_stop_commands_that_hang(
    taskforce: Taskforce, probes: Probes, tmp_path: Path
) -> None:
    """A restart of a task that ignores SIGTERM escalates to SIGKILL; a stop command that
    hangs (and does not stop its task) is killed together with its task."""
    hang = [sys.executable, "-c", "import time; time.sleep(3600)"]
    tasks = {
        "stubborn": probe_task("--ignore-term"),
        "hangs": sleep_task(commands={"start": [SLEEP, "3600"], "stop": hang}),
    }
    conf = write_config(tmp_path / "tf.conf", tasks, settings=settings(stop_timeout=1))
    taskforce.start("-f", str(conf))
    (stubborn,) = probes.wait(1, task="stubborn")
    wait_for(lambda: "hangs" in task_processes(taskforce.marker), what="tasks")
    # A change of its command restarts the stubborn task: SIGTERM, then SIGKILL.
    tasks["stubborn"] = probe_task("--ignore-term", "--changed")
    write_config(tmp_path / "tf.conf", tasks, settings=settings(stop_timeout=1))
    taskforce.wait_log(f"pid {stubborn['pid']} killed by SIGKILL")
    probes.wait(2, task="stubborn")
    assert not pid_alive(stubborn["pid"])
    # Stopping everything: the hung stop command goes with its task.
    assert taskforce.stop(timeout=20) == 0
    assert "hangs[0]: killing its stop command" in taskforce.log()
    assert not task_processes(taskforce.marker)
    no_tracebacks(taskforce.log())


def test_a_stop_command_that_stops_its_task_then_hangs_does_not_hold_taskforce(
    taskforce: Taskforce, tmp_path: Path
) -> None:
    kill_then_hang = [
        sys.executable, "-c",
        "import os, sys, time; os.kill(int(sys.argv[1]), 15); time.sleep(3600)", "{Task_pid}",
    ]  # fmt: skip
    tasks = {"stops": sleep_task(commands={"start": [SLEEP, "3600"], "stop": kill_then_hang})}
    conf = write_config(tmp_path / "tf.conf", tasks, settings=settings(stop_timeout=1))
    taskforce.start("-f", str(conf))
    wait_for(lambda: "stops" in task_processes(taskforce.marker), what="the task")
    assert taskforce.stop(timeout=5) == 0  # the stop timeout is 1s
    assert not task_processes(taskforce.marker)


# ----- a full disk --------------------------------------------------------------------------


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    need_root()
    where.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {result.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(directory: Path) -> Path:
    """Fill the file system of `directory` to the last byte; the filler file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 1 << 10, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


# Prints a numbered line every 10 ms; keeps its progress in a file elsewhere, so the test
# sees it is never blocked by a full disk behind its stdout.
TALKER = r"""
import sys, time, os
progress = sys.argv[1]
n = 0
while True:
    n += 1
    print(f"line {n} " + "x" * 60, flush=True)
    if n % 10 == 0:
        with open(progress + ".tmp", "w") as f:
            f.write(str(n))
        os.replace(progress + ".tmp", progress)
    time.sleep(0.01)
"""


def test_a_full_disk_under_the_log_directory(taskforce: Taskforce, tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "logs", "512k") as logs:
        progress = tmp_path / "progress"
        output = logs / "talk.log"
        tasks = {
            "talk": {
                "commands": {"start": [sys.executable, "-c", TALKER, str(progress)]},
                "output": {"stdout": str(output)},
            },
            "crash": {
                "commands": {"start": [SLEEP, "0.2"]},
                "output": {"stdout": str(logs / "crash.log")},
            },
        }
        conf = write_config(tmp_path / "tf.conf", tasks, settings=settings())
        taskforce.start("-f", str(conf), flags=("-e",))
        wait_for(lambda: output.exists() and output.stat().st_size > 0, what="output")
        filler = fill(logs)
        taskforce.wait_log(f"output to {output}")  # "...: No space left on device"
        assert "No space left on device" in taskforce.log()

        def seen() -> int:
            try:
                return int(progress.read_text())
            except (OSError, ValueError):
                return 0

        full_at = seen()
        crashes = taskforce.log().count("crash[0]: pid")
        # The talker is never blocked behind its full pipe; the crashing task restarts.
        wait_for(lambda: seen() > full_at + 100, what="the talker carrying on")
        wait_for(lambda: taskforce.log().count("crash[0]: pid") > crashes + 3, what="restarts")
        # Room again: output is written again.
        filler.unlink()
        freed_at = seen()
        taskforce.wait_log("works again")

        def written_after() -> bool:
            numbers = [int(line.split()[1]) for line in output.read_text().splitlines()
                       if line.startswith("line ")]  # fmt: skip
            return bool(numbers) and max(numbers) > freed_at

        wait_for(written_after, what="output written after space was freed")
        assert taskforce.stop() == 0
    no_tracebacks(taskforce.log())


# ----- configuration and roles files replaced, unreadable, half written ---------------------


def test_broken_configuration_and_roles_files_keep_everything_running(
    taskforce: Taskforce, tmp_path: Path
) -> None:
    need_root()
    conf = tmp_path / "tf.conf"
    roles = tmp_path / "roles"
    roles.write_text("web\n")
    tasks = {"a": sleep_task(), "b": sleep_task(roles="web"), "d": sleep_task(roles="db")}
    write_config(conf, tasks, settings=settings())
    # Without the capabilities that let root read any file, a mode 000 file is unreadable.
    taskforce.spawn(
        ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--",
         *taskforce_argv("-f", str(conf), "-r", str(roles))]
    )  # fmt: skip
    wait_for(lambda: set(task_processes(taskforce.marker)) == {"a", "b"}, what="a and b")
    running = task_processes(taskforce.marker)
    mark = 0

    def then(text: str) -> None:
        """Wait for `text` in what taskforce logged since the last call."""
        nonlocal mark
        found = wait_for(lambda: (at := taskforce.log().find(text, mark)) >= 0 and at + 1,
                         what=repr(text))  # fmt: skip
        mark = found - 1 + len(text)
        assert task_processes(taskforce.marker) == running, text
        assert taskforce.running()

    for path, directory, unreadable in (
        (
            conf,
            "cannot read the file: is a directory, not a regular file",
            "cannot read the file: Permission denied",
        ),
        (
            roles,
            "cannot read the file: is a directory, not a regular file",
            "cannot read the file: Permission denied",
        ),
    ):
        # Replaced by a directory, then put back.
        path.rename(tmp_path / "aside")
        path.mkdir()
        then(directory)
        then("new configuration not applied")
        path.rmdir()
        (tmp_path / "aside").rename(path)
        then("configuration reloaded: nothing changed")
        # Unreadable, then readable again.
        path.chmod(0)
        then(unreadable)
        then("new configuration not applied")
        path.chmod(0o644)
        then("configuration reloaded: nothing changed")
    # The configuration truncated mid-write (the writer died): refused; then completed.
    tasks["c"] = sleep_task()
    write_config(tmp_path / "next.conf", tasks, settings=settings())
    complete = (tmp_path / "next.conf").read_text()
    conf.write_text(complete[: len(complete) // 2])
    then("found unexpected end of stream")
    then("new configuration not applied")
    conf.write_text(complete)
    wait_for(lambda: set(task_processes(taskforce.marker)) == {"a", "b", "c"}, what="c started")
    running = task_processes(taskforce.marker)
    mark = len(taskforce.log())
    # The roles file truncated mid-write: whatever it says meanwhile, the end state holds.
    roles.write_text("web\nd")
    then("configuration reloaded")
    roles.write_text("web\ndb\n")
    wait_for(lambda: set(task_processes(taskforce.marker)) == {"a", "b", "c", "d"}, what="db")
    after = task_processes(taskforce.marker)
    assert all(after[t] == running[t] for t in ("a", "b", "c"))
    running = after
    mark = len(taskforce.log())
    # Either file deleted: the running configuration and roles stay.
    roles.unlink()
    then("keeping roles as they were")
    conf.unlink()
    then("cannot read the file: No such file or directory")
    then("new configuration not applied")
    assert taskforce.stop() == 0
    no_tracebacks(taskforce.log())


# ----- running out of file descriptors ------------------------------------------------------


def test_running_out_of_file_descriptors_degrades_and_recovers(
    taskforce: Taskforce, tmp_path: Path
) -> None:
    """taskforce at its open file limit: restarts go on, or fail with a clear reason and are
    retried (fork from Python needs a pipe), the control socket waits, a configuration
    change cannot be read; once the limit is lifted everything catches up."""
    pidfile = tmp_path / "tf.pid"
    quick = {k: v for k, v in settings().items() if k != "http"}  # the control socket too

    def write(count: int) -> None:
        write_config(tmp_path / "tf.conf", {f"t{i}": sleep_task() for i in range(count)},
                     settings=quick)  # fmt: skip

    write(20)
    taskforce.start("-p", str(pidfile), "-f", str(tmp_path / "tf.conf"))
    wait_for(lambda: len(task_processes(taskforce.marker)) == 20, what="20 tasks")
    sock = f"unix:{tmp_path / 'tf.sock'}"
    assert _answers(sock)
    pid = taskforce.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    # Not one descriptor more: the lowest free one is already over the limit.
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (3, hard))
    victims = [task_processes(taskforce.marker)[f"t{i}"][0] for i in range(3)]
    for victim in victims:
        os.kill(victim, signal.SIGKILL)
    if process._vfork is not None:  # type: ignore[attr-defined]  # the C extension, if built
        # vfork needs no new descriptor: the three are started again, but they inherit the
        # limit of 3, so they cannot join their cgroup (where there is one) or their dynamic
        # loader cannot open libc (exit 127): either way they are retried.
        def retried() -> bool:
            log = taskforce.log()
            return log.count("exited 127") + log.count("could not start: joining") >= 6

        wait_for(retried, what="retries")
        assert len(task_processes(taskforce.marker)) == 17
    else:
        # fork from Python needs a pipe for the child's error report.
        taskforce.wait_log("Too many open files: taskforce has reached its limit")
        # It keeps retrying; the other tasks keep running.
        wait_for(lambda: taskforce.log().count("Too many open files") >= 6, what="retries")
        assert len(task_processes(taskforce.marker)) == 17
    assert taskforce.running()
    # A client meanwhile: its connection waits (taskforce cannot accept it), said once.
    assert not _answers(sock, timeout=1)
    taskforce.wait_log("HTTP service cannot accept connections: Too many open files")
    # A configuration change meanwhile: it cannot be read, and says so.
    reloads = taskforce.log().count("configuration or roles file changed")
    write(21)
    wait_for(lambda: taskforce.log().count("configuration or roles file changed") > reloads,
             what="the change noticed")  # fmt: skip
    # The limit is lifted: the missing tasks start, the change is applied once it is
    # noticed again, the socket answers.
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    wait_for(lambda: len(task_processes(taskforce.marker)) >= 20, what="the three restarted")
    if len(task_processes(taskforce.marker)) < 21:
        write(21)
    wait_for(lambda: len(task_processes(taskforce.marker)) == 21, what="t20 from the new config")
    wait_for(lambda: _answers(sock), what="the control socket answering")
    assert taskforce.stop() == 0
    no_tracebacks(taskforce.log())
    assert "Exception in callback" not in taskforce.log()
    assert taskforce.log().count("HTTP service cannot accept connections") == 1


def _answers(address: str, timeout: float = 5) -> bool:
    from reliability_support import request

    try:
        return request(address, "GET", "/status/version", timeout=timeout).status == 200
    except OSError:
        return False


# ----- running out of inotify instances and watches -----------------------------------------


def in_user_namespace(limits: dict[str, int], argv: list[str]) -> list[str]:
    """`argv` in a new user namespace whose inotify limits are `limits` (the limits are per
    user namespace: the host's stay as they are)."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed")
    probe = subprocess.run(
        ["unshare", "-U", "-r", "sh", "-c", "echo 1 > /proc/sys/user/max_inotify_watches"],
        capture_output=True,
    )
    if probe.returncode != 0:
        pytest.skip("user namespaces with their own inotify limits are not available")
    sets = " && ".join(f"echo {v} > /proc/sys/user/{k}" for k, v in limits.items())
    return ["unshare", "-U", "-r", "sh", "-c", f'{sets} && exec "$@"', "sh", *argv]


def set_namespace_limit(pid: int, name: str, value: int) -> None:
    subprocess.run(
        ["nsenter", "-t", str(pid), "-U", "--preserve-credentials", "sh", "-c",
         f"echo {value} > /proc/sys/user/{name}"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("limit", "degraded"),
    [
        ("max_inotify_watches", "inotify watch limit reached"),
        ("max_inotify_instances", "cannot start inotify"),
    ],
)
def test_running_out_of_inotify_degrades_to_polling_and_keeps_working(
    taskforce: Taskforce, probes: Probes, tmp_path: Path, limit: str, degraded: str
) -> None:
    watched = tmp_path / "elsewhere" / "app.conf"
    watched.parent.mkdir()
    watched.write_text("1")
    tasks = {
        "svc": probe_task(events=[{"type": "file_change", "path": str(watched), "signal": "HUP"}])
    }
    conf = write_config(tmp_path / "tf.conf", tasks, settings=settings())
    # One watch: the configuration's directory gets it, the other directory does not.
    value = 1 if limit == "max_inotify_watches" else 0
    argv = in_user_namespace({limit: value}, taskforce_argv("-f", str(conf)))
    taskforce.spawn(argv)
    probes.wait(1, task="svc")
    taskforce.wait_log(degraded)
    assert "polling" in taskforce.log()
    # Changes are still seen: the event file (polled) and the configuration.
    hups = taskforce.log().count("sending SIGHUP")
    watched.write_text("2")
    wait_for(lambda: taskforce.log().count("sending SIGHUP") > hups, what="the event")
    tasks["more"] = sleep_task()
    write_config(conf, tasks, settings=settings())
    wait_for(lambda: "more" in task_processes(taskforce.marker), what="reload")
    # The limit lifted: everything goes on working.
    inner = int(
        taskforce.wait_log("acting as child subreaper").split("taskforce[")[1].split("]")[0]
    )
    set_namespace_limit(inner, limit, 8192)
    hups = taskforce.log().count("sending SIGHUP")
    watched.write_text("3")
    wait_for(lambda: taskforce.log().count("sending SIGHUP") > hups, what="the event again")
    del tasks["more"]
    write_config(conf, tasks, settings=settings())
    wait_for(lambda: "more" not in task_processes(taskforce.marker), what="second reload")
    assert taskforce.stop() == 0
    no_tracebacks(taskforce.log())


# ----- clock jumps --------------------------------------------------------------------------

FAKETIME_LIBS = [
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
]


def clock_tasks() -> dict[str, Any]:
    """`flap` fails and is restarted after a backoff; `late` waits an hour for `base`'s
    start_delay; `limited` has an hour's time limit. A wall clock timer would misfire."""
    return {
        "flap": sleep_task(commands={"start": [SLEEP, "0.1"]}),
        "base": sleep_task(start_delay=3600),
        "late": sleep_task(requires="base"),
        "limited": sleep_task(time_limit=3600),
    }


CLOCK_SETTINGS = settings(restart={"min_uptime": 5, "initial_delay": 0.2, "factor": 1})


def test_wall_clock_jumps_neither_fire_nor_hold_timers(
    taskforce: Taskforce, tmp_path: Path
) -> None:
    """taskforce under libfaketime: its wall clock is set back two days, then forward
    three (the monotonic clock runs on, as on a real host)."""
    library = next((lib for lib in FAKETIME_LIBS if os.path.exists(lib)), None)
    if library is None:
        pytest.skip("libfaketime is not installed (apt-get install faketime)")
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    taskforce.env.update(
        LD_PRELOAD=library,
        FAKETIME_TIMESTAMP_FILE=str(offset),
        FAKETIME_NO_CACHE="1",
        FAKETIME_DONT_FAKE_MONOTONIC="1",
        DONT_FAKE_MONOTONIC="1",
    )
    conf = write_config(tmp_path / "tf.conf", clock_tasks(), settings=CLOCK_SETTINGS)
    taskforce.start("-f", str(conf))

    def restarts() -> int:
        return taskforce.log().count("flap[0]: started pid")

    wait_for(lambda: restarts() >= 2, what="flap restarting")
    steady = task_processes(taskforce.marker)
    for jump in ("-2d", "+3d", "-10y", "+20y"):
        offset.write_text(f"{jump}\n")
        seen = restarts()
        # Backoff timers still fire (a clock set back holds nothing)...

        def restarted(s: int = seen) -> bool:
            return restarts() >= s + 2

        wait_for(restarted, what=f"restarts after {jump}")
        # ...and long timers do not fire early (a clock set forward fires nothing).
        now = task_processes(taskforce.marker)
        assert "late" not in now, jump
        assert now["base"] == steady["base"] and now["limited"] == steady["limited"], jump
    assert "time limit" not in taskforce.log()
    assert taskforce.stop() == 0


def test_timers_follow_the_loop_clock_not_the_wall_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process: time.time() jumps by days at every call; the supervisor's timers run on
    the event loop's monotonic clock and behave exactly as without the jumps."""
    from taskforce.runtime.legion import Legion

    real = time.time
    jumps = iter([-2 * 86400, 3 * 86400, -3650 * 86400, 7300 * 86400] * 100000)
    monkeypatch.setattr(time, "time", lambda: real() + next(jumps))
    conf = write_config(tmp_path / "tf.conf", clock_tasks(), settings=CLOCK_SETTINGS)
    legion = Legion(str(conf), state_file=None)
    marker = os.environ.get("TF_TEST_MARKER")

    async def scenario() -> None:
        serving = asyncio.ensure_future(legion.serve())
        try:

            def flapped() -> bool:
                supervisor = legion.supervisor
                state = supervisor.planner.tasks.get("flap") if supervisor else None
                return (
                    state is not None and bool(state.instances) and state.instances[0].starts >= 6
                )

            await until(flapped, "flap restarted five times")
            supervisor = legion.supervisor
            assert supervisor is not None
            tasks = supervisor.planner.tasks
            assert tasks["late"].instances.get(0) is None or tasks["late"].instances[0].pid is None
            assert tasks["limited"].instances[0].starts == 1
            assert tasks["base"].instances[0].starts == 1
        finally:
            legion.stop()
            await asyncio.wait_for(serving, 30)

    try:
        asyncio.run(scenario())
    finally:
        del marker


_ = (errno, json)  # (for readers extending these tests)
