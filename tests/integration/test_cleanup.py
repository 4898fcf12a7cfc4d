"""The suite's own cleanup: what a test started dies with it, even when the test is cut
short by its timeout (pytest-timeout's SIGALRM) in the middle of cleaning up."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

import support.runner
from support.procfs import kill_marked, pid_alive
from support.runner import Taskforce


class StruckError(Exception):
    """What pytest-timeout raises from its SIGALRM handler."""


@contextlib.contextmanager
def timing_out() -> Iterator[None]:
    def strike(signum: int, frame: FrameType | None) -> None:
        raise StruckError

    previous = signal.signal(signal.SIGALRM, strike)
    try:
        yield
    finally:
        signal.signal(signal.SIGALRM, previous)


def test_a_timeout_in_the_middle_of_cleanup_still_kills_every_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tf = Taskforce(tmp_path, uuid.uuid4().hex)
    tf.spawn(["sleep", "300"])
    # Like a daemon a task left: detached, not taskforce's child, found by its marker only.
    detached = subprocess.Popen(["sleep", "300"], env=tf.env, start_new_session=True)

    def struck_first(marker: str) -> list[int]:
        signal.raise_signal(signal.SIGALRM)  # the test's time runs out here
        return kill_marked(marker)

    monkeypatch.setattr(support.runner, "kill_marked", struck_first)
    try:
        with timing_out(), pytest.raises(StruckError):  # the timeout is still reported
            tf.cleanup()
        assert detached.wait(10) == -signal.SIGKILL
    finally:
        if detached.poll() is None:
            detached.kill()
            detached.wait()
    assert not pid_alive(detached.pid)
