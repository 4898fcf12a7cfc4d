"""Output capture: line splitting, the ring of recent output, followers, live switching,
pipes and the hand-over of pipes across an upgrade in place."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskforce.core.spec import DesiredState, InstanceSpec, LaunchSpec, OutputSpec, TaskSpec
from taskforce.core.vocabulary import Control
from taskforce.runtime.output.capture import LINE_MAX, Capture, OutputCapture
from taskforce.runtime.output.ring import FOLLOW_BYTES, RING_BYTES, Follower, Ring
from taskforce.runtime.output.sinks import Origin, Sink

LAUNCH = LaunchSpec("prog", ("prog",), ())


class World:
    """The desired state a capture looks its destination up in; tests change it."""

    def __init__(self, output: OutputSpec, count: int = 1) -> None:
        self.state = DesiredState({})
        self.set(output, count)

    def set(self, output: OutputSpec, count: int = 1) -> None:
        instances = tuple(InstanceSpec(LAUNCH, output=output) for _ in range(count))
        self.state = DesiredState({"web": TaskSpec("web", Control.WAIT, instances)})


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def owner(world: World, loop: asyncio.AbstractEventLoop) -> OutputCapture:
    capture = OutputCapture(lambda: world.state)
    capture._loop = loop
    return capture


def texts(output: OutputCapture, n: int = 100) -> list[str]:
    return [line["text"] for line in output.lines("web", n)]


def test_lines_are_split_and_a_partial_line_waits_for_its_end(
    loop: asyncio.AbstractEventLoop,
) -> None:
    output = owner(World(OutputSpec(stdout="stderr")), loop)
    output.sinks["stderr"] = sink = RecordingSink("stderr")
    capture = Capture(output, -1, Origin("web", 0, 1, "stdout"), merged=True)
    capture.take(b"one\ntw")
    assert texts(output) == ["one"]
    capture.take(b"o\nthr")
    capture.take(b"ee")
    assert texts(output) == ["one", "two"]
    capture.finish()  # end of output: the partial line is a line
    assert texts(output) == ["one", "two", "three"]
    assert sink.data == b"one\ntwo\nthree\n"


def test_an_endless_line_is_passed_on_without_waiting(loop: asyncio.AbstractEventLoop) -> None:
    output = owner(World(OutputSpec(stdout="stderr")), loop)
    capture = Capture(output, -1, Origin("web", 0, 1, "stdout"), merged=True)
    capture.take(b"x" * LINE_MAX)
    assert texts(output) == []
    capture.take(b"x" * 10)
    assert [len(t) for t in texts(output)] == [LINE_MAX + 10]
    assert capture.partial == b""


def test_destinations_switch_live_and_sinks_are_shared(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    first, second = str(tmp_path / "a.log"), str(tmp_path / "b.log")
    world = World(OutputSpec(stdout=first), count=2)
    output = owner(world, loop)
    zero = Capture(output, -1, Origin("web", 0, 1, "stdout"), merged=True)
    one = Capture(output, -1, Origin("web", 1, 2, "stdout"), merged=True)
    zero.take(b"0 to a\n")
    one.take(b"1 to a\n")
    assert list(output.sinks) == [first] and output.sinks[first].users == 2
    world.set(OutputSpec(stdout=second), count=2)
    zero.take(b"0 to b\n")
    assert set(output.sinks) == {first, second}
    one.take(b"1 to b\n")
    assert list(output.sinks) == [second]  # the last user of a.log let it go: closed
    world.set(OutputSpec(stdout="null"), count=2)
    zero.take(b"0 nowhere\n")
    one.take(b"1 nowhere\n")
    assert output.sinks == {}
    assert Path(first).read_bytes() == b"0 to a\n1 to a\n"
    assert Path(second).read_bytes() == b"0 to b\n1 to b\n"
    assert texts(output)[-2:] == ["0 nowhere", "1 nowhere"]  # still shown by `logs`


def test_a_task_gone_from_the_configuration_keeps_its_destination(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    world = World(OutputSpec(stdout=str(tmp_path / "a.log")))
    output = owner(world, loop)
    capture = Capture(output, -1, Origin("web", 0, 1, "stdout"), merged=True)
    capture.take(b"before\n")
    world.state = DesiredState({})
    capture.take(b"after\n")
    capture.close()
    assert (tmp_path / "a.log").read_bytes() == b"before\nafter\n"


def test_the_ring_holds_the_most_recent_output_only() -> None:
    ring = Ring()
    for number in range(1000):
        ring.add((float(number), 0, "stdout", f"{number:0999d}\n".encode()))
    assert RING_BYTES <= ring.size <= RING_BYTES + 1000
    output = OutputCapture(lambda: DesiredState({}))
    output.rings["web"] = ring
    assert [int(t) for t in texts(output, 3)] == [997, 998, 999]
    assert len(output.lines("web", 10_000)) == RING_BYTES // 1000 + 1  # whole lines, at least


def test_a_huge_chunk_keeps_its_whole_last_lines() -> None:
    ring = Ring()
    ring.add((0.0, 0, "stdout", b"".join(b"%07d\n" % n for n in range(20_000))))
    assert ring.size <= RING_BYTES
    output = OutputCapture(lambda: DesiredState({}))
    output.rings["web"] = ring
    lines = texts(output, 1000)
    assert lines[-1] == "0019999" and all(len(t) == 7 for t in lines)


def test_a_follower_that_falls_behind_is_told_what_it_missed() -> None:
    ring, follower = Ring(), Follower()
    ring.followers.add(follower)
    chunk = b"".join(b"%09d\n" % n for n in range(1000))  # 10 kB, 1000 lines
    for _ in range(FOLLOW_BYTES // len(chunk) + 10):
        ring.add((0.0, 1, "stderr", chunk))
    assert follower.ready.is_set()
    skipped, lines = follower.take()
    assert skipped >= 10 * 1000
    assert lines[-1] == {"instance": 1, "stream": "stderr", "time": 0.0, "text": "000000999"}
    assert follower.take() == (0, [])


def test_one_pipe_when_stderr_goes_with_stdout_two_otherwise(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        output = owner(World(OutputSpec()), loop)
        quiet = output.stdio(OutputSpec(), devnull)
        assert (quiet.stdout, quiet.stderr, quiet.pipes) == (devnull, devnull, [])
        merged = output.stdio(OutputSpec(stdout="/x/a.log"), devnull)
        assert merged.stdout == merged.stderr != devnull and len(merged.pipes) == 1
        split = output.stdio(OutputSpec(stdout="/x/a.log", stderr="/x/a.log"), devnull)
        assert len({split.stdout, split.stderr, devnull}) == 3 and len(split.pipes) == 2
        err_only = output.stdio(OutputSpec(stderr="stderr"), devnull)
        assert err_only.stdout == devnull != err_only.stderr
        for stdio in (merged, split, err_only):
            stdio.abandon()
    finally:
        os.close(devnull)


def test_a_pipe_is_read_on_the_loop_and_drained_at_exit(tmp_path: Path) -> None:
    path = tmp_path / "out.log"
    world = World(OutputSpec(stdout=str(path), stderr=str(path)))

    async def scenario() -> OutputCapture:
        output = OutputCapture(lambda: world.state)
        stdio = output.stdio(world.state.tasks["web"].instances[0].output, -1)
        child_out, child_err = os.dup(stdio.stdout), os.dup(stdio.stderr)  # the "process"
        stdio.attach("web", 0, 4242)
        os.write(child_out, b"hello\n")
        for _ in range(1000):  # turns of the loop, until the reader has run
            await asyncio.sleep(0)
            if output.lines("web", 5):
                break
        os.write(child_err, b"last words\nno newline")
        os.close(child_out)
        os.close(child_err)
        output.exited(4242)  # what it left in its pipes is taken in at once
        assert not output.captures  # both at EOF: closed
        return output

    output = asyncio.run(scenario())
    lines = output.lines("web", 5)
    assert [(x["stream"], x["text"]) for x in lines] == [
        ("stdout", "hello"),
        ("stderr", "last words"),
        ("stderr", "no newline"),
    ]
    assert path.read_bytes() == b"hello\nlast words\nno newline\n"


def test_pipes_and_recent_output_are_handed_over(tmp_path: Path) -> None:
    world = World(OutputSpec(stdout="stderr"))
    read_fd, write_fd = os.pipe()

    async def old_image() -> dict[str, object]:
        output = OutputCapture(lambda: world.state)
        output.watch(read_fd, Origin("web", 0, 7, "stdout"), merged=True)
        output.sinks["stderr"] = RecordingSink("stderr")
        (capture,) = output.captures
        capture.take(b"before\npart")
        data = output.hand_over()
        output.close()  # as at the end of run(): a handed-over pipe stays open
        assert os.get_inheritable(read_fd)
        return data

    async def new_image(data: dict[str, object]) -> OutputCapture:
        output = OutputCapture(lambda: world.state)
        output.sinks["stderr"] = sink = RecordingSink("stderr")
        assert output.take_over(data) == 1
        os.write(write_fd, b"ial\nafter\n")
        os.close(write_fd)
        output.exited(7)
        assert sink.data == b"partial\nafter\n"
        return output

    output = asyncio.run(new_image(asyncio.run(old_image())))
    assert texts(output) == ["before", "partial", "after"]
    with pytest.raises(OSError):
        os.fstat(read_fd)  # closed at EOF by the new image


class RecordingSink(Sink):
    """A sink that keeps what it is given (registered in place of a real one)."""

    def __init__(self, key: str) -> None:
        super().__init__(key, "the test's sink")
        self.users = 1_000  # never closed by release()
        self.data = b""

    def write(self, data: bytes, origin: Origin) -> None:
        self.data += data

    def close(self) -> None:
        pass
