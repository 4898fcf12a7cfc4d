"""The filtered status views and /status/summary on a real legion running `sleep` tasks,
over its unix socket; and the kept JSON text of the table, checked against the table made
from scratch after each kind of change (start, restart, stop, a refused reload).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from support.environ import inherited
from support.http_client import Client
from taskforce.api import readings
from taskforce.api import status as views
from taskforce.api.metrics import series, unpack
from taskforce.api.query import TASK_FIELDS, TASK_STATES
from taskforce.api.server import start_api
from taskforce.api.status import Controller
from taskforce.config.model import HttpListener
from taskforce.runtime.legion import Legion
from taskforce.runtime.loop.supervisor import Outcome
from taskforce.runtime.manage import ControlError
from taskforce.runtime.own import memory
from taskforce.runtime.processes import usage
from taskforce.runtime.processes.usage import read_usages

DEADLINE = 20.0
SLEEP = ["sleep", "1000"]
SETTINGS: dict[str, Any] = {
    "stop_timeout": 1,
    "restart": {"min_uptime": 0.5, "initial_delay": 0.05, "factor": 1, "max_delay": 0.05},
}
TASKS: dict[str, Any] = {
    "web-1": {"commands": {"start": SLEEP}},
    "web-2": {"commands": {"start": SLEEP}, "count": 2},
    "db": {"commands": {"start": SLEEP}, "control": "off"},
    # Exits at once, twice: then given up on (failed), steadily not in its wanted state.
    # (Each end a failure, however slowly `false` runs on a busy machine.)
    "flaky": {"commands": {"start": ["false"]}, "restart": {"max_failures": 2, "min_uptime": 60}},
}


def get(path: str, target: str) -> tuple[int, Any]:
    client = Client(f"unix:{path}", timeout=DEADLINE)
    try:
        client.request("GET", target)
        response = client.getresponse()
        return response.status, json.loads(response.read())
    finally:
        client.close()


Scenario = Callable[
    [Legion, Controller, Callable[[str], Awaitable[tuple[int, Any]]]], Awaitable[None]
]


def serve(
    tmp_path: Path, marker: str, scenario: Scenario, tasks: dict[str, Any] = TASKS
) -> Outcome:
    config = tmp_path / "taskforce.conf"
    config.write_text(json.dumps({"tasks": tasks, "settings": SETTINGS}))
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    socket_path = str(run / "api.sock")

    async def main() -> Outcome:
        legion = Legion(str(config), environ=inherited(TF_TEST_MARKER=marker))
        controller = Controller(legion)
        service = await start_api(
            legion, controller, [HttpListener(listen=socket_path, allow_control=True)]
        )
        serving = asyncio.create_task(legion.serve())

        async def api(target: str) -> tuple[int, Any]:
            return await asyncio.to_thread(get, socket_path, target)

        try:
            await scenario(legion, controller, api)
        finally:
            legion.stop()
            async with asyncio.timeout(DEADLINE):
                outcome = await serving
            await service.close()
        return outcome

    return asyncio.run(main())


async def until(
    controller: Controller,
    condition: Callable[[dict[str, Any]], bool],
    what: str,
    timeout: float = DEADLINE,
) -> dict[str, Any]:
    """Wait until the task table satisfies `condition`; the kept text must match the table
    made from scratch each time it is looked at."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        try:
            tasks = controller.tasks()
        except ControlError:  # not serving yet
            tasks = {}
        else:
            assert controller.table() == json.dumps(tasks, separators=(",", ":")).encode()
            if condition(tasks):
                return tasks
        assert loop.time() < end, f"timed out waiting for {what}: {tasks}"
        await asyncio.sleep(0.02)  # polling interval of a deadline-bounded wait


async def usage_agrees(controller: Controller) -> None:
    """The table's text with usage, and the /metrics lines kept with its entries, are what
    the objects make (with the same readings)."""
    tasks = await controller.tasks_with_usage()
    table = b"".join(await controller.table_with_usage())
    assert table == json.dumps(tasks, separators=(",", ":")).encode()
    kept = [unpack(row) for row in await controller.series()]
    assert kept == [unpack(row) for row in series(tasks)]


def settled(tasks: dict[str, Any]) -> bool:
    return bool(
        tasks["web-1"]["running"] == 1
        and tasks["web-2"]["running"] == 2
        and tasks["flaky"]["state"] == "failed"
    )


def pids(tasks: dict[str, Any], name: str) -> list[int]:
    return [p["pid"] for p in tasks[name]["processes"] if p["pid"] is not None]


