"""Detaching into the background (-b) with the start-up outcome reported to the caller."""

from __future__ import annotations

import contextlib
import os
import sys


class Detached:
    """The daemon's side of the detach: report start-up success or failure once."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def report(self, error: str | None = None, notes: str = "") -> None:
        """Start-up failed with `error`, or (None) went well; `notes` (problems that left
        the start going, such as a task that cannot be resolved) are printed either way."""
        if self._fd is None:
            return
        text = "\n".join(t for t in (notes, error or "") if t)
        with contextlib.suppress(OSError):
            os.write(self._fd, (b"0" if error is None else b"3") + text.encode(errors="replace"))
        os.close(self._fd)
        self._fd = None


def detach() -> Detached:
    """Double-fork into a new session with stdio on /dev/null.

    The original process waits until the daemon reports how start-up went, then exits
    with 0 (started) or 3 (the error is printed): a caller, or an init script, learns at
    once whether the daemon is running.
    """
    read_fd, write_fd = os.pipe()
    if os.fork() > 0:
        os.close(write_fd)
        chunks = []
        while chunk := os.read(read_fd, 4096):
            chunks.append(chunk)
        data = b"".join(chunks)
        if not data:
            sys.stderr.write("taskforce: the background process died during start-up\n")
            os._exit(3)
        message = data[1:].decode(errors="replace").strip()
        if message:
            sys.stderr.write(f"{message}\n")
        os._exit(0 if data[:1] == b"0" else 3)
    os.close(read_fd)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    if devnull > 2:
        os.close(devnull)
    return Detached(write_fd)
