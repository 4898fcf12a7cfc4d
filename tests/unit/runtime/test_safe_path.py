"""Walking to a file's directory without following links that another user could plant."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from taskforce.runtime.output.safe_path import UnsafePathError, open_directory_of


def directory_of(path: Path) -> tuple[str, str]:
    """(the directory reached, as /proc names it, the file name) for `path`."""
    fd, name = open_directory_of(str(path))
    try:
        return os.readlink(f"/proc/self/fd/{fd}"), name
    finally:
        os.close(fd)


def test_a_plain_path_is_walked_to_its_directory(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert directory_of(tmp_path / "a" / "b" / "x.log") == (str(tmp_path / "a" / "b"), "x.log")
    assert directory_of(tmp_path / "a" / "." / "b" / ".." / "x.log") == (
        str(tmp_path / "a"),
        "x.log",
    )


def test_links_in_directories_only_we_can_change_are_followed(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "deep").mkdir(parents=True)
    tmp_path.chmod(0o755)
    (tmp_path / "absolute").symlink_to(real)
    (tmp_path / "relative").symlink_to("real/deep")
    (real / "up").symlink_to("..")
    assert directory_of(tmp_path / "absolute" / "deep" / "x") == (str(real / "deep"), "x")
    assert directory_of(tmp_path / "relative" / "x") == (str(real / "deep"), "x")
    assert directory_of(tmp_path / "absolute" / "up" / "real" / "x") == (str(real), "x")


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o775])
def test_a_link_in_a_directory_others_can_write_to_is_refused(tmp_path: Path, mode: int) -> None:
    shared, target = tmp_path / "shared", tmp_path / "target"
    shared.mkdir()
    target.mkdir()
    (shared / "planted").symlink_to(target)
    shared.chmod(mode)
    with pytest.raises(UnsafePathError, match="planted is a symbolic link"):
        open_directory_of(str(shared / "planted" / "x.log"))
    assert directory_of(shared / "x.log") == (str(shared), "x.log")  # no link: fine


def test_link_loops_and_missing_directories_are_errors(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    (tmp_path / "loop").symlink_to("loop")
    with pytest.raises(OSError, match="too many symbolic links"):
        open_directory_of(str(tmp_path / "loop" / "x"))
    with pytest.raises(FileNotFoundError):
        open_directory_of(str(tmp_path / "missing" / "x"))
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError):
        open_directory_of(str(tmp_path / "file" / "x"))
    with pytest.raises(OSError, match="not an absolute file path"):
        open_directory_of("relative/x")


def test_no_descriptor_is_left_open(tmp_path: Path) -> None:
    before = set(os.listdir("/proc/self/fd"))
    tmp_path.chmod(0o755)
    (tmp_path / "loop").symlink_to("loop")
    for path in (tmp_path / "loop" / "x", tmp_path / "missing" / "x"):
        with pytest.raises(OSError):
            open_directory_of(str(path))
    assert set(os.listdir("/proc/self/fd")) == before
