"""Reading a small file taskforce did not open itself: no link followed, no wait on a FIFO,
and, when it is to be trusted, only a plain file of ours."""

from __future__ import annotations

import os
from pathlib import Path

from taskforce.api.servers import read_record
from taskforce.runtime.own.paths import read_small_file


def test_reads_up_to_the_limit(tmp_path: Path) -> None:
    (tmp_path / "pid").write_bytes(b"1234\nmore")
    assert read_small_file(str(tmp_path / "pid"), 4) == b"1234"
    assert read_small_file(str(tmp_path / "pid"), 64, trusted=True) == b"1234\nmore"


def test_a_missing_file_or_a_link_is_not_read(tmp_path: Path) -> None:
    (tmp_path / "real").write_bytes(b"1234")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert read_small_file(str(tmp_path / "missing"), 64) is None
    assert read_small_file(str(tmp_path / "link"), 64) is None


def test_a_fifo_is_not_waited_on_and_not_trusted(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert read_small_file(str(fifo), 64) == b""  # no writer: nothing, at once
    assert read_small_file(str(fifo), 64, trusted=True) is None


def test_a_server_record_behind_a_link_is_refused(tmp_path: Path) -> None:
    record = b'{"pid": 4242, "servers": ["/run/x.sock"]}'
    (tmp_path / "real.json").write_bytes(record)
    (tmp_path / "link.json").symlink_to(tmp_path / "real.json")
    found = read_record(str(tmp_path / "real.json"))
    assert found is not None and found.pid == 4242 and found.servers == ("/run/x.sock",)
    assert read_record(str(tmp_path / "link.json")) is None
