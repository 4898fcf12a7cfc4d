"""Owner-only unix sockets: permissions, stale and live sockets, symlinks, directories."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from taskforce.api import unix
from taskforce.api.listen import ApiConfigError
from taskforce.api.unix import UnixSocket


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    private = tmp_path / "run"
    private.mkdir(mode=0o700)
    return private


def test_the_socket_is_owner_only_and_removed_at_the_end(directory: Path) -> None:
    path = directory / "api.sock"
    listening = UnixSocket(str(path))
    try:
        info = os.lstat(path)
        assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
        assert info.st_uid == os.geteuid()
    finally:
        listening.sock.close()
        listening.remove()
    assert not path.exists()


def test_a_stale_socket_is_replaced(directory: Path) -> None:
    path = str(directory / "api.sock")
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(path)
    dead.close()  # the file stays, nobody listens
    listening = UnixSocket(path)
    try:
        client = socket.socket(socket.AF_UNIX)
        with client:
            client.connect(path)  # the new socket listens where the stale one was
    finally:
        listening.sock.close()
        listening.remove()


def test_a_live_socket_is_refused(directory: Path) -> None:
    path = str(directory / "api.sock")
    live = socket.socket(socket.AF_UNIX)
    live.bind(path)
    live.listen()
    try:
        with pytest.raises(ApiConfigError, match="another process is listening"):
            UnixSocket(path)
        assert os.path.exists(path)
    finally:
        live.close()


def test_what_is_not_a_socket_is_left_alone(directory: Path, tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("data")
    (directory / "link.sock").symlink_to(target)
    with pytest.raises(ApiConfigError, match="exists and is not a socket"):
        UnixSocket(str(directory / "link.sock"))
    (directory / "file.sock").write_text("")
    with pytest.raises(ApiConfigError, match="exists and is not a socket"):
        UnixSocket(str(directory / "file.sock"))
    assert target.read_text() == "data"


def test_a_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    with pytest.raises(ApiConfigError, match="others can write to"):
        UnixSocket(str(shared / "api.sock"))
    with pytest.raises(ApiConfigError, match="No such file or directory"):
        UnixSocket(str(tmp_path / "missing" / "api.sock"))


def test_removal_spares_a_socket_that_replaced_ours(directory: Path) -> None:
    path = str(directory / "api.sock")
    listening = UnixSocket(path)
    listening.sock.close()
    os.unlink(path)
    other = socket.socket(socket.AF_UNIX)
    other.bind(path)  # on tmpfs, likely with the inode number ours had
    other.listen()
    try:
        listening.remove()
        assert os.path.exists(path)
    finally:
        other.close()


def test_the_private_tmp_directory_is_made_owner_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    private = tmp_path / "taskforce-uid"
    monkeypatch.setattr(unix, "private_tmp_dir", lambda uid: str(private))
    listening = UnixSocket(str(private / "taskforce.sock"))
    listening.sock.close()
    listening.remove()
    info = os.lstat(private)
    assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700


def test_a_planted_private_directory_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    private = tmp_path / "taskforce-uid"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    private.symlink_to(elsewhere)
    monkeypatch.setattr(unix, "private_tmp_dir", lambda uid: str(private))
    with pytest.raises(ApiConfigError, match="not a directory of our own"):
        UnixSocket(str(private / "taskforce.sock"))
    private.unlink()
    private.mkdir(mode=0o755)
    with pytest.raises(ApiConfigError, match="make it mode 0700"):
        UnixSocket(str(private / "taskforce.sock"))


@pytest.mark.parametrize("mode", [0o770, 0o775, 0o3775])
def test_a_directory_its_group_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    """Anyone in the group could replace the socket file (sticky or not: the setgid bit
    does not help either), as runtime.paths refuses for its own files."""
    shared = tmp_path / "group"
    shared.mkdir()
    shared.chmod(mode)
    with pytest.raises(ApiConfigError, match="others can write to"):
        UnixSocket(str(shared / "api.sock"))
    assert not (shared / "api.sock").exists()
