#!/usr/bin/env python3
"""A stand-in task for the tests: records how it was started, then does as told.

On start it writes a JSON record (pid, argv, environment, cwd, ids, process group,
session, where stdio leads, start time) to
$PROBE_DIR/<Task_name>-<Task_instance>-<pid>-<start ticks>-start.json,
then:
  --exit-after SECONDS   exit after that long (default: run until signalled); an
                         "exit" record is written just before exiting
  --exit-code N          the exit status to use (default 0)
  --ignore-term          ignore SIGTERM (to test SIGKILL escalation)
  --grandchild           fork a child that sleeps in the same process group, ignoring
                         SIGTERM (its pid is the record's "grandchild")
  --orphan               fork a grandchild that outlives us (reparented to the subreaper;
                         its pid is the record's "orphan")
  --orphan-life SECONDS  how long that grandchild lives (default 0.5)
  --daemonize PIDFILE    detach like a classic daemon (fork, setsid, fork), write the
                         daemon's pid to PIDFILE, and let the original process exit 0
SIGTERM and SIGINT write a "term" or "int" record and exit 0 (SIGTERM is ignored with
--ignore-term); SIGHUP and SIGUSR1 write "hup" and "usr1" records and carry on.
Runs under any Python 3.8+ (tests run it as other users, with the system interpreter).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import sys
import time


def record(kind: str, extra: dict[str, object] | None = None) -> None:
    directory = os.environ.get("PROBE_DIR")
    if not directory:
        return
    name = os.environ.get("Task_name", "probe")
    instance = os.environ.get("Task_instance", "0")
    ticks = _start_ticks()
    data: dict[str, object] = {
        "kind": kind,
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "pgid": os.getpgid(0),
        "sid": os.getsid(0),
        "argv": sys.argv,
        "orig_argv": getattr(sys, "orig_argv", None),
        "env": dict(os.environ),
        "cwd": os.getcwd(),
        "uid": os.getuid(),
        "gid": os.getgid(),
        "groups": os.getgroups(),
        "stdio": [_fd_target(fd) for fd in (0, 1, 2)],
        "time": time.time(),
        "monotonic": time.monotonic(),
        # With the pid, who we are: a pid is soon used again on a busy machine.
        "start_ticks": ticks,
    }
    data.update(extra or {})
    path = os.path.join(directory, f"{name}-{instance}-{os.getpid()}-{ticks}-{kind}.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def _start_ticks() -> int | None:
    try:
        with open("/proc/self/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _fd_target(fd: int) -> str | None:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def _listen_for_signals() -> int:
    """A pipe that each signal writes a byte to (from the interpreter's C-level handler):
    the end to wait on."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end)
    return read_end


def _wait(wakeups: int, seconds: float | None) -> None:
    """Sleep `seconds` (None: for ever), running the signal handlers as signals come.

    Not signal.pause() or time.sleep(): a signal arriving after the interpreter last looked
    for one but before the process sleeps in the kernel is only noted, and its handler would
    run when another signal came (a SIGUSR1 sent as soon as the start record appeared was
    never recorded). Its byte in the pipe ends the select() at once instead.
    """
    end = None if seconds is None else time.monotonic() + seconds
    while True:
        left = None if end is None else end - time.monotonic()
        if left is not None and left <= 0:
            return
        if select.select([wakeups], [], [], left)[0]:
            os.read(wakeups, 512)


def _orphan(life: float) -> int:
    """Fork a grandchild that lives `life` seconds after its parent (our child) exits."""
    read_fd, write_fd = os.pipe()
    first = os.fork()
    if first == 0:
        os.close(read_fd)
        grandchild = os.fork()
        if grandchild == 0:
            os.close(write_fd)
            time.sleep(life)
            os._exit(0)
        os.write(write_fd, str(grandchild).encode())
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        pid = int(pipe.read())
    os.waitpid(first, 0)
    return pid


def _daemonize(pidfile: str) -> None:
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    tmp = pidfile + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(tmp, pidfile)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--exit-after", type=float)
    parser.add_argument("--exit-code", type=int, default=0)
    parser.add_argument("--ignore-term", action="store_true")
    parser.add_argument("--grandchild", action="store_true")
    parser.add_argument("--orphan", action="store_true")
    parser.add_argument("--orphan-life", type=float, default=0.5)
    parser.add_argument("--daemonize")
    args, _ = parser.parse_known_args()
    if args.daemonize:
        _daemonize(args.daemonize)

    def on_signal(kind: str) -> None:
        record(kind)
        sys.exit(0)

    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda s, f: on_signal("term"))
    signal.signal(signal.SIGINT, lambda s, f: on_signal("int"))
    signal.signal(signal.SIGHUP, lambda s, f: record("hup"))
    signal.signal(signal.SIGUSR1, lambda s, f: record("usr1"))
    wakeups = _listen_for_signals()
    extra: dict[str, object] = {}
    if args.grandchild:
        child = os.fork()
        if child == 0:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            time.sleep(3600)
            os._exit(0)
        extra["grandchild"] = child
    if args.orphan:
        extra["orphan"] = _orphan(args.orphan_life)
    record("start", extra)
    if args.exit_after is not None:
        _wait(wakeups, args.exit_after)
        record("exit", {"exit_code": args.exit_code})
        sys.exit(args.exit_code)
    _wait(wakeups, None)


if __name__ == "__main__":
    main()
