#!/usr/bin/env python3
"""A stand-in task for the tests: records how it was started, then does as told.

On start it writes a JSON record (pid, argv, environment, cwd, ids, process group,
session) to $PROBE_DIR/<Task_name>-<Task_instance>-<pid>.json, then:
  --exit-after SECONDS   exit after that long (default: run until signalled)
  --exit-code N          the exit status to use (default 0)
  --ignore-term          ignore SIGTERM (to test SIGKILL escalation)
  --grandchild           fork a child that sleeps in the same process group
  --orphan               fork a grandchild that outlives us (reparented to the subreaper)
SIGTERM exits 0 (unless ignored); SIGHUP and SIGUSR1 are recorded in $PROBE_DIR.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time


def record(kind: str, extra: dict[str, object] | None = None) -> None:
    directory = os.environ.get("PROBE_DIR")
    if not directory:
        return
    name = os.environ.get("Task_name", "probe")
    instance = os.environ.get("Task_instance", "0")
    data: dict[str, object] = {
        "kind": kind,
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "pgid": os.getpgid(0),
        "sid": os.getsid(0),
        "argv": sys.argv,
        "env": dict(os.environ),
        "cwd": os.getcwd(),
        "uid": os.getuid(),
        "gid": os.getgid(),
        "groups": os.getgroups(),
        "time": time.time(),
        "monotonic": time.monotonic(),
    }
    data.update(extra or {})
    path = os.path.join(directory, f"{name}-{instance}-{os.getpid()}-{kind}.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--exit-after", type=float)
    parser.add_argument("--exit-code", type=int, default=0)
    parser.add_argument("--ignore-term", action="store_true")
    parser.add_argument("--grandchild", action="store_true")
    parser.add_argument("--orphan", action="store_true")
    args, _ = parser.parse_known_args()

    def on_term(signum: int, frame: object) -> None:
        record("term")
        sys.exit(0)

    signal.signal(signal.SIGTERM, signal.SIG_IGN if args.ignore_term else on_term)
    signal.signal(signal.SIGHUP, lambda s, f: record("hup"))
    signal.signal(signal.SIGUSR1, lambda s, f: record("usr1"))
    extra: dict[str, object] = {}
    if args.grandchild and os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(3600)
        os._exit(0)
    if args.orphan:
        first = os.fork()
        if first == 0:
            grandchild = os.fork()
            if grandchild == 0:
                time.sleep(0.5)
                os._exit(0)
            os._exit(0)
        os.waitpid(first, 0)
    record("start", extra)
    if args.exit_after is not None:
        time.sleep(args.exit_after)
        sys.exit(args.exit_code)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
