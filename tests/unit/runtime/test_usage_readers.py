"""The readers behind the usage figures of the status and /metrics, on fake /proc and cgroup
trees: which file each figure comes from, what an odd or missing file gives, and that the
directories of an instance's cgroups are looked up once, not at every reading."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from taskforce.core.spec import NO_CGROUP_LIMITS
from taskforce.runtime.limits.cgroups import Cgroups, GroupUsage, Hierarchy
from taskforce.runtime.processes.usage import (
    _clock,
    process_usage,
    read_one,
    read_usages,
)

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def fake_process(proc: Path, pid: int, name: str, stat: list[int], statm: str) -> None:
    """/proc/PID/stat with fields 3 on (`stat`, the state first as 0) and statm."""
    entry = proc / str(pid)
    entry.mkdir(parents=True)
    fields = " ".join(["S", *map(str, stat[1:])])
    (entry / "stat").write_bytes(f"{pid} ({name}) {fields}\n".encode())
    (entry / "statm").write_text(statm)


def stat_fields(utime: int, stime: int, started: int) -> list[int]:
    fields = [0] * 50  # field 3 (state) to 52
    fields[11], fields[12], fields[19] = utime, stime, started
    fields[20], fields[21] = 999 * PAGE, 7  # vsize, rss: statm's figures are the ones used
    return fields


def test_process_usage_reads_stat_and_statm(tmp_path: Path) -> None:
    fake_process(tmp_path, 42, "a) (b c", stat_fields(250, 50, 1000), "300 120 10 1 0 20 0\n")
    clock = _clock()
    assert clock is not None
    used = process_usage(42, proc=str(tmp_path))
    assert used is not None
    assert used.cpu_seconds == pytest.approx(300 / TICKS)
    assert used.rss_bytes == 120 * PAGE
    assert used.virtual_bytes == 300 * PAGE
    assert used.start_time == pytest.approx(clock[2] + 1000 / TICKS)


def test_process_usage_of_a_missing_or_garbled_entry_is_none(tmp_path: Path) -> None:
    assert process_usage(7, proc=str(tmp_path)) is None
    fake_process(tmp_path, 8, "short", [0, 1, 2], "1 2\n")
    assert process_usage(8, proc=str(tmp_path)) is None
    fake_process(tmp_path, 9, "no statm", stat_fields(1, 1, 1), "")
    assert process_usage(9, proc=str(tmp_path)) is None


def tree(tmp_path: Path, *hierarchies: tuple[int, str]) -> Cgroups:
    """Cgroups over plain directories: (version, controllers) each."""
    found = []
    for version, controllers in hierarchies:
        base = tmp_path / f"v{version}-{controllers or 'none'}"
        base.mkdir()
        found.append(Hierarchy(version, frozenset(filter(None, controllers.split(","))), str(base)))
    return Cgroups(found)


def put(cgroups: Cgroups, index: int, name: str, text: str, group: str = "t@0") -> None:
    (Path(cgroups.hierarchies[index].base) / group / name).write_text(text)


def test_v2_cpu_stat_members_and_a_v1_memory_cgroup(tmp_path: Path) -> None:
    cgroups = tree(tmp_path, (2, ""), (1, "memory"))
    cgroups.prepare("t", 0, NO_CGROUP_LIMITS, watch_memory=True)
    put(cgroups, 0, "cpu.stat", "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n")
    put(cgroups, 0, "cgroup.procs", "10\n11\n12\n")
    put(cgroups, 1, "memory.usage_in_bytes", "8192\n")
    assert cgroups.usage("t", 0) == GroupUsage(1.5, 8192, 3)


def test_a_hierarchy_the_instance_does_not_use_gives_no_figure(tmp_path: Path) -> None:
    cgroups = tree(tmp_path, (2, "memory"), (1, "memory"))
    cgroups.prepare("t", 0, NO_CGROUP_LIMITS)
    put(cgroups, 0, "cpu.stat", "user_usec 1\nusage_usec 20\n")  # not first: still found
    put(cgroups, 0, "memory.current", "4096\n")
    put(cgroups, 0, "cgroup.procs", "")
    found = cgroups.usage("t", 0)
    assert found is not None and found.cpu_seconds == pytest.approx(20e-6)
    assert (found.memory_bytes, found.processes) == (4096, 0)


def test_a_v1_cpuacct_cgroup_counts_in_nanoseconds(tmp_path: Path) -> None:
    cgroups = tree(tmp_path, (1, "freezer"), (1, "cpuacct"), (1, "memory"))
    cgroups.prepare("t", 0, NO_CGROUP_LIMITS)
    put(cgroups, 0, "cgroup.procs", "10\n")
    put(cgroups, 1, "cpuacct.usage", "2500000000\n")
    assert cgroups.usage("t", 0) == GroupUsage(2.5, None, 1)


def test_missing_or_garbled_files_give_no_figure(tmp_path: Path) -> None:
    cgroups = tree(tmp_path, (2, ""), (1, "memory"))
    cgroups.prepare("t", 0, NO_CGROUP_LIMITS, watch_memory=True)
    assert cgroups.usage("t", 0) == GroupUsage(None, None, 0)
    put(cgroups, 0, "cpu.stat", "user_usec 1\n")
    put(cgroups, 1, "memory.usage_in_bytes", "lots\n")
    assert cgroups.usage("t", 0) == GroupUsage(None, None, 0)


def test_many_members_are_all_counted(tmp_path: Path) -> None:
    cgroups = tree(tmp_path, (2, ""))
    cgroups.prepare("t", 0, NO_CGROUP_LIMITS)
    put(cgroups, 0, "cgroup.procs", "".join(f"{pid}\n" for pid in range(100_000, 130_000)))
    found = cgroups.usage("t", 0)
    assert found is not None and found.processes == 30_000


def test_directories_are_looked_up_once_per_prepare(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cgroups = tree(tmp_path, (2, ""), (1, "memory"))
    lookups: list[str] = []
    real_isdir = os.path.isdir

    def isdir(path: str) -> bool:
        lookups.append(path)
        return real_isdir(path)

    monkeypatch.setattr(os.path, "isdir", isdir)
    cgroups.prepare("t", 0, NO_CGROUP_LIMITS, watch_memory=True)
    put(cgroups, 1, "memory.usage_in_bytes", "8192\n")
    lookups.clear()
    for _ in range(3):
        found = cgroups.usage("t", 0)
        assert found is not None and found.memory_bytes == 8192
    assert len(lookups) <= 1  # none where prepare knows where its directories are
    # A new process of the instance without memory_restart: no v1 memory cgroup now.
    (Path(cgroups.hierarchies[1].base) / "t@0" / "memory.usage_in_bytes").unlink()
    cgroups.prepare("t", 0, NO_CGROUP_LIMITS)
    lookups.clear()
    for _ in range(3):
        found = cgroups.usage("t", 0)
        assert found is not None and found.memory_bytes is None
    assert len(lookups) <= 1  # none where prepare knows where its directories are


def test_an_instance_taskforce_did_not_prepare_is_read_too(tmp_path: Path) -> None:
    # Adopted after a SIGKILL or taken over at an upgrade: its cgroups are where they were.
    cgroups = tree(tmp_path, (2, ""), (1, "memory"))
    for hierarchy in cgroups.hierarchies:
        os.mkdir(os.path.join(hierarchy.base, "t@3"))
    put(cgroups, 0, "cgroup.procs", "10\n", group="t@3")
    put(cgroups, 1, "memory.usage_in_bytes", "4096\n", group="t@3")
    assert cgroups.usage("t", 3) == GroupUsage(None, 4096, 1)
    assert cgroups.usage("t", 3) == GroupUsage(None, 4096, 1)
    assert cgroups.usage("t", 4) == GroupUsage(None, None, 0)


def test_without_a_hierarchy_there_is_no_usage() -> None:
    assert Cgroups([]).usage("t", 0) is None


def test_read_at_once_the_figures_are_those_read_one_by_one(tmp_path: Path) -> None:
    """read_usages (the C extension's reader where it is built) against the Python readers,
    on every kind of file and of oddity above, and on enough instances for two threads."""
    proc = tmp_path / "proc"
    fake_process(proc, 42, "a) (b c", stat_fields(250, 50, 1000), "300 120 10 1 0 20 0\n")
    fake_process(proc, 8, "short", [0, 1, 2], "1 2\n")
    fake_process(proc, 9, "no statm", stat_fields(1, 1, 1), "")
    fake_process(proc, 10, "odd statm", stat_fields(7, 3, 1), "300 x\n")
    cgroups = tree(tmp_path, (2, ""), (1, "cpuacct"), (1, "memory"))
    for slot in range(600):
        group = f"t@{slot}"
        # As found after a restart (not prepared): a v1 directory only where needed.
        for index, needed in enumerate((True, slot % 3 == 1, slot % 2 == 0)):
            if needed:
                os.mkdir(Path(cgroups.hierarchies[index].base) / group)
        if slot % 3 == 0:
            put(cgroups, 0, "cpu.stat", f"user_usec 1\nusage_usec {slot * 12345}\n", group)
        elif slot % 3 == 1:
            put(cgroups, 1, "cpuacct.usage", f"{slot * 987654321}\n", group)
        if slot % 5 == 0:
            put(cgroups, 0, "cgroup.procs", "".join(f"{p}\n" for p in range(slot * 7)), group)
        if slot % 4 == 0:
            put(cgroups, 2, "memory.usage_in_bytes", "lots\n" if slot % 8 else "8192\n", group)
    os.mkdir(Path(cgroups.hierarchies[0].base) / "t@600")
    put(cgroups, 0, "cpu.stat", "usage_usec\n", "t@600")
    put(cgroups, 0, "cgroup.procs", "".join(f"{p}\n" for p in range(50_000)), "t@600")
    pids = [42, 8, 9, 10, 7, None]
    targets = [
        (pids[slot % len(pids)], None if slot == 601 else cgroups.usage_files("t", slot))
        for slot in range(602)
    ]
    one_by_one = [read_one(pid, files, str(proc)) for pid, files in targets]
    assert read_usages(targets, str(proc)) == one_by_one
    assert one_by_one[0] == (300 / TICKS, 120 * PAGE, (0.0, 8192, 0))
    assert one_by_one[1][:2] == (None, None)  # a stat too short
    assert one_by_one[600][2] == (None, None, 50_000)
    assert one_by_one[601] == (None, None, None)
