"""Output destinations: file rotation, failure reports, syslog datagrams, prefixed stderr."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskforce.runtime.output import sinks as output_sinks
from taskforce.runtime.output.sinks import FileSink, Origin, StderrSink, SyslogSink, Trouble

WEB = Origin("web", 0, 123, "stdout")


def numbered(count: int, width: int = 8) -> list[bytes]:
    return [f"{n:0{width - 1}d}\n".encode() for n in range(count)]


# --- files and rotation ---------------------------------------------------------------------


def test_rotation_keeps_whole_lines_and_the_newest_backups(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    sink = FileSink(str(path), max_bytes=100, backups=2)
    lines = numbered(60)
    for start in range(0, 60, 7):  # chunks of several lines, as captures hand them over
        sink.write(b"".join(lines[start : start + 7]), WEB)
    sink.close()
    files = [tmp_path / "app.log.2", tmp_path / "app.log.1", path]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.log", "app.log.1", "app.log.2"]
    for file in files:
        data = file.read_bytes()
        assert 0 < len(data) <= 100 and data.endswith(b"\n")
    kept = b"".join(file.read_bytes() for file in files)
    assert b"".join(lines).endswith(kept)  # in order, nothing lost inside what is kept


def test_no_backups_means_starting_over(tmp_path: Path) -> None:
    sink = FileSink(str(tmp_path / "a.log"), max_bytes=64, backups=0)
    for line in numbered(40):
        sink.write(line, WEB)
    sink.close()
    assert [p.name for p in tmp_path.iterdir()] == ["a.log"]
    assert len((tmp_path / "a.log").read_bytes()) <= 64


def test_max_bytes_zero_never_rotates_and_appends(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"before\n")
    sink = FileSink(str(path), max_bytes=0, backups=3)
    sink.write(b"x" * 5000 + b"\n", WEB)
    sink.close()
    assert path.read_bytes() == b"before\n" + b"x" * 5000 + b"\n"
    assert len(list(tmp_path.iterdir())) == 1


def test_a_new_file_is_not_world_readable(tmp_path: Path) -> None:
    sink = FileSink(str(tmp_path / "a.log"), max_bytes=0, backups=0)
    sink.write(b"secret\n", WEB)
    sink.close()
    assert (tmp_path / "a.log").stat().st_mode & 0o007 == 0


def test_a_line_longer_than_max_bytes_is_split(tmp_path: Path) -> None:
    sink = FileSink(str(tmp_path / "a.log"), max_bytes=10, backups=5)
    sink.write(b"0123456789abcdefghij\n", WEB)
    sink.close()
    assert (tmp_path / "a.log.2").read_bytes() == b"0123456789"
    assert (tmp_path / "a.log.1").read_bytes() == b"abcdefghij"
    assert (tmp_path / "a.log").read_bytes() == b"\n"


def test_a_symlink_is_never_followed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    target = tmp_path / "passwd"
    target.write_bytes(b"root\n")
    (tmp_path / "a.log").symlink_to(target)
    sink = FileSink(str(tmp_path / "a.log"), max_bytes=0, backups=0)
    with caplog.at_level(logging.ERROR, "taskforce"):
        sink.write(b"evil\n", WEB)
    assert target.read_bytes() == b"root\n"
    assert "it is a symbolic link" in caplog.text
    assert sink.trouble.dropped == 5


def test_a_hard_link_to_another_file_is_never_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / "shadow"
    target.write_bytes(b"root\n")
    os.link(target, tmp_path / "a.log")  # where protected_hardlinks does not prevent it
    sink = FileSink(str(tmp_path / "a.log"), max_bytes=0, backups=0)
    with caplog.at_level(logging.ERROR, "taskforce"):
        sink.write(b"evil\n", WEB)
    assert target.read_bytes() == b"root\n"
    assert "it has other hard links" in caplog.text


def test_a_missing_directory_is_reported_then_used_once_it_exists(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(output_sinks, "_RETRY_AFTER", 0.0)
    path = tmp_path / "later" / "a.log"
    sink = FileSink(str(path), max_bytes=0, backups=0)
    with caplog.at_level(logging.WARNING, "taskforce"):
        sink.write(b"lost\n", WEB)
        sink.write(b"lost too\n", WEB)
        assert sink.trouble.dropped == len(b"lost\nlost too\n")
        path.parent.mkdir()
        sink.write(b"kept\n", WEB)
    sink.close()
    assert path.read_bytes() == b"kept\n"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "No such file or directory" in errors[0].getMessage()
    assert "works again (14 bytes were dropped)" in caplog.text


def test_trouble_is_logged_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    trouble = Trouble("x.log", clock=lambda: now[0])
    with caplog.at_level(logging.ERROR, "taskforce"):
        trouble.failed("No space left on device", 10)
        now[0] += 30
        trouble.failed("No space left on device", 10)
        now[0] += 31
        trouble.failed("No space left on device", 10)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "output to x.log: No space left on device; output is dropped (10 bytes so far)",
        "output to x.log: No space left on device; output is dropped (30 bytes so far)",
    ]


# --- syslog ------------------------------------------------------------------------------


@pytest.fixture
def syslog(tmp_path: Path) -> Iterator[socket.socket]:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(tmp_path / "log"))
    server.settimeout(5)
    yield server
    server.close()


def test_syslog_gets_one_datagram_per_line(tmp_path: Path, syslog: socket.socket) -> None:
    sink = SyslogSink("syslog:x", str(tmp_path / "log"))
    sink.write(b"hello\n" + b"y" * 10000 + b"\n", WEB)
    first, second = syslog.recv(65536), syslog.recv(65536)
    sink.close()
    assert first.startswith(b"<30>") and first.endswith(b" web[123]: hello")
    assert len(second) == 8192 and second.endswith(b"yyyy")


def test_syslog_without_a_daemon_drops_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sink = SyslogSink("syslog:x", str(tmp_path / "nobody"))
    with caplog.at_level(logging.ERROR, "taskforce"):
        sink.write(b"a\nb\n", WEB)
    assert sink.trouble.dropped == 4
    assert "cannot connect to" in caplog.text


# --- taskforce's stderr ---------------------------------------------------------------------


def test_stderr_lines_are_prefixed_with_task_and_instance() -> None:
    read_fd, write_fd = os.pipe()
    loop = asyncio.new_event_loop()
    try:
        sink = StderrSink(loop, (write_fd, True))
        sink.write(b"one\ntwo\n", Origin("web", 3, 1, "stderr"))
        sink.close()
        assert os.read(read_fd, 100) == b"web[3]: one\nweb[3]: two\n"
    finally:
        os.close(read_fd)
        loop.close()


def test_a_slow_stderr_reader_blocks_the_captures_not_the_loop() -> None:
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    os.set_blocking(read_fd, False)
    resumed: list[bool] = []

    async def scenario() -> None:
        sink = StderrSink(asyncio.get_running_loop(), (write_fd, True))
        line = b"z" * 1023 + b"\n"
        while not sink.blocked:  # nobody reads: the pipe fills, then the backlog grows
            sink.write(line * 16, WEB)
        assert len(sink.pending) < output_sinks._HIGH_WATER + 32 * 1024
        sink.waiters.append(lambda: resumed.append(True))
        for _ in range(1000):  # the reader catches up; the loop drains the backlog
            with contextlib.suppress(BlockingIOError):
                os.read(read_fd, 1 << 20)
            await asyncio.sleep(0)  # one turn of the loop: its writer callback runs
            if not sink.pending:
                break
        assert not sink.pending
        sink.close()

    try:
        asyncio.run(scenario())
    finally:
        os.close(read_fd)
    assert resumed == [True]
