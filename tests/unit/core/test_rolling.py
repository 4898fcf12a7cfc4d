"""Rolling restarts as tables: facts in, actions out, on a fake clock (no processes)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from support.planning import Harness
from taskforce.core import snapshot
from taskforce.core.actions import Action, Probe, Start, Stop
from taskforce.core.spec import DesiredState, InstanceSpec, LaunchSpec, Policy, ReadySpec, TaskSpec
from taskforce.core.state import Phase
from taskforce.core.vocabulary import Control, RestartPolicy


def web(
    count: int = 3,
    *,
    argv: tuple[str, ...] = ("server",),
    rolling: int | None = None,
    overlap: bool = False,
    ready: bool = False,
    control: Control = Control.WAIT,
) -> TaskSpec:
    instances = tuple(
        InstanceSpec(LaunchSpec(argv[0], argv, (("Task_instance", str(i)),))) for i in range(count)
    )
    probe = ReadySpec("tcp", "127.0.0.1:1", interval=0.1, timeout=5.0) if ready else None
    return TaskSpec("web", control, instances, ready=probe, rolling=rolling, overlap=overlap)


POLICY = Policy(RestartPolicy(min_uptime=1.0, initial_delay=0.5, max_delay=4.0), stop_timeout=2.0)


class Clock(Harness):
    """Plays the runtime on a fake clock: starts get pids at once; the rest is told."""

    def __init__(self, spec: TaskSpec) -> None:
        super().__init__(DesiredState({"web": spec}, POLICY))

    def settle(self) -> list[Action]:
        """Passes until one has nothing to do (as the runtime's loop runs them)."""
        actions: list[Action] = []
        while step := self.step():
            actions += step
        return actions

    def pids(self) -> dict[int, int | None]:
        return {s: i.pid for s, i in sorted(self.planner.tasks["web"].instances.items())}

    def exits(self, pid: int, status: int = 0) -> None:
        self.planner.exited(pid, status, self.now, self.now)

    def ready(self, pid: int) -> None:
        owner = self.planner.owner(pid)
        assert owner is not None
        self.planner.probe_result("web", owner[1], pid, True, self.now)

    def restart(self) -> list[str]:
        """A restart asked for by an event, and what the planner does about it."""
        self.planner.request_stop("web", "restart")
        return brief(self.settle())

    def reload(self, spec: TaskSpec) -> None:
        self.planner.set_desired(DesiredState({"web": spec}, POLICY))

    @property
    def rolling(self) -> tuple[int, int] | None:
        progress = self.planner.tasks["web"].rolling
        return None if progress is None else (progress.done, progress.total)


def running(spec: TaskSpec) -> Clock:
    """Every process of `spec` started (and ready, if it has a probe)."""
    c = Clock(spec)
    c.settle()
    if spec.ready is not None:
        for pid in c.pids().values():
            assert pid is not None
            c.ready(pid)
    return c


def brief(actions: list[Action]) -> list[str]:
    """Actions in words: start 3 (for 0), stop 101."""
    words = []
    for action in actions:
        if isinstance(action, Start):
            words.append(f"start {action.slot}")
        elif isinstance(action, Stop):
            words.append(f"stop {action.pid}")
        elif not isinstance(action, Probe):
            words.append(type(action).__name__.lower())
    return words


@pytest.mark.parametrize(
    ("spec", "rolls"),
    [
        (web(1), False),  # one process that cannot run twice: stop, then start
        (web(2), True),  # several: one at a time by default
        (web(2, rolling=0), False),  # turned off
        (web(1, overlap=True), True),  # it may run twice at once
        (web(1, rolling=1), False),  # rolling alone does not make one process run twice
        (web(3, control=Control.ONCE), False),  # run to completion: nothing to replace
        (web(3, control=Control.NOWAIT), False),  # a daemon found through its pidfile
    ],
)
def test_which_tasks_roll(spec: TaskSpec, rolls: bool) -> None:
    assert spec.rolls is rolls


def test_a_restart_replaces_instances_one_at_a_time_new_before_old() -> None:
    c = running(web(3))
    assert c.pids() == {0: 101, 1: 102, 2: 103}
    assert c.planner.request_stop("web", "restart requested") == 3
    # Rows: what the runtime reports, then what the planner does about it.
    table: list[tuple[str, list[str], dict[int, int | None]]] = [
        ("", ["start 3", "stop 101"], {0: 101, 1: 102, 2: 103, 3: 104}),
        ("exit 101", ["start 3", "stop 102"], {0: 104, 1: 102, 2: 103, 3: 105}),
        ("exit 102", ["start 3", "stop 103"], {0: 104, 1: 105, 2: 103, 3: 106}),
        ("exit 103", [], {0: 104, 1: 105, 2: 106}),
    ]
    for fact, expected, pids in table:
        if fact:
            c.exits(int(fact.split()[1]))
        assert brief(c.settle()) == expected, fact
        assert c.pids() == pids, fact
    assert c.rolling is None
    assert c.planner.request_stop("web", "again") == 3


def test_progress_counts_replaced_instances() -> None:
    c = running(web(2))
    c.restart()
    assert c.rolling == (0, 2)
    c.exits(101)
    c.settle()
    assert c.rolling == (1, 2)
    c.exits(102)
    c.settle()
    assert c.rolling is None


def test_n_at_a_time() -> None:
    c = running(web(4, rolling=2))
    assert c.restart() == ["start 4", "start 5", "stop 101", "stop 102"]
    c.exits(101)
    assert brief(c.settle()) == ["start 4", "stop 103"]  # the lowest surge slot free


def test_the_old_process_stops_only_once_the_new_one_is_ready() -> None:
    c = running(web(2, ready=True))
    assert c.restart() == ["start 2"]
    assert brief(c.step(1.0)) == []  # probed (not shown), not ready yet: nothing stops
    c.ready(103)
    assert brief(c.settle()) == ["stop 101"]
    c.exits(101)
    assert brief(c.settle()) == ["start 2"]
    assert c.pids() == {0: 103, 1: 102, 2: 104}


def test_a_replacement_not_ready_in_time_leaves_the_old_one_and_retries_after_a_backoff() -> None:
    c = running(web(2, ready=True))
    assert c.restart() == ["start 2"]
    # The probe's timeout (5 s) passes: the new process is stopped, the old one stays.
    assert brief(c.step(5.0)) == ["stop 103"]
    c.exits(103)
    assert brief(c.settle()) == []
    assert c.pids() == {0: 101, 1: 102}
    assert c.deadline == 5.5  # the restart policy's first backoff
    assert brief(c.step(5.5)) == ["start 2"]


def test_a_replacement_that_cannot_start_leaves_the_old_one() -> None:
    c = running(web(2))
    c.planner.request_stop("web", "restart")
    plan = c.planner.plan(c.now)
    start = next(a for a in plan.actions if isinstance(a, Start))
    c.planner.start_failed("web", start.slot, c.now, c.now, "no such program")
    assert brief(c.settle()) == []
    assert c.pids() == {0: 101, 1: 102}
    assert c.planner.tasks["web"].instances[0].replace_request == "restart"


def test_a_reload_that_changes_the_command_rolls() -> None:
    c = running(web(2))
    c.reload(web(2, argv=("server", "--v2")))
    assert brief(c.settle()) == ["start 2", "stop 101"]
    c.exits(101)
    assert brief(c.settle()) == ["start 2", "stop 102"]
    c.exits(102)
    assert brief(c.settle()) == []
    instances = c.planner.tasks["web"].instances
    assert [i.spec.launch.argv for i in instances.values() if i.spec] == [("server", "--v2")] * 2


def test_a_reload_back_before_the_surge_is_ready_stops_the_surge() -> None:
    c = running(web(2, ready=True))
    c.reload(web(2, argv=("server", "--v2"), ready=True))
    assert brief(c.settle()) == ["start 2"]
    c.reload(web(2, ready=True))
    # The surge now runs an outdated command: stopped; nothing else is replaced.
    assert brief(c.settle()) == ["stop 103"]
    c.exits(103)
    assert brief(c.settle()) == []
    assert c.rolling is None


def test_an_old_process_that_dies_meanwhile_is_replaced_by_its_surge() -> None:
    c = running(web(2, ready=True))
    c.restart()
    c.exits(101, status=1)  # crashed before the surge (103) was ready
    # No new process for slot 0: the surge takes it; the roll goes on with slot 1.
    assert brief(c.settle()) == ["start 2"]
    assert c.pids() == {0: 103, 1: 102, 2: 104}


def test_one_instance_with_overlap_starts_the_new_one_first() -> None:
    c = running(web(1, overlap=True))
    assert c.restart() == ["start 1", "stop 101"]
    c.exits(101)
    c.settle()
    assert c.pids() == {0: 102}


def test_one_instance_without_overlap_stops_first() -> None:
    c = running(web(1))
    assert c.restart() == ["stop 101"]
    c.exits(101)
    assert brief(c.settle()) == ["start 0"]


def test_scaling_down_during_a_roll_stops_the_surge_of_a_removed_slot() -> None:
    c = running(web(2, ready=True))
    c.restart()  # surge 2 (103) for slot 0, not ready
    c.reload(web(1, ready=True, overlap=True))
    assert sorted(brief(c.settle())) == ["stop 102"]  # slot 1 goes; slot 0's surge stays
    c.ready(103)
    assert brief(c.settle()) == ["stop 101"]


def test_turning_rolling_off_calls_off_the_surges() -> None:
    c = running(web(2, ready=True))
    c.restart()
    c.reload(dataclasses.replace(web(2, ready=True), rolling=0))
    assert brief(c.settle()) == ["stop 103"]
    c.exits(103)
    c.settle()
    assert c.rolling is None
    assert c.planner.tasks["web"].instances[0].phase is Phase.RUNNING


def test_shutdown_stops_surges_too() -> None:
    c = running(web(2))
    c.planner.request_stop("web", "restart")
    c.step()  # the surge started, the old one not yet stopped
    c.planner.shutdown()
    assert sorted(brief(c.settle())) == ["stop 101", "stop 102", "stop 103"]


def test_scaling_down_to_one_that_cannot_run_twice_calls_off_the_surge() -> None:
    c = running(web(2, ready=True))
    c.restart()
    c.reload(web(1, ready=True))
    assert sorted(brief(c.settle())) == ["stop 102", "stop 103"]


def test_a_task_that_does_not_roll_still_restarts_on_a_changed_command() -> None:
    c = running(web(1))
    c.reload(web(1, argv=("server", "--v2")))
    assert brief(c.settle()) == ["stop 101"]


def test_a_roll_under_way_goes_on_after_an_upgrade() -> None:
    c = running(web(2, ready=True))
    c.restart()  # a surge (103) beside 101, not ready yet
    data = json.loads(json.dumps(snapshot.take(c.planner)))  # as written to the file
    again = Clock(web(2, ready=True))
    assert sorted(snapshot.restore(again.planner, data)) == [101, 102, 103]
    again.now, again.next_pid = c.now, c.next_pid
    # What ran before the hand-over counts as ready: the old process goes, the roll goes on.
    assert brief(again.settle()) == ["stop 101"]
    again.exits(101)
    assert brief(again.settle()) == ["start 2"]
    again.ready(104)
    assert brief(again.settle()) == ["stop 102"]
    again.exits(102)
    again.settle()
    assert again.pids() == {0: 103, 1: 104} and again.rolling is None
