"""Reaping many children: each exit of a process being stopped is found through its
pidfd and reaped by its pid, not by waitpid(-1), which walks the list of every child at
each call (N exits among N children would cost N walks of up to N each)."""

from __future__ import annotations

import json
import subprocess
import sys

# In a fresh interpreter: its children are the ones it starts, nobody else's, and no
# other test's children are reaped by its walks.
_SCENARIO = """
import collections, json, os, select, signal, time
from taskforce.core.spec import LaunchSpec
from taskforce.runtime.processes.runner import OsProcesses, StartRequest

def zombie(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "Z"

def wait_zombie(pid):
    # A pidfd turns readable once the process has exited (a zombie until reaped).
    fd = os.pidfd_open(pid)
    try:
        assert select.select([fd], [], [], 30)[0], pid
    finally:
        os.close(fd)
    assert zombie(pid), pid

runner = OsProcesses()
runner.walk_interval = 3600.0
launch = LaunchSpec("/bin/sleep", ("sleep", "60"), (("PATH", "/usr/bin:/bin"),))
null = os.open(os.devnull, os.O_RDWR)
held = len(os.listdir("/proc/self/fd"))
started = runner.start([StartRequest(launch, null, null, null)] * 40)
pids = [s.pid for s in started]
# Running processes hold no descriptor (vfork would copy each into every child).
held_running = len(os.listdir("/proc/self/fd")) - held
runner.expect_exits(pids)
counts = collections.Counter()
real = os.waitpid
def counting(pid, options):
    counts["walk" if pid == -1 else "by pid"] += 1
    return real(pid, options)
os.waitpid = counting
reaped, put_off = [], []
for pid in pids:
    os.kill(pid, signal.SIGKILL)
    wait_zombie(pid)
    reaped.extend(p for p, _ in runner.reaped())
    put_off.append(runner.walk_put_off())
waits = dict(counts)
# A child the runner did not start: a SIGCHLD no watched exit explains walks at once.
other = os.posix_spawn("/bin/sleep", ["sleep", "60"], {})
os.kill(other, signal.SIGKILL)
wait_zombie(other)
found_other = [p for p, _ in runner.reaped()]
# One that exits beside a watched one is found once the walk is due.
[late] = [s.pid for s in runner.start([StartRequest(launch, null, null, null)])]
runner.expect_exits([late])
other = os.posix_spawn("/bin/sleep", ["sleep", "60"], {})
for pid in (late, other):
    os.kill(pid, signal.SIGKILL)
    wait_zombie(pid)
first = [p for p, _ in runner.reaped()]
first_put_off = runner.walk_put_off()
runner.walk_interval = 0.0
second = [p for p, _ in runner.reaped()]
print(json.dumps({
    "held_running": held_running, "pids": pids, "reaped": reaped, "counts": waits,
    "put_off": put_off,
    "other": other, "found_other": found_other, "late": late, "first": first,
    "first_put_off": first_put_off, "second": second,
}))
"""


def test_n_exits_cost_n_waits_by_pid_and_no_walk_each() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _SCENARIO], capture_output=True, text=True, timeout=120, check=True
    )
    result = json.loads(out.stdout)
    assert result["held_running"] == 0
    assert sorted(result["reaped"]) == sorted(result["pids"])
    assert result["counts"]["by pid"] == len(result["pids"])
    assert result["counts"]["walk"] <= 2  # the first call's walk (and its last, empty wait)
    assert result["put_off"][1:] == [True] * (len(result["pids"]) - 1)
    assert len(result["found_other"]) == 1
    assert result["first"] == [result["late"]] and result["first_put_off"]
    assert result["second"] == [result["other"]]


# The supervisor's signals on a real loop: a child's exit reaches on_child, SIGTERM on_stop.
_SIGNALS = """
import asyncio, json, os, signal
from taskforce.runtime.loop import signals

async def main():
    loop = asyncio.get_running_loop()
    told = []
    reaped = loop.create_future()
    stopped = loop.create_future()

    def on_child():
        told.append("child")
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid and not reaped.done():
            reaped.set_result(os.waitstatus_to_exitcode(status))

    handled = signals.install(
        loop,
        on_child=on_child,
        on_stop=lambda name: stopped.set_result(name),
        on_reset=told.append,
        on_upgrade=lambda: None,
    )
    os.posix_spawn("/bin/sh", ["sh", "-c", "exit 7"], {})
    code = await asyncio.wait_for(reaped, 30)
    os.kill(os.getpid(), signal.SIGTERM)
    name = await asyncio.wait_for(stopped, 30)
    signals.remove(loop, handled)
    print(json.dumps({"code": code, "stop": name, "told": told,
                      "after": signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL}))

asyncio.run(main())
"""


def test_sigchld_reaches_on_child_and_sigterm_on_stop_until_removed() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SIGNALS], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["code"] == 7
    assert result["stop"] == "SIGTERM"
    assert set(result["told"]) == {"child"}
    assert result["after"] is True
