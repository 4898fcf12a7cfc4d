"""Process records: what a taskforce killed without warning leaves for the next one."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from taskforce.runtime.processes.identity import start_ticks
from taskforce.runtime.processes.records import Earlier, ProcessRecord, Records


def test_no_file_means_the_last_one_stopped_cleanly(tmp_path: Path) -> None:
    assert Records(str(tmp_path / "tf.state")).load() is None


def test_begin_leaves_a_file_before_anything_starts(tmp_path: Path) -> None:
    path = tmp_path / "tf.state"
    Records(str(path)).begin()
    # Killed now, before recording any process: the next taskforce knows to look for them,
    # among the processes started since this one started.
    assert Records(str(path)).load() == Earlier([], start_ticks(os.getpid()), (os.getpid(),))


def test_records_survive_and_clean_stop_removes_them(tmp_path: Path) -> None:
    path = tmp_path / "tf.state"
    records = Records(str(path))
    records.begin()
    records.update({os.getpid(): ("web", 0)})
    earlier = Records(str(path)).load()
    assert earlier is not None
    (found,) = earlier.processes
    assert isinstance(found, ProcessRecord)
    assert (found.task, found.slot, found.pid) == ("web", 0, os.getpid())
    records.remove()
    assert Records(str(path)).load() is None


def test_without_a_path_nothing_is_known(tmp_path: Path) -> None:
    records = Records(None)
    records.begin()
    # Unknown, not "stopped cleanly"; but neither is when an earlier taskforce started.
    assert records.load() == Earlier([], None)


def test_a_taskforce_killed_before_its_first_update_is_named_beside_the_earlier_one(
    tmp_path: Path,
) -> None:
    """The first taskforce's records stay until the second one updates them; killed before
    then, the second leaves processes that name it (Task_ppid), not the first: the third
    must know both (the 100-task SIGKILL test kills the second one while it recovers)."""
    path = tmp_path / "tf.state"
    record = ProcessRecord("web", 0, os.getpid(), start_ticks(os.getpid()) or 0)
    first = {"started": 1, "pids": [12345], "processes": [{"task": "web", "slot": 0,
             "pid": record.pid, "start": record.start_ticks}]}  # fmt: skip
    path.write_text(json.dumps(first))
    second = Records(str(path))
    assert second.load() == Earlier([record], 1, (12345,))
    second.begin()
    assert Records(str(path)).load() == Earlier([record], 1, (12345, os.getpid()))


def test_an_update_writes_only_what_changed_and_retries_a_failed_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tf.state"
    records = Records(str(path))
    records.begin()
    running = {os.getpid(): ("web", 0)}
    records.update(running)
    written = path.stat().st_mtime_ns, path.stat().st_ino
    records.update(dict(running))  # the same processes: nothing to write
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == written

    def full(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(os, "replace", full)
        records.update({})  # the write fails
    earlier = Records(str(path)).load()
    assert earlier is not None and len(earlier.processes) == 1  # as last written
    records.update({})  # nothing changed since, but the file is behind: written now
    earlier = Records(str(path)).load()
    assert earlier is not None and earlier.processes == []
