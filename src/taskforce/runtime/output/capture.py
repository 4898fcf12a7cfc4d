"""Capturing the stdout and stderr of task processes (the `output` key of a task).

A task whose output is not null is started with the write ends of pipes as its stdout
and stderr (one pipe when stderr goes with stdout, which keeps their order). taskforce
keeps the read ends, non-blocking, on its event loop. Each readiness event reads at most
:data:`READ_SIZE` bytes, so a task writing as fast as it can gets its turn like any other
input and never starves the loop; and nothing is read that cannot be written at once, so
memory stays bounded: when taskforce falls behind, the pipe fills and the task blocks.

Output is handled in chunks of whole lines (a partial line waits for its end, up to
:data:`LINE_MAX` bytes, then it is passed on as it is): written to the destination's sink
(:mod:`.output_sinks`) and kept in a small per-task ring of recent output
(:mod:`.output_ring`) for `taskforce logs` and the dashboard.
Per chunk, the work is a few calls into C (find the last newline, write, keep the tail),
never a Python loop over lines, except where a line needs a prefix or a datagram of its own.

The destination is looked up in the desired state for every chunk, so a reload that
changes it switches running processes over without restarting them. Whether a process's
output is captured at all is fixed when it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import time
from collections.abc import Callable
from typing import Any

from taskforce.core.spec import NULL, SAME_AS_STDOUT, STDERR, SYSLOG, DesiredState, OutputSpec
from taskforce.runtime.output.ring import Follower, Ring, as_lines
from taskforce.runtime.output.sinks import FileSink, Origin, Sink, StderrSink, SyslogSink

__all__ = ["MAX_LINES", "Capture", "Follower", "OutputCapture", "Stdio"]

log = logging.getLogger("taskforce")

READ_SIZE = 64 * 1024  # bytes read per readiness event: a pipe's default capacity
LINE_MAX = 32 * 1024  # a partial line longer than this is passed on without its end
MAX_LINES = 1000  # lines one request may ask for
_DRAIN_READS = 16  # reads of a pipe whose process has exited, before waiting for EOF


def sink_key(target: str, spec: OutputSpec) -> str | None:
    """What identifies the sink for a destination (None: nowhere)."""
    if target == NULL:
        return None
    if target == SYSLOG:
        return f"syslog:{spec.syslog_socket or ''}"
    return target  # STDERR, or a file path (absolute, so never one of the words)


class Capture:
    """The read end of one pipe of one task process."""

    def __init__(self, owner: OutputCapture, fd: int, origin: Origin, merged: bool) -> None:
        self.owner = owner
        self.fd = fd
        self.origin = origin
        self.merged = merged  # stderr shares this pipe: the destination is stdout's
        self.partial = b""
        self.spec: OutputSpec | None = None
        self.sink: Sink | None = None
        self.handed_over = False

    def on_readable(self) -> None:
        sink = self.sink
        if sink is not None and sink.blocked:
            # The destination is behind: stop reading, so the task blocks on its pipe.
            self.owner.loop.remove_reader(self.fd)
            sink.waiters.append(self.resume)
            return
        self._read()

    def _read(self) -> bool:
        """Read once from the pipe and pass the data on; False when there is nothing to
        read now, or at the end of the output (then finished)."""
        try:
            data = os.read(self.fd, READ_SIZE)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            self.finish()
            return False
        self.take(data)
        return True

    def resume(self) -> None:
        if self.fd >= 0:
            self.owner.loop.add_reader(self.fd, self.on_readable)

    def take(self, data: bytes) -> None:
        if self.partial:
            data, self.partial = self.partial + data, b""
        end = data.rfind(b"\n") + 1
        if end < len(data):
            if len(data) - end <= LINE_MAX:
                data, self.partial = data[:end], data[end:]
            else:
                data += b"\n"  # an endless line: pass it on in pieces
        if data:
            self.emit(data)

    def emit(self, data: bytes) -> None:
        spec = self.owner.current(self.origin.task, self.origin.slot)
        if spec is not self.spec and spec is not None:
            self._retarget(spec)
        if self.sink is not None:
            self.sink.write(data, self.origin)
        self.owner.remember(self.origin, data)

    def _retarget(self, spec: OutputSpec) -> None:
        self.spec = spec
        stream = "stdout" if self.merged else self.origin.stream
        target = spec.stdout if stream == "stdout" else spec.stderr_target
        key = sink_key(target, spec)
        if self.sink is not None and self.sink.key == key:
            if isinstance(self.sink, FileSink):
                self.sink.max_bytes, self.sink.backups = spec.max_bytes, spec.backups
            return
        if self.sink is not None:
            self.owner.release(self.sink)
        self.sink = None if key is None else self.owner.acquire(key, target, spec)

    def drain(self) -> None:
        """Read what the pipe holds now, without waiting (the process has exited)."""
        for _ in range(_DRAIN_READS):
            if self.fd < 0 or (self.sink is not None and self.sink.blocked) or not self._read():
                return

    def finish(self) -> None:
        """End of output: pass on the last partial line, let go of everything."""
        if self.partial:
            data, self.partial = self.partial + b"\n", b""
            self.emit(data)
        self.close()

    def close(self) -> None:
        if self.fd < 0:
            return
        self.owner.loop.remove_reader(self.fd)
        if not self.handed_over:
            with contextlib.suppress(OSError):
                os.close(self.fd)
        self.fd = -1
        if self.sink is not None:
            with contextlib.suppress(ValueError):
                self.sink.waiters.remove(self.resume)
            self.owner.release(self.sink)
            self.sink = None
        self.owner.captures.discard(self)


class Stdio:
    """The stdout and stderr for a process about to start, and what becomes of them."""

    def __init__(self, owner: OutputCapture, devnull: int) -> None:
        self.owner = owner
        self.stdout = self.stderr = devnull
        self.pipes: list[tuple[str, int, int, bool]] = []  # stream, read, write, merged

    def attach(self, task: str, slot: int, pid: int) -> None:
        """The process is running: keep the read ends, close our copies of the write ends."""
        for stream, read_fd, write_fd, merged in self.pipes:
            os.close(write_fd)
            self.owner.watch(read_fd, Origin(task, slot, pid, stream), merged)
        self.pipes = []

    def abandon(self) -> None:
        """The process could not be started."""
        for _, read_fd, write_fd, _ in self.pipes:
            os.close(read_fd)
            os.close(write_fd)
        self.pipes = []


class OutputCapture:
    """Every capture of one supervisor, the sinks they share and the rings of recent output.

    `desired` gives the current desired state, in which destinations are looked up.
    """

    def __init__(self, desired: Callable[[], DesiredState]) -> None:
        self.desired = desired
        self.captures: set[Capture] = set()
        self.sinks: dict[str, Sink] = {}
        self.rings: dict[str, Ring] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    # ----- the supervisor's side ------------------------------------------------------

    def stdio(self, spec: OutputSpec, devnull: int) -> Stdio:
        """Pipes for a process with output `spec` (with /dev/null for what is not captured)."""
        stdio = Stdio(self, devnull)
        if not spec.captured:
            return stdio
        try:
            if spec.stderr == SAME_AS_STDOUT:
                read_fd, stdio.stdout = os.pipe()
                stdio.stderr = stdio.stdout
                stdio.pipes.append(("stdout", read_fd, stdio.stdout, True))
            else:
                for stream, target in (("stdout", spec.stdout), ("stderr", spec.stderr)):
                    if target != NULL:
                        read_fd, write_fd = os.pipe()
                        setattr(stdio, stream, write_fd)
                        stdio.pipes.append((stream, read_fd, write_fd, False))
        except OSError as exc:
            log.error("cannot capture output (%s): the process writes to /dev/null", exc)
            stdio.abandon()
            stdio.stdout = stdio.stderr = devnull
        return stdio

    def watch(self, fd: int, origin: Origin, merged: bool) -> Capture:
        os.set_blocking(fd, False)
        capture = Capture(self, fd, origin, merged)
        self.captures.add(capture)
        self.loop.add_reader(fd, capture.on_readable)
        return capture

    def exited(self, pid: int) -> None:
        """Take in what an exited process left in its pipes (its last words)."""
        for capture in [c for c in self.captures if c.origin.pid == pid]:
            capture.drain()

    def close(self) -> None:
        """End every capture (what the pipes hold is taken in first) and close the sinks."""
        for capture in list(self.captures):
            if not capture.handed_over:
                capture.drain()
                capture.finish()
            else:
                capture.close()
        for sink in list(self.sinks.values()):
            sink.close()
        self.sinks.clear()

    # ----- sinks and rings --------------------------------------------------------------

    def current(self, task: str, slot: int) -> OutputSpec | None:
        spec = self.desired().tasks.get(task)
        if spec is None or slot >= len(spec.instances):
            return None  # gone from the configuration: keep the destination it had
        return spec.instances[slot].output

    def acquire(self, key: str, target: str, spec: OutputSpec) -> Sink:
        sink = self.sinks.get(key)
        if sink is None:
            if target == STDERR:
                sink = StderrSink(self.loop)
            elif target == SYSLOG:
                sink = SyslogSink(key, spec.syslog_socket)
            else:
                sink = FileSink(target, spec.max_bytes, spec.backups)
            self.sinks[key] = sink
        elif isinstance(sink, FileSink):
            sink.max_bytes, sink.backups = spec.max_bytes, spec.backups
        sink.users += 1
        return sink

    def release(self, sink: Sink) -> None:
        sink.users -= 1
        if sink.users <= 0 and self.sinks.get(sink.key) is sink:
            del self.sinks[sink.key]
            sink.close()

    def remember(self, origin: Origin, data: bytes) -> None:
        ring = self.rings.get(origin.task)
        if ring is None:
            ring = self.rings[origin.task] = Ring()
        ring.add((time.time(), origin.slot, origin.stream, data))

    # ----- the control API's side -------------------------------------------------------

    def captured(self, task: str) -> bool:
        """Whether `task` has output to show: configured so, or captured before."""
        spec = self.desired().tasks.get(task)
        configured = spec is not None and any(i.output.captured for i in spec.instances)
        return configured or task in self.rings

    def lines(self, task: str, n: int) -> list[dict[str, Any]]:
        ring = self.rings.get(task)
        return as_lines(ring.chunks, min(n, MAX_LINES)) if ring is not None and n > 0 else []

    def follow(self, task: str) -> Follower:
        ring = self.rings.get(task)
        if ring is None:
            ring = self.rings[task] = Ring()
        follower = Follower()
        ring.followers.add(follower)
        return follower

    def unfollow(self, task: str, follower: Follower) -> None:
        ring = self.rings.get(task)
        if ring is not None:
            ring.followers.discard(follower)

    # ----- an upgrade in place: the pipes live on in the next image -------------------

    def hand_over(self) -> dict[str, Any]:
        """What the next image needs to go on reading: the pipes stay open across exec."""
        pipes = []
        for capture in self.captures:
            os.set_inheritable(capture.fd, True)
            capture.handed_over = True
            task, slot, pid, stream = capture.origin
            partial = capture.partial.decode(errors="surrogateescape")
            pipes.append([capture.fd, task, slot, pid, stream, capture.merged, partial])
        recent = {
            task: [[w, s, st, d.decode(errors="surrogateescape")] for w, s, st, d in ring.chunks]
            for task, ring in self.rings.items()
        }
        return {"pipes": pipes, "recent": recent}

    def take_over(self, data: dict[str, Any]) -> int:
        """Go on reading the pipes of the image that exec'd us; returns how many."""
        taken = 0
        for fd, task, slot, pid, stream, merged, partial in data.get("pipes", ()):
            try:
                if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                    continue
                os.set_inheritable(fd, False)
            except OSError:
                continue
            capture = self.watch(fd, Origin(task, slot, pid, stream), merged)
            capture.partial = partial.encode(errors="surrogateescape")
            taken += 1
        for task, chunks in data.get("recent", {}).items():
            ring = self.rings.setdefault(task, Ring())
            for when, slot, stream, text in chunks:
                ring.add((when, slot, stream, text.encode(errors="surrogateescape")))
        return taken
