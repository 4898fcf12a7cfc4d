"""A task process for the fleet tests: records when it runs, on which host, until stopped.

    marker.py DIR NAME [--exit CODE] [ARG...]

Writes DIR/NAME.<host>.<pid> with "start <monotonic time>" when it starts and appends
"stop <monotonic time>" when SIGTERM stops it; with --exit CODE (a `once` task), appends
"stop" at once and exits with CODE. CLOCK_MONOTONIC is one clock for every
process of the machine, so the records of processes on different "hosts" compare.
"""

from __future__ import annotations

import os
import signal
import sys
import time


def main() -> None:
    directory, name = sys.argv[1], sys.argv[2]
    host = os.environ.get("Task_host", "unknown")
    path = os.path.join(directory, f"{name}.{host}.{os.getpid()}")

    def stop(signum: int, frame: object) -> None:
        with open(path, "a") as f:
            f.write(f"stop {time.monotonic()}\n")
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    with open(path, "a") as f:
        f.write(f"start {time.monotonic()} {' '.join(sys.argv[3:])}\n")
    if sys.argv[3:4] == ["--exit"]:
        with open(path, "a") as f:
            f.write(f"stop {time.monotonic()}\n")
        sys.exit(int(sys.argv[4]))
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
