"""Composing a configuration from included files and environment files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from taskforce.config import load
from taskforce.config.context import build_context
from taskforce.config.errors import ConfigError
from taskforce.config.host import HostFacts
from taskforce.config.include import Composer, Composition

HOST = HostFacts("h", "h.example", 1, 1000, 1000, lambda key: None, lambda key: None)


def task(*argv: str, **more: Any) -> dict[str, Any]:
    return {"commands": {"start": list(argv or ("/bin/true",))}, **more}


def write(path: Path, **document: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


def compose(main: Path, composer: Composer | None = None) -> Composition:
    return (composer or Composer(str(main))).compose()


def problems(main: Path) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        compose(main)
    return [str(p) for p in raised.value.problems]


def context(
    composition: Composition, name: str, environ: dict[str, str] | None = None
) -> dict[str, str]:
    return build_context(composition.config, name, None, environ or {}, HOST)


def test_tasks_join_in_order_of_patterns_then_sorted_matches(tmp_path: Path) -> None:
    write(tmp_path / "conf.d/b.conf", tasks={"b": task()})
    write(tmp_path / "conf.d/a.conf", tasks={"a": task()})
    write(tmp_path / "conf.d/.hidden.conf", tasks={"hidden": task()})
    write(tmp_path / "conf.d/notes.txt", tasks={"txt": task()})
    write(tmp_path / "first.conf", tasks={"first": task()})
    main = write(
        tmp_path / "main.conf", include=["first.conf", "conf.d/*.conf"], tasks={"m": task()}
    )
    composition = compose(main)
    assert list(composition.config.tasks) == ["m", "first", "a", "b"]
    assert composition.files == tuple(
        str(tmp_path / name)
        for name in ("main.conf", "first.conf", "conf.d/a.conf", "conf.d/b.conf")
    )


def test_a_single_pattern_may_be_written_without_a_list(tmp_path: Path) -> None:
    write(tmp_path / "conf.d/x.conf", tasks={"x": task()})
    main = write(tmp_path / "main.conf", include="conf.d/*.conf")
    assert list(compose(main).config.tasks) == ["x"]


def test_a_pattern_matching_nothing_is_fine_a_missing_file_is_not(tmp_path: Path) -> None:
    main = write(tmp_path / "main.conf", include=["conf.d/*.conf", "missing.conf"], tasks={})
    assert problems(main) == [
        f"{main}:1:31: include[1]: there is no file {tmp_path / 'missing.conf'}"
    ]


def test_includes_nest_relative_to_the_file_naming_them(tmp_path: Path) -> None:
    write(tmp_path / "a/inner/deep.conf", tasks={"deep": task()})
    write(tmp_path / "a/mid.conf", include=["inner/*.conf"], tasks={"mid": task()})
    main = write(tmp_path / "main.conf", include=["a/mid.conf"])
    assert list(compose(main).config.tasks) == ["mid", "deep"]


def test_cycles_are_reported_with_the_chain(tmp_path: Path) -> None:
    write(tmp_path / "a.conf", include=["b.conf"], tasks={"a": task()})
    write(tmp_path / "b.conf", include=["a.conf"], tasks={"b": task()})
    main = write(tmp_path / "main.conf", include=["a.conf"])
    [problem] = problems(main)
    assert problem.startswith(f"{tmp_path / 'b.conf'}:1:")
    assert problem.endswith("include[0]: include cycle: a.conf -> b.conf -> a.conf")


def test_including_itself_is_a_cycle(tmp_path: Path) -> None:
    main = write(tmp_path / "main.conf", include=["*.conf"], tasks={"m": task()})
    assert problems(main) == [f"{main}:1:14: include[0]: include cycle: main.conf -> main.conf"]


def test_a_file_reached_twice_is_read_once(tmp_path: Path) -> None:
    write(tmp_path / "conf.d/a.conf", tasks={"a": task()})
    main = write(tmp_path / "main.conf", include=["conf.d/a.conf", "conf.d/*.conf"])
    assert list(compose(main).config.tasks) == ["a"]


def test_a_task_in_two_files_names_both_places(tmp_path: Path) -> None:
    one = tmp_path / "conf.d/one.conf"
    one.parent.mkdir()
    one.write_text("tasks:\n  web:\n    commands: {start: [/bin/true]}\n")
    two = tmp_path / "conf.d/two.conf"
    two.write_text(
        "# second\ntasks:\n  db: {commands: {start: [/bin/true]}}\n"
        "  web: {commands: {start: [/bin/false]}}\n"
    )
    main = write(tmp_path / "main.conf", include=["conf.d/*.conf"])
    assert problems(main) == [
        f"{two}:4:3: tasks.web: the task 'web' is defined twice: here and at {one}:2:3"
    ]


def test_a_task_of_the_main_file_and_an_included_one(tmp_path: Path) -> None:
    inc = write(tmp_path / "inc.conf", tasks={"web": task()})
    main = tmp_path / "main.conf"
    main.write_text("include: [inc.conf]\ntasks:\n  web: {commands: {start: [/bin/true]}}\n")
    [problem] = problems(main)
    assert (
        problem == f"{inc}:1:12: tasks.web: the task 'web' is defined twice: here and at {main}:3:3"
    )


def test_problems_of_every_file_are_reported_with_their_file(tmp_path: Path) -> None:
    bad = tmp_path / "conf.d/bad.conf"
    bad.parent.mkdir()
    bad.write_text("tasks:\n  x:\n    comands: {start: [a]}\n")
    worse = tmp_path / "conf.d/worse.conf"
    worse.write_text("tasks: [\n")
    main = write(tmp_path / "main.conf", include=["conf.d/*.conf"], tasks={"ok": task(), "bad": 1})
    found = problems(main)
    assert any(p.startswith(f"{main}:1:") and "tasks.bad" in p for p in found)
    assert any(p.startswith(f"{bad}:3:5: tasks.x.comands: unknown key") for p in found)
    assert any(p.startswith(f"{worse}:") for p in found)


def test_links_between_files_are_checked(tmp_path: Path) -> None:
    write(tmp_path / "web.conf", tasks={"web": task(requires="db")})
    write(tmp_path / "db.conf", tasks={"db": task(requires="web")})
    write(tmp_path / "lost.conf", tasks={"lost": task(requires="nowhere")})
    main = write(tmp_path / "main.conf", include=["web.conf", "db.conf", "lost.conf"])
    found = problems(main)
    assert any(
        "requires cycle: db -> web -> db" in p and p.startswith(str(tmp_path / "db.conf"))
        for p in found
    )
    assert any(
        p.startswith(str(tmp_path / "lost.conf")) and "there is no task 'nowhere'" in p
        for p in found
    )


def test_settings_belong_to_the_main_file(tmp_path: Path) -> None:
    write(tmp_path / "inc.conf", settings={}, tasks={})
    main = write(tmp_path / "main.conf", include="inc.conf")
    [problem] = problems(main)
    assert "settings: unknown key 'settings'" in problem
    assert problem.startswith(str(tmp_path / "inc.conf"))


def test_defines_and_defaults_of_a_file_apply_to_its_tasks_only(tmp_path: Path) -> None:
    write(
        tmp_path / "inc.conf",
        defines={"PORT": "8080", "PATH": "/inc/bin:{PATH}"},
        defaults={"LEVEL": "file", "MODE": "file"},
        tasks={"inner": task(defines={"PATH": "/task/bin:{PATH}"}, defaults={"MODE": "task"})},
    )
    main = write(
        tmp_path / "main.conf",
        include="inc.conf",
        defines={"PORT": "80", "PATH": "/top/bin:{PATH}"},
        defaults={"LEVEL": "top"},
        tasks={"outer": task()},
    )
    composition = compose(main)
    inner = context(composition, "inner", {"PATH": "/usr/bin"})
    outer = context(composition, "outer", {"PATH": "/usr/bin"})
    # The file's define wins over the top level's, a task's over the file's; extending
    # defines stack in that order.
    assert inner["PORT"] == "8080" and outer["PORT"] == "80"
    assert inner["PATH"] == "/task/bin:/inc/bin:/top/bin:/usr/bin"
    assert outer["PATH"] == "/top/bin:/usr/bin"
    # Defaults: the task's, then the file's, then the top level's.
    assert (inner["MODE"], inner["LEVEL"]) == ("task", "file")
    assert outer["LEVEL"] == "top" and "MODE" not in outer


def test_env_files_join_just_below_the_defines_of_their_level(tmp_path: Path) -> None:
    (tmp_path / "top.env").write_text(
        "TOP=from-top-env\nBOTH=top-env\nOVER=top-env\nexport LIT='{TOP}'\n"
    )
    (tmp_path / "task.env").write_text('TASK="from task env"\nOVER=task-env\nWIN=task-env\n')
    (tmp_path / "file.env").write_text("FILE=file-env\nBOTH=file-env\n")
    write(
        tmp_path / "inc.conf",
        env_file="file.env",
        tasks={"inner": task("/bin/echo", "{FILE}", "{BOTH}")},
    )
    main = write(
        tmp_path / "main.conf",
        include="inc.conf",
        env_file=["top.env", "-missing.env", {"path": "also-missing.env", "optional": True}],
        defines={"BOTH": "top-define"},
        tasks={
            "outer": task("/bin/echo", "{TASK}", env_file="task.env", defines={"WIN": "define"}),
        },
    )
    composition = compose(main)
    outer = context(composition, "outer", {"TOP": "environment"})
    inner = context(composition, "inner")
    # Top level: the env file over the environment, under the top-level define.
    assert outer["TOP"] == "from-top-env" and outer["BOTH"] == "top-define"
    # Env file values are taken as written.
    assert outer["LIT"] == "{TOP}"
    # Task level: over the top-level define, under the task's define.
    assert (outer["TASK"], outer["OVER"], outer["WIN"]) == ("from task env", "task-env", "define")
    # File level: over the top level.
    assert (inner["FILE"], inner["BOTH"]) == ("file-env", "file-env")
    assert "FILE" not in outer and "TASK" not in inner
    assert {"TOP", "TASK", "FILE", "BOTH"} <= composition.names


def test_a_missing_env_file_is_an_error_at_its_entry(tmp_path: Path) -> None:
    main = tmp_path / "main.conf"
    main.write_text("tasks:\n  a:\n    commands: {start: [x]}\n    env_file: [a.env, -b.env]\n")
    assert problems(main) == [
        f"{main}:4:16: tasks.a.env_file[0]: there is no environment file {tmp_path / 'a.env'} "
        "(write '-a.env' or optional: true if it may be missing)"
    ]


def test_a_bad_env_file_line_is_reported_in_that_file(tmp_path: Path) -> None:
    (tmp_path / "bad.env").write_text("A=1\nB 2\n")
    main = write(tmp_path / "main.conf", env_file="bad.env", tasks={})
    assert problems(main) == [f"{tmp_path / 'bad.env'}:2:2: expected '=' after the name 'B'"]


def test_a_reload_reads_only_what_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for index in range(3):
        write(tmp_path / f"conf.d/{index}.conf", tasks={f"t{index}": task(str(index))})
    main = write(tmp_path / "main.conf", include="conf.d/*.conf")
    composer = Composer(str(main))
    before = composer.compose().config.tasks
    read: list[str] = []

    def reading(path: str) -> str:
        read.append(path)
        return load.read_text(path)

    monkeypatch.setattr("taskforce.config.include.read_text", reading)
    changed = tmp_path / "conf.d/1.conf"
    write(changed, tasks={"t1": task("changed")})
    composer.changed([str(changed)])
    after = composer.compose().config.tasks
    assert read == [str(main), str(changed)]
    assert after["t0"] is before["t0"] and after["t2"] is before["t2"]
    assert after["t1"] is not before["t1"]
    # A file whose status changed is read again even when the watcher did not say so.
    read.clear()
    other = tmp_path / "conf.d/2.conf"
    os.utime(other, ns=(1, 1))
    composer.compose()
    assert read == [str(main), str(other)]


def test_a_changed_env_file_changes_only_the_tasks_using_it(tmp_path: Path) -> None:
    env = tmp_path / "a.env"
    env.write_text("A=1\n")
    main = write(tmp_path / "main.conf", tasks={"a": task(env_file="a.env"), "b": task()})
    composer = Composer(str(main))
    before = composer.compose().config.tasks
    env.write_text("A=2\n")
    composer.changed([str(env)])
    after = composer.compose().config.tasks
    assert after["a"].env == {"A": "2"} and after["a"] is not before["a"]
    assert after["b"] is before["b"]
    # Nothing changed: the same objects.
    assert composer.compose().config.tasks["a"] is after["a"]


def test_watched_paths(tmp_path: Path) -> None:
    write(tmp_path / "conf.d/a.conf", tasks={}, env_file="-../opt.env")
    main = write(tmp_path / "main.conf", include=["conf.d/*.conf", "*/x/*.conf"])
    composer = Composer(str(main))
    compose(main, composer)
    assert composer.watched_files() == {
        str(tmp_path / "conf.d/a.conf"),
        str(tmp_path / "opt.env"),
    }
    assert composer.watched_dirs() == {str(tmp_path / "conf.d"), str(tmp_path)}


def test_a_failed_composition_keeps_watching_what_worked(tmp_path: Path) -> None:
    good = write(tmp_path / "conf.d/good.conf", tasks={"g": task()})
    main = write(tmp_path / "main.conf", include="conf.d/*.conf")
    composer = Composer(str(main))
    composer.compose()
    bad = tmp_path / "conf.d/bad.conf"
    bad.write_text("tasks: [")
    with pytest.raises(ConfigError):
        composer.compose()
    assert {str(good), str(bad)} <= composer.watched_files()


def test_status_shows_where_each_task_is_defined(tmp_path: Path) -> None:
    inc = tmp_path / "inc.conf"
    inc.write_text("tasks:\n  b: {commands: {start: [x]}}\n")
    main = write(tmp_path / "main.conf", include="inc.conf", tasks={"a": task()})
    status = compose(main).status()
    assert set(status["tasks"]) == {"a", "b"}
    assert status["sources"] == {
        "files": [str(main), str(inc)],
        "tasks": {"a": f"{main}:1:35", "b": f"{inc}:2:3"},
    }


def test_status_shows_each_entry_as_written_after_reloads(tmp_path: Path) -> None:
    """The files keep their task entries as bytes once checked (see include._Written):
    status decodes them as written (1, 1.0 and true told apart), before and after a
    reload that reads one file again."""
    inc = write(tmp_path / "inc.conf", tasks={"b": task("x", count=1, requires="a")})
    entry = task("y", "-v", count=2, defines={"I": 1, "F": 1.0, "B": True, "S": "s"})
    main = write(tmp_path / "main.conf", include="inc.conf", tasks={"a": entry})
    composer = Composer(str(main))
    expected = {"a": entry, "b": task("x", count=1, requires="a")}
    assert repr(compose(main, composer).status()["tasks"]) == repr(expected)
    write(inc, tasks={"b": task("z", defines={"I": 1.0}, requires="a"), "c": task()})
    composer.changed([str(inc)])
    expected.update(b=task("z", defines={"I": 1.0}, requires="a"), c=task())
    again = compose(main, composer)
    assert repr(again.status()["tasks"]) == repr(expected)
    assert again.document.data["include"] == "inc.conf"


def test_an_env_file_listed_in_a_kept_entry_is_placed_at_its_item(tmp_path: Path) -> None:
    inc = tmp_path / "inc.conf"
    inc.write_text("tasks:\n  b:\n    commands: {start: [x]}\n    env_file: [-a.env, b.env]\n")
    main = write(tmp_path / "main.conf", include="inc.conf")
    composer = Composer(str(main))
    with pytest.raises(ConfigError) as raised:
        compose(main, composer)
    assert [(p.path, p.mark) for p in raised.value.problems] == [
        ("tasks.b.env_file[1]", raised.value.problems[0].mark)
    ]
    assert str(raised.value.problems[0]).startswith(f"{inc}:4:")
    (tmp_path / "b.env").write_text("B=1\n")
    assert context(compose(main, composer), "b")["B"] == "1"


def test_the_readme_example_composes(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    section = readme.split("### Several files: `include` and `env_file`", 1)[1]
    blocks = [block.split("```", 1)[0] for block in section.split("```")[1::2]]
    main, worker, env = (block.split("\n", 1)[1] for block in blocks[:3])
    (tmp_path / "taskforce.conf").write_text(main)
    write(tmp_path / "conf.d/10-web.conf", tasks={"web": task()})
    (tmp_path / "conf.d/20-worker.conf").write_text(worker)
    (tmp_path / "conf.d/worker.env").write_text("LOG_LEVEL=debug\n")
    (tmp_path / "app.env").write_text(env)
    composition = compose(tmp_path / "taskforce.conf")
    worker_context = context(composition, "worker")
    assert worker_context["QUEUE"] == "jobs" and worker_context["LOG_LEVEL"] == "debug"
    assert worker_context["GREETING"] == "hello\tworld"
    assert context(composition, "web")["LISTEN"] == "127.0.0.1:8080"
