"""Resolving watched paths into the directory entries they depend on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from taskforce.watch.resolve import ITSELF, Key, KeyIndex, Resolution, Resolver


def chain(directory: Path) -> tuple[Key, ...]:
    """The directories from the root down to ``directory``: a rename of any of them matters,
    and each reports its own (the entries of their parents are not needed)."""
    parts = directory.parts
    return tuple((str(Path(*parts[: i + 1])), ITSELF) for i in range(1, len(parts)))


@pytest.fixture
def tmp_path(tmp_path: Path) -> Path:
    return tmp_path.resolve()  # keys are in resolved form


def test_existing_file_depends_on_its_own_entry(tmp_path: Path) -> None:
    conf = tmp_path / "app.conf"
    conf.write_text("x")
    res = Resolver().resolve(str(conf))
    key = (str(tmp_path), "app.conf")
    assert res.keys == (*chain(tmp_path), key)
    assert res.final == key
    st = conf.stat()
    assert res.ident == (st.st_dev, st.st_ino)


def test_missing_file_waits_in_its_directory(tmp_path: Path) -> None:
    res = Resolver().resolve(str(tmp_path / "later"))
    assert res.keys == (*chain(tmp_path), (str(tmp_path), "later"))
    assert res.final == (str(tmp_path), "later")
    assert res.ident is None


def test_missing_directories_wait_on_the_first_missing_one(tmp_path: Path) -> None:
    res = Resolver().resolve(str(tmp_path / "a" / "b" / "app.conf"))
    assert res.keys == (*chain(tmp_path), (str(tmp_path), "a"))
    assert res.final is None
    assert res.ident is None


def test_a_file_where_a_directory_should_be(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("not a directory")
    res = Resolver().resolve(str(tmp_path / "a" / "app.conf"))
    assert res.keys == (*chain(tmp_path), (str(tmp_path), "a"))
    assert res.final is None


def test_symlinked_directory_depends_on_the_link_and_the_target(tmp_path: Path) -> None:
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "app.conf").write_text("x")
    (tmp_path / "current").symlink_to("v1")
    res = Resolver().resolve(str(tmp_path / "current" / "app.conf"))
    assert res.keys == (
        *chain(tmp_path),
        (str(tmp_path), "current"),
        (str(tmp_path / "v1"), ITSELF),
        (str(tmp_path / "v1"), "app.conf"),
    )
    assert res.final == (str(tmp_path / "v1"), "app.conf")
    assert res.ident is not None


def test_symlinked_file_and_dangling_link(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(tmp_path / "sub" / "target")
    res = Resolver().resolve(str(tmp_path / "link"))
    assert res.keys == (*chain(tmp_path), (str(tmp_path), "link"), (str(tmp_path), "sub"))
    assert res.ident is None
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "target").write_text("x")
    res = Resolver().resolve(str(tmp_path / "link"))
    assert res.final == (str(tmp_path / "sub"), "target")
    assert res.ident is not None


def test_dot_dot_in_a_link_target_applies_to_the_resolved_directory(tmp_path: Path) -> None:
    (tmp_path / "real" / "deep").mkdir(parents=True)
    (tmp_path / "real" / "app.conf").write_text("x")
    (tmp_path / "shortcut").symlink_to(tmp_path / "real" / "deep")
    (tmp_path / "link").symlink_to("shortcut/../app.conf")
    res = Resolver().resolve(str(tmp_path / "link"))
    assert res.final == (str(tmp_path / "real"), "app.conf")
    assert res.ident is not None


def test_link_loops_end(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    res = Resolver().resolve(str(tmp_path / "a" / "app.conf"))
    assert res.ident is None
    res = Resolver().resolve(str(tmp_path / "a"))
    assert res.ident is None


def test_index_tracks_which_directories_are_needed() -> None:
    index = KeyIndex()
    for path in ("/d1/a", "/d1/b", "/d2/c"):
        key = (os.path.dirname(path), os.path.basename(path))
        index.put(path, Resolution((key,), key, None))
    assert index.take_dir_changes() == ({"/d1", "/d2"}, set(), {"/d1", "/d2"})
    assert index.lookup("/d1", "a") == {"/d1/a"}
    assert index.in_dir("/d1") == {"/d1/a", "/d1/b"}
    index.discard("/d1/a")
    assert index.take_dir_changes() == (set(), set(), set())
    index.discard("/d1/b")
    assert index.take_dir_changes() == (set(), {"/d1"}, set())
    # Moving a path to another directory within one batch.
    index.put("/d2/c", Resolution((("/d3", "c"),), ("/d3", "c"), None))
    assert index.take_dir_changes() == ({"/d3"}, {"/d2"}, {"/d3"})
    # Added and removed again before anyone looked: nothing to do.
    index.put("/d4/e", Resolution((("/d4", "e"),), ("/d4", "e"), None))
    index.discard("/d4/e")
    assert index.take_dir_changes() == (set(), {"/d4"}, {"/d4"})
    assert not index.needs("/d4")


def test_waiting_in_lists_paths_depending_on_an_entry_that_is_not_theirs(tmp_path: Path) -> None:
    (tmp_path / "current").symlink_to("v1")
    index = KeyIndex()
    resolver = Resolver()
    linked = str(tmp_path / "current" / "app.conf")
    plain = str(tmp_path / "plain")
    index.put(linked, resolver.resolve(linked))
    index.put(plain, resolver.resolve(plain))
    assert index.waiting_in(str(tmp_path)) == {linked}
    assert index.in_dir(str(tmp_path)) == {linked, plain}


def test_directories_on_the_way_need_only_themselves(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "current").symlink_to("etc")
    index = KeyIndex()
    resolver = Resolver()
    for path in ("etc/app.conf", "current/other.conf", "missing/app.conf"):
        index.put(str(tmp_path / path), resolver.resolve(str(tmp_path / path)))
    index.take_dir_changes()
    # A link and a missing directory are entries of tmp_path; etc is on the way only.
    assert index.needs_entries(str(tmp_path))
    assert not index.needs_entries(str(tmp_path.parent))
    assert index.has_files(str(tmp_path / "etc"))
    index.discard(str(tmp_path / "current" / "other.conf"))
    index.discard(str(tmp_path / "missing" / "app.conf"))
    assert not index.needs_entries(str(tmp_path))
    # tmp_path needs fewer events now: its watch is narrowed.
    assert index.take_dir_changes() == (set(), set(), {str(tmp_path)})