def test_filters_and_summary_over_the_socket(tmp_path: Path, marker: str) -> None:
    async def scenario(
        legion: Legion, controller: Controller, api: Callable[[str], Awaitable[tuple[int, Any]]]
    ) -> None:
        await until(controller, settled, "web to run and flaky to fail")

        async def names(target: str) -> list[str]:
            status, data = await api(target)
            assert status == 200, data
            return list(data)

        assert await names("/status/tasks") == ["web-1", "web-2", "db", "flaky"]
        assert await names("/status/tasks?task=web-*") == ["web-1", "web-2"]
        # In the table's order, whatever the order asked; repeated or comma-separated.
        assert await names("/status/tasks?task=db,web-1") == ["web-1", "db"]
        assert await names("/status/tasks?task=db&task=web-1") == ["web-1", "db"]
        assert await names("/status/tasks?task=nobody") == []
        assert await names("/status/tasks?state=unwanted") == ["flaky"]
        assert await names("/status/tasks?state=wanted") == ["web-1", "web-2", "db"]
        assert await names("/status/tasks?state=off,failed") == ["db", "flaky"]
        assert await names("/status/tasks?task=web-*&state=off") == []

        status, data = await api("/status/tasks?fields=state,running")
        assert status == 200
        assert data["web-2"] == {"running": 2, "state": "running"}
        assert all(list(task) == ["running", "state"] for task in data.values())
        # Processes asked for come with their usage, read now, as in the full table.
        status, data = await api("/status/tasks?task=web-2&fields=processes")
        assert [
            p["pid"] is not None and "cpu_seconds" in p for p in data["web-2"]["processes"]
        ] == [
            True,
            True,
        ]
        # Pretty-printed, the same answer.
        status, pretty = await api("/status/tasks?task=web-2&fields=state&indent=2")
        assert (status, pretty) == (200, {"web-2": {"state": "running"}})

        status, summary = await api("/status/summary")
        assert status == 200
        assert summary == {
            "total": 4,
            "wanted": 3,
            "unwanted": 1,
            "states": {s: {"running": 2, "off": 1, "failed": 1}.get(s, 0) for s in TASK_STATES},
        }
        status, summary = await api("/status/summary?task=web-*")
        assert (summary["total"], summary["wanted"], summary["states"]["running"]) == (2, 2, 2)

        # Bad names: a 400 naming them, never a 500.
        for target, named in [
            ("/status/tasks?state=sleeping", "'sleeping'"),
            ("/status/tasks?state=running,bogus", "'bogus'"),
            ("/status/tasks?fields=state,colour", "'colour'"),
            ("/status/tasks?state=", "?state="),
            ("/status/summary?fields=state", "?fields="),
            ("/status/summary?state=" + quote("<b>"), "'<b>'"),
        ]:
            status, error = await api(target)
            assert status == 400 and named in error["error"], (target, error)

    assert serve(tmp_path, marker, scenario) is Outcome.STOPPED


