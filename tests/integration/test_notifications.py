"""Notifications from a real legion: a task that fails twice then runs steadily reports
exited, flapping and recovered to a webhook and (filtered) to a command, which gets the
event in its environment; a broken reload reports reload_failed; a webhook that never
answers holds up neither the restarts nor the event loop."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from support.environ import inherited
from support.wait import DEADLINE, until
from taskforce.app.serve import serve_with_api
from taskforce.runtime.legion import Legion
from taskforce.runtime.loop.supervisor import Outcome
from webhook_server import WebhookServer

SETTINGS: dict[str, Any] = {
    "http": [],
    "stop_timeout": 1,
    "restart": {"min_uptime": 0.3, "initial_delay": 0.1, "factor": 2, "max_delay": 0.5},
}
# Fails on its first two runs (counted in the file argv[1] names), then runs on.
# Its own min_uptime parts the failing runs from the steady one: each of those ends once its
# interpreter has started, which takes a good part of a second on a loaded machine, and an
# end after min_uptime is no failure (no flapping then).
PHOENIX_UPTIME = 5.0
PHOENIX_CODE = (
    "import os, sys, time\n"
    "runs = os.path.getsize(sys.argv[1]) if os.path.exists(sys.argv[1]) else 0\n"
    "open(sys.argv[1], 'a').write('x')\n"
    "if runs < 2: sys.exit(1)\n"
    "time.sleep(1000)\n"
)
PHOENIX = [sys.executable, "-c", PHOENIX_CODE]
# Writes its environment to a file named after the event and the pid it reports.
RECORDER = (
    "import json, os, sys\n"
    "name = os.environ['TASKFORCE_EVENT'] + '-' + os.environ.get('TASKFORCE_PID', '')\n"
    "with open(os.path.join(sys.argv[1], name + '.json'), 'w') as f:\n"
    "    json.dump(dict(os.environ), f)\n"
)
CRASH = [sys.executable, "-c", "import sys; sys.exit(1)"]
SLEEP = ["sleep", "1000"]


def write_config(path: Path, tasks: dict[str, Any], notify: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"tasks": tasks, "settings": {**SETTINGS, "notify": notify}}))
    return path


def serve(config: Path, marker: str, scenario: Callable[[Legion], Awaitable[None]]) -> Outcome:
    """Run the legion as the command does (serve_with_api) around `scenario`."""

    async def main() -> Outcome:
        legion = Legion(str(config), environ=inherited(TF_TEST_MARKER=marker))
        serving = asyncio.create_task(serve_with_api(legion))
        try:
            async with asyncio.timeout(DEADLINE * 2):
                await scenario(legion)
        finally:
            legion.stop()
            async with asyncio.timeout(DEADLINE):
                outcome = await serving
        return outcome

    return asyncio.run(main())


def test_webhook_and_command_hear_a_task_fail_and_recover(tmp_path: Path, marker: str) -> None:
    records = tmp_path / "records"
    records.mkdir()
    with WebhookServer() as server:
        config = write_config(
            tmp_path / "tf.conf",
            {
                "phoenix": {
                    "commands": {"start": [*PHOENIX, str(tmp_path / "runs")]},
                    "restart": {"min_uptime": PHOENIX_UPTIME},
                },
                "sleeper": {"commands": {"start": SLEEP}},
            },
            [
                {"url": server.url, "headers": {"X-Token": "t0k"}},
                {
                    "command": [sys.executable, "-c", RECORDER, str(records)],
                    "events": ["flapping", "recovered"],
                },
            ],
        )

        async def scenario(legion: Legion) -> None:
            await asyncio.to_thread(
                server.wait,
                lambda got: len(got) >= 3,
                "exited, flapping and recovered",
                DEADLINE + PHOENIX_UPTIME,
            )
            await until(lambda: len(list(records.iterdir())) >= 2, "the command's two records")
            config.write_text("tasks: {broken")  # not YAML: the reload fails
            await asyncio.to_thread(server.wait, lambda got: len(got) >= 4, "reload_failed")

        assert serve(config, marker, scenario) is Outcome.STOPPED
        received = list(server.received)

    events = [r.body["event"] for r in received]
    assert events == ["exited", "flapping", "recovered", "reload_failed"]
    exited, flapping, recovered, reload_failed = (r.body for r in received)
    assert exited["task"] == "phoenix" and exited["instance"] == 0 and exited["failures"] == 1
    assert flapping["failures"] == 2 and flapping["retry_in"] > 0
    assert flapping["message"].startswith("phoenix[0] flapping: pid ")
    assert recovered["task"] == "phoenix" and recovered["detail"] == "running steadily again"
    assert reload_failed["task"] is None and "tf.conf" in reload_failed["detail"]
    assert all(r.headers["x-token"] == "t0k" for r in received)

    # The command heard only what it asked for, each with its environment.
    files = sorted(p.name for p in records.iterdir())
    assert [name.split("-")[0] for name in files] == ["flapping", "recovered"]
    env = json.loads((records / files[0]).read_text())
    assert env["TASKFORCE_EVENT"] == "flapping" and env["TASKFORCE_TASK"] == "phoenix"
    assert env["TASKFORCE_INSTANCE"] == "0" and env["TASKFORCE_FAILURES"] == "2"
    assert env["TASKFORCE_PID"] == str(flapping["pid"])
    assert env["TASKFORCE_MESSAGE"] == flapping["message"]
    assert json.loads(env["TASKFORCE_JSON"])["event"] == "flapping"
    assert "PATH" in env  # taskforce's own environment, plus the event


def test_a_webhook_that_never_answers_holds_up_nothing(tmp_path: Path, marker: str) -> None:
    with WebhookServer(hang=True) as server:
        config = write_config(
            tmp_path / "tf.conf",
            {"crasher": {"commands": {"start": CRASH}}, "sleeper": {"commands": {"start": SLEEP}}},
            # Longer than the test: the first delivery is still waiting at the end.
            [{"url": server.url, "timeout": 10 * DEADLINE, "attempts": 1}],
        )

        async def scenario(legion: Legion) -> None:
            await asyncio.to_thread(server.wait, lambda got: len(got) >= 1, "the first event")
            # The webhook sits on its first event; meanwhile the crashing task keeps being
            # restarted: the loop turns while the delivery waits.
            supervisor = legion.supervisor
            assert supervisor is not None
            crasher = supervisor.planner.tasks["crasher"].instances[0]
            starts = crasher.starts

            def restarted_unanswered() -> bool:
                assert server.received[1:] == [], "the webhook answered"
                return crasher.starts >= starts + 3

            await until(restarted_unanswered, "three restarts while the webhook waits")
            assert len(server.received) == 1  # still the first event, unanswered

        assert serve(config, marker, scenario) is Outcome.STOPPED
