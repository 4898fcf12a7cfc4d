"""Parsing the status filters (?task=, ?state=, ?fields=), and the kept JSON text of a
task's entry: the same bytes as json.dumps, whole, by field, with usage spliced in."""

from __future__ import annotations

import json
from typing import Any

import pytest

from taskforce.api.query import TASK_FIELDS, TaskQuery, parse_query
from taskforce.api.table import join, make_entry
from taskforce.runtime.manage import ControlError


def test_no_parameters_is_everything() -> None:
    query = parse_query({"indent": ["2"]})
    assert query.everything and query.selects_name("any") and query.selects_state("failed", False)


def test_task_names_repeated_comma_separated_and_globs() -> None:
    query = parse_query({"task": ["web-*,db", "cache"]})
    assert query.names == frozenset({"web-*", "db", "cache", "web-*,db"})
    assert query.patterns == ("web-*",)
    assert [n for n in ("web-1", "db", "cache", "dbx", "web") if query.selects_name(n)] == [
        "web-1",
        "db",
        "cache",
    ]
    assert query.exact_names() is None
    assert parse_query({"task": ["b", "a"]}).exact_names() == ["a", "b"]
    # A task whose name holds a comma is found by its whole name too.
    assert parse_query({"task": ["a,b"]}).selects_name("a,b")


def test_states_and_the_wanted_pseudo_states() -> None:
    query = parse_query({"state": ["running,failed"]})
    assert query.selects_state("running", True) and query.selects_state("failed", False)
    assert not query.selects_state("off", True)
    unwanted = parse_query({"state": ["unwanted"]})
    assert unwanted.selects_state("starting", False) and not unwanted.selects_state("off", True)
    assert parse_query({"state": ["wanted", "failed"]}).selects_state("off", True)


def test_fields_keep_the_tables_order() -> None:
    assert parse_query({"fields": ["state", "control"]}).fields == ("control", "state")


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"state": ["runing"]}, "unknown state 'runing'"),
        ({"state": ["running, x"]}, "unknown state 'x'"),
        ({"fields": ["state,pid"]}, "unknown field 'pid'"),
        ({"fields": ["x" * 500]}, "'" + "x" * 60 + "...'"),
        ({"task": [","]}, "?task= is empty"),
        ({"state": [""]}, "?state= is empty"),
    ],
)
def test_bad_values_are_400_naming_them(params: dict[str, list[str]], named: str) -> None:
    with pytest.raises(ControlError) as raised:
        parse_query(params)
    assert raised.value.status == 400 and named in raised.value.message


def test_fields_make_no_sense_on_the_summary() -> None:
    with pytest.raises(ControlError, match="fields"):
        parse_query({"fields": ["state"]}, fields=False)


def task(state: str, processes: list[dict[str, Any]]) -> dict[str, Any]:
    values: dict[str, Any] = dict.fromkeys(TASK_FIELDS)
    values.update(state=state, processes=processes, history=[{"t": 1.5, "kind": "start"}])
    values["why"] = 'ünïcode "quoted"'
    return values


def process(slot: int, pid: int | None) -> dict[str, Any]:
    return {"instance": slot, "pid": pid, "state": "running", "exit": None}


def test_the_kept_text_is_what_json_dumps_makes() -> None:
    tasks = {
        "web": task("running", [process(0, 10), process(1, 11)]),
        "db": task("off", []),
        "név": task("failed", [process(0, None)]),
    }
    entries = [(n, make_entry(n, None, t, t["state"] != "failed")) for n, t in tasks.items()]

    def usage(name: str, slot: int, pid: int | None) -> bytes:
        return b',"cpu_seconds":' + json.dumps(pid and pid / 10).encode()

    compact = (",", ":")
    assert join(entries, TaskQuery(), None) == json.dumps(tasks, separators=compact).encode()
    with_usage = {
        n: {
            **t,
            "processes": [{**p, "cpu_seconds": p["pid"] and p["pid"] / 10} for p in t["processes"]],
        }
        for n, t in tasks.items()
    }
    assert join(entries, TaskQuery(), usage) == json.dumps(with_usage, separators=compact).encode()
    picked = parse_query({"fields": ["processes,why,history"], "state": ["unwanted"]})
    expected = {
        "név": {k: with_usage["név"][k] for k in ("why", "processes", "history")},
    }
    assert join(entries, picked, usage) == json.dumps(expected, separators=compact).encode()
    assert json.loads(join(entries, parse_query({"fields": ["control"]}), usage)) == {
        "web": {"control": None},
        "db": {"control": None},
        "név": {"control": None},
    }


def test_an_entry_out_of_order_is_a_bug() -> None:
    values = task("running", [])
    values = {"state": values.pop("state"), **values}
    with pytest.raises(ValueError, match="out of order"):
        make_entry("web", None, values, True)
