"""An instance's cgroup directories over restarts, with plain directories standing in for
the hierarchies: made once, removed only where there is one, looked for again after a
failed start."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from taskforce.core.spec import NO_CGROUP_LIMITS, CgroupLimits
from taskforce.runtime.limits import cgroups as cgroups_module
from taskforce.runtime.limits.cgroups import Cgroups, Hierarchy


def hierarchies(tmp_path: Path) -> tuple[Path, Path, Cgroups]:
    v2, memory = tmp_path / "v2", tmp_path / "memory"
    v2.mkdir()
    memory.mkdir()
    cgroups = Cgroups(
        [Hierarchy(2, frozenset(), str(v2)), Hierarchy(1, frozenset({"memory"}), str(memory))]
    )
    return v2, memory, cgroups


def test_restarts_of_an_instance_make_and_remove_no_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v2, memory, cgroups = hierarchies(tmp_path)
    (memory / "t@0").mkdir()  # an earlier image's, for a memory limit the task lost since
    procs = cgroups.prepare("t", 0, NO_CGROUP_LIMITS)
    assert procs == (str(v2 / "t@0" / "cgroup.procs"),)
    assert not (memory / "t@0").exists()
    calls: list[str] = []

    def counted(name: str) -> Callable[..., None]:
        real = getattr(os, name)

        def call(path: str, *args: object) -> None:
            calls.append(name)
            real(path, *args)

        return call

    for name in ("mkdir", "rmdir"):
        monkeypatch.setattr(os, name, counted(name))
    for _ in range(3):
        assert cgroups.prepare("t", 0, NO_CGROUP_LIMITS) == procs
    assert calls == []  # each a lookup in a cgroup file system, which other cgroups slow


def test_a_directory_removed_behind_its_back_is_made_again_after_a_failed_start(
    tmp_path: Path,
) -> None:
    v2, _, cgroups = hierarchies(tmp_path)
    cgroups.prepare("t", 0, NO_CGROUP_LIMITS)
    (v2 / "t@0").rmdir()
    cgroups.forget("t", 0)  # the start failed: joining it found no cgroup
    cgroups.prepare("t", 0, NO_CGROUP_LIMITS)
    assert (v2 / "t@0").is_dir()


def test_at_the_end_empty_cgroups_are_removed_without_reading_their_members(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v2, memory, cgroups = hierarchies(tmp_path)
    for slot in range(5):
        cgroups.prepare("t", slot, NO_CGROUP_LIMITS)
    (memory / "t@0").mkdir()
    read: list[str] = []

    def members(procs: str) -> list[int]:
        read.append(procs)
        return []

    monkeypatch.setattr(cgroups_module, "_pids", members)
    cgroups.remove_all()
    assert read == []  # each was emptied as its process exited: nothing to read
    assert not v2.exists() and not memory.exists()


def test_at_the_end_a_cgroup_with_members_is_killed_before_it_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v2, _, cgroups = hierarchies(tmp_path)
    cgroups.prepare("t", 0, NO_CGROUP_LIMITS)
    cgroups.prepare("t", 1, NO_CGROUP_LIMITS)
    (v2 / "t@1" / "cgroup.procs").write_text("")  # a plain directory: rmdir fails on it
    killed: list[tuple[str, int]] = []

    def kill(task: str, slot: int) -> int:
        killed.append((task, slot))
        return 0

    monkeypatch.setattr(cgroups, "kill", kill)
    cgroups.remove_all()
    assert killed == [("t", 1)]
    assert not (v2 / "t@0").exists()


@pytest.mark.parametrize("parent_offers", ["", "memory pids cpu"])
def test_a_controller_is_asked_of_the_parent_only_where_the_parent_has_it(
    tmp_path: Path, parent_offers: str
) -> None:
    # Asking a parent for a controller it has not got fails, after a wait on the kernel's
    # cgroup lock (a tenth of a second on a busy host, at every start of taskforce).
    parent = tmp_path / "parent"
    base = parent / "taskforce.key"
    base.mkdir(parents=True)
    (parent / "cgroup.controllers").write_text(parent_offers + "\n")
    (parent / "cgroup.subtree_control").write_text("")
    (base / "cgroup.controllers").write_text("\n")
    (base / "cgroup.subtree_control").write_text("")
    enabled = cgroups_module._enable_v2_controllers(str(base))
    asked = (parent / "cgroup.subtree_control").read_text()
    if parent_offers:
        assert enabled == {"memory", "pids", "cpu"} and asked
    else:
        assert enabled == frozenset() and asked == ""


def test_controllers_already_passed_down_are_not_asked_for_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = tmp_path / "parent"
    base = parent / "taskforce.key"
    base.mkdir(parents=True)
    (parent / "cgroup.controllers").write_text("memory pids cpu\n")
    (parent / "cgroup.subtree_control").write_text("memory pids cpu\n")
    (base / "cgroup.controllers").write_text("memory pids cpu\n")
    (base / "cgroup.subtree_control").write_text("memory pids\n")
    written: list[tuple[str, str]] = []
    monkeypatch.setattr(cgroups_module, "_write", lambda path, text: written.append((path, text)))
    assert cgroups_module._enable_v2_controllers(str(base)) == {"memory", "pids", "cpu"}
    assert written == [(str(base / "cgroup.subtree_control"), "+cpu")]


def test_a_restart_with_other_limits_is_given_the_cgroups_they_need(tmp_path: Path) -> None:
    # A restart with the same limits is given its previous cgroups as they were.
    _, memory, cgroups = hierarchies(tmp_path)
    plain = cgroups.prepare("t", 0, NO_CGROUP_LIMITS)
    limited = cgroups.prepare("t", 0, CgroupLimits(memory=1 << 30))
    assert limited == (*plain, str(memory / "t@0" / "cgroup.procs"))
    assert cgroups.prepare("t", 0, NO_CGROUP_LIMITS) == plain
    assert not (memory / "t@0").exists()
    assert cgroups.prepare("t", 0, NO_CGROUP_LIMITS, watch_memory=True) == limited