def test_the_kept_table_follows_every_change(
    tmp_path: Path, marker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(
        legion: Legion, controller: Controller, api: Callable[[str], Awaitable[tuple[int, Any]]]
    ) -> None:
        tasks = await until(controller, settled, "web to run and flaky to fail")
        # With usage: the same keys in the same order as the objects have.
        with_usage = json.loads(b"".join(await controller.table_with_usage()))
        assert list(with_usage) == list(tasks)
        for name, task in (await controller.tasks_with_usage()).items():
            assert list(with_usage[name]) == list(TASK_FIELDS)
            assert [list(p) for p in with_usage[name]["processes"]] == [
                list(p) for p in task["processes"]
            ]
        # One reading serves them all (figures kept a while: here for the whole test): the
        # table's text, the objects, and the /metrics lines kept with the entries.
        monkeypatch.setattr(readings, "USAGE_MAX_AGE", 3600.0)
        await usage_agrees(controller)

        before = pids(tasks, "web-2")
        controller.restart("web-2")
        await until(
            controller,
            lambda t: t["web-2"]["running"] == 2 and not set(pids(t, "web-2")) & set(before),
            "web-2 to restart",
        )
        controller.stop("web-1")
        await until(controller, lambda t: t["web-1"]["state"] == "off", "web-1 to stop")
        controller.set_overrides("count", {"web-2": 1})
        await until(controller, lambda t: t["web-2"]["running"] == 1, "web-2 to shrink")

        # A reload with one entry refused (kept as it was) and one new task that cannot be
        # used: both are shown with why (an output path naming what is not defined is
        # refused per task, not as a whole).
        assert legion.config_file is not None
        undefined = {"stdout": "{NOT_DEFINED}.log"}
        broken = {
            **TASKS,
            "web-1": {"commands": {"start": SLEEP}, "output": undefined},
            "new": {"commands": {"start": SLEEP}, "output": undefined},
            "db": {"commands": {"start": SLEEP}},
        }
        Path(legion.config_file).write_text(json.dumps({"tasks": broken, "settings": SETTINGS}))
        controller.reload()
        tasks = await until(
            controller,
            lambda t: "new" in t and t["db"]["running"] == 1,
            "the reload to apply what it can",
        )
        assert tasks["new"]["state"] == "invalid" and tasks["web-1"]["error"]
        await usage_agrees(controller)  # new processes read, the gone ones' readings unused
        status, data = await api("/status/tasks?state=invalid&fields=state")
        assert (status, data) == (200, {"new": {"state": "invalid"}})

    assert serve(tmp_path, marker, scenario) is Outcome.STOPPED


def test_the_kept_entries_are_dropped_once_no_view_uses_them(
    tmp_path: Path, marker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A view keeps the table's entries for the next ones; none for ENTRIES_KEPT seconds,
    they are dropped (their memory handed back), and the next view makes them anew."""
    monkeypatch.setattr(views, "ENTRIES_KEPT", 0.2)
    given_back: list[None] = []
    monkeypatch.setattr(memory, "give_back", lambda: given_back.append(None))

    async def scenario(
        legion: Legion, controller: Controller, api: Callable[[str], Awaitable[tuple[int, Any]]]
    ) -> None:
        tasks = await until(controller, settled, "web to run and flaky to fail")
        status, data = await api("/status/tasks")
        assert (status, list(data)) == (200, list(tasks))
        assert controller._entries  # kept for the views that follow
        loop = asyncio.get_running_loop()
        end = loop.time() + DEADLINE
        while controller._entries:
            assert loop.time() < end, "the entries were kept with no view using them"
            await asyncio.sleep(0.05)  # polling interval of a deadline-bounded wait
        assert given_back
        status, data = await api("/status/tasks?fields=state,running")
        assert (status, list(data)) == (200, list(tasks))
        assert controller._entries  # made anew
        assert controller.table() == json.dumps(controller.tasks(), separators=(",", ":")).encode()

    assert serve(tmp_path, marker, scenario) is Outcome.STOPPED


MANY = 200


@pytest.mark.parametrize("reader", ["C", "Python"])
def test_the_loop_goes_on_while_the_usage_is_read(
    tmp_path: Path, marker: str, monkeypatch: pytest.MonkeyPatch, reader: str
) -> None:
    """A status request's usage reading is held (in the reader) until a task killed
    meanwhile has been restarted: the event loop supervises on while the reading runs.
    (Read on the loop, the reading would hold the restart back until it timed out.) The
    same without the C extension, whose reader runs in the worker thread too."""
    if reader == "Python":
        monkeypatch.setattr(usage, "_syscalls", None)
    many = {f"t-{i:03d}": {"commands": {"start": SLEEP}} for i in range(MANY)}
    started = threading.Event()
    release = threading.Event()
    held: list[bool] = []  # True: let go by the test; False: timed out

    def slow(targets: Any, proc: str = "/proc") -> Any:
        if not started.is_set():  # the first reading only
            started.set()
            held.append(release.wait(DEADLINE))
        return read_usages(targets, proc)

    monkeypatch.setattr(views, "read_usages", slow)

    async def scenario(
        legion: Legion, controller: Controller, api: Callable[[str], Awaitable[tuple[int, Any]]]
    ) -> None:
        await until(
            controller,
            lambda t: len(t) == MANY and all(v["running"] == 1 for v in t.values()),
            f"{MANY} tasks to run",
            timeout=3 * DEADLINE,
        )
        victim = pids(controller.tasks(), "t-042")[0]
        asked = asyncio.ensure_future(api("/status/tasks"))
        try:
            assert await asyncio.to_thread(started.wait, DEADLINE), "no reading began"
            os.kill(victim, signal.SIGKILL)
            await until(
                controller,
                lambda t: pids(t, "t-042") not in ([], [victim]),
                "t-042 to be restarted while the reading is held",
            )
            assert not asked.done()
        finally:
            release.set()
        status, table = await asked
        assert status == 200 and held == [True]
        # The table is as it was asked for: the killed process, gone by the time it was
        # read, shows without figures; the others with theirs.
        [process] = table["t-042"]["processes"]
        assert process["pid"] == victim
        assert (process["cpu_seconds"], process["rss_bytes"]) == (None, None)
        assert all(t["processes"][0]["rss_bytes"] for name, t in table.items() if name != "t-042")

    assert serve(tmp_path, marker, scenario, many) is Outcome.STOPPED
