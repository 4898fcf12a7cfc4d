"""The supervisor's loop with a fake clock, scheduler and process runner: what it starts,
when it wakes up, what it signals, when it ends. No processes, no waiting."""

from __future__ import annotations

import dataclasses
import itertools
import os
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import pytest

from support.fake_loop import FakeClock, FakeRunner, FakeScheduler
from taskforce.core.planner import ExitOutcome
from taskforce.core.sockets import UNIX, SocketSpec
from taskforce.core.spec import (
    CgroupLimits,
    DesiredState,
    InstanceSpec,
    LaunchSpec,
    Policy,
    TaskSpec,
)
from taskforce.core.vocabulary import Control, RestartPolicy
from taskforce.runtime.limits.cgroups import Cgroups, Hierarchy
from taskforce.runtime.limits.confinement import Confinement
from taskforce.runtime.loop import supervisor as supervisor_module
from taskforce.runtime.loop.supervisor import Outcome, Supervisor
from taskforce.runtime.own import memory
from taskforce.runtime.processes import records as records_module
from taskforce.runtime.processes.records import ProcessRecord, Records
from taskforce.runtime.processes.runner import StartRequest
from taskforce.runtime.processes.spawn import Spawned

EXIT_1 = 1 << 8  # the wait status of exit(1)
SWEEP_DELAY = 0.05


def task(name: str, count: int = 1, program: str = "prog") -> TaskSpec:
    instances = tuple(
        InstanceSpec(LaunchSpec(program, (program, str(i)), (("Task_instance", str(i)),)))
        for i in range(count)
    )
    return TaskSpec(name, Control.WAIT, instances)


def desired(*tasks: TaskSpec) -> DesiredState:
    restart = RestartPolicy(min_uptime=1.0, initial_delay=0.5, max_delay=4.0)
    return DesiredState({t.name: t for t in tasks}, Policy(restart, stop_timeout=5.0))


@dataclass
class Loop:
    supervisor: Supervisor
    clock: FakeClock
    scheduler: FakeScheduler
    runner: FakeRunner

    def settle(self) -> None:
        self.scheduler.run_soon()

    def children_exited(self) -> None:
        """What SIGCHLD does, and the scan for what they left behind that follows it."""
        self.supervisor.reaper.reap()
        self.scheduler.advance(self.clock.now + SWEEP_DELAY)


class MakeLoop(Protocol):
    def __call__(
        self, state: DesiredState, runner: FakeRunner | None = None, clock: FakeClock | None = None
    ) -> Loop: ...


@pytest.fixture
def make_loop() -> Iterator[MakeLoop]:
    made: list[Supervisor] = []

    def make(
        state: DesiredState, runner: FakeRunner | None = None, clock: FakeClock | None = None
    ) -> Loop:
        clock = clock or FakeClock()
        scheduler = FakeScheduler(clock)
        runner = runner or FakeRunner()
        supervisor = Supervisor(state, clock=clock, scheduler=scheduler, runner=runner)
        supervisor.begin(scheduler)
        made.append(supervisor)
        loop = Loop(supervisor, clock, scheduler, runner)
        loop.settle()
        return loop

    yield make
    for supervisor in made:
        supervisor.end()
        supervisor.sockets.close()  # run() closes them or hands them over


def test_every_instance_starts_once_and_then_nothing_runs(make_loop: MakeLoop) -> None:
    loop = make_loop(desired(task("web", count=3), task("db")))
    started = sorted(launch.argv for _, launch in loop.runner.started)
    assert started == [("prog", "0"), ("prog", "0"), ("prog", "1"), ("prog", "2")]
    assert not loop.scheduler.soon  # idle: no pass queued, only deadlines
    loop.scheduler.advance(loop.clock.now + 3600)
    assert len(loop.runner.started) == 4


def test_a_burst_spawning_slice_by_slice_gives_each_instance_its_own_process(
    make_loop: MakeLoop,
) -> None:
    # Three slices, each spawned while the next is prepared: every outcome goes to the
    # instance it was started for, the refused one's too.
    runner = FakeRunner(refused={"missing"})
    loop = make_loop(desired(task("web", count=300), task("bad", program="missing")), runner)
    assert len(runner.started) == 300
    for slot, inst in loop.supervisor.planner.tasks["web"].instances.items():
        assert inst.pid is not None
        assert runner.running[inst.pid].argv == ("prog", str(slot))
    [bad] = loop.supervisor.planner.tasks["bad"].instances.values()
    assert bad.pid is None and bad.failures == 1


def test_the_heap_is_handed_back_once_a_large_burst_is_over(
    make_loop: MakeLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    given_back: list[float] = []
    clock = FakeClock()
    monkeypatch.setattr(memory, "give_back", lambda: given_back.append(clock.now))
    loop = make_loop(desired(task("web", count=300)), clock=clock)
    assert len(loop.runner.started) == 300
    assert given_back == []  # not during the burst: the records are written after it
    loop.scheduler.advance(clock.now + 3600)
    assert given_back == [100.0 + supervisor_module._GIVE_BACK_DELAY]
    small = make_loop(desired(task("db", count=3)), clock=FakeClock())
    small.scheduler.advance(small.clock.now + 3600)
    assert given_back == [
        100.0 + supervisor_module._GIVE_BACK_DELAY
    ]  # a few starts: nothing to hand back


def test_a_quick_exit_is_restarted_after_the_backoff_deadline(make_loop: MakeLoop) -> None:
    loop = make_loop(desired(task("web")))
    [(pid, _)] = loop.runner.started
    loop.clock.now += 0.2  # under min_uptime: a failure
    exited_at = loop.clock.now
    loop.runner.exit(pid, EXIT_1)
    loop.children_exited()
    assert len(loop.runner.started) == 1  # not at once
    deadline = loop.scheduler.next_deadline()
    assert deadline is not None
    assert deadline == pytest.approx(exited_at + 0.5)
    loop.scheduler.advance(deadline - 0.01)
    assert len(loop.runner.started) == 1
    loop.scheduler.advance(deadline)
    assert len(loop.runner.started) == 2
    assert loop.runner.started[1][0] != pid


def test_a_start_that_fails_is_told_as_an_exit_and_tried_again(make_loop: MakeLoop) -> None:
    runner = FakeRunner(refused={"missing"})
    loop = make_loop(desired(task("web", program="missing")), runner)
    assert not runner.started
    [instance] = loop.supervisor.planner.tasks["web"].instances.values()
    assert instance.last_exit is not None
    assert instance.last_exit.error == "missing: no such file"
    runner.refused.clear()
    deadline = loop.scheduler.next_deadline()
    assert deadline is not None
    loop.scheduler.advance(deadline)
    assert [launch.program for _, launch in runner.started] == ["missing"]


def test_stop_signals_each_process_and_ends_once_all_have_exited(make_loop: MakeLoop) -> None:
    runner = FakeRunner()
    loop = make_loop(desired(task("web", count=2)), runner)
    first, second = runner.pids()
    runner.ignores_term.add(second)
    loop.supervisor.stop()
    loop.settle()
    assert runner.signals == [(first, signal.SIGTERM), (second, signal.SIGTERM)]
    loop.children_exited()
    assert loop.supervisor.finished is None  # the second one is still running
    loop.scheduler.advance(loop.clock.now + 5.0)  # the stop timeout
    assert runner.signals[-1] == (second, signal.SIGKILL)
    loop.children_exited()
    assert loop.supervisor.finished is Outcome.STOPPED
    assert not runner.running


def test_a_stop_signals_every_process_group_before_any_cgroup(
    make_loop: MakeLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Reading a cgroup's members takes a while: no instance's SIGTERM waits for it.
    loop = make_loop(desired(task("web", count=3)))
    pids = loop.runner.pids()
    order: list[tuple[str, object]] = []

    def signal_group(pid: int, signum: int, *, or_process: bool = False) -> bool:
        order.append(("group", pid))
        return loop.runner.signal_process(pid, signum)

    def cgroup(task: str, slot: int, signum: int, pid: int) -> None:
        order.append(("cgroup", slot))

    monkeypatch.setattr(loop.runner, "signal_group", signal_group)
    monkeypatch.setattr(loop.supervisor.confinement, "stop", cgroup)
    loop.supervisor.stop()
    loop.settle()
    assert order == [("group", pid) for pid in pids] + [("cgroup", slot) for slot in range(3)]


def test_a_reset_ends_with_its_own_outcome_unless_a_stop_follows(make_loop: MakeLoop) -> None:
    loop = make_loop(desired(task("web")))
    loop.supervisor.stop(Outcome.RESET)
    loop.supervisor.stop(Outcome.STOPPED)  # a stop during a reset is a plain stop
    loop.settle()
    loop.children_exited()
    assert loop.supervisor.finished is Outcome.STOPPED


def test_exits_are_told_to_listeners_with_the_status(make_loop: MakeLoop) -> None:
    loop = make_loop(desired(task("web")))
    exits: list[ExitOutcome] = []
    events: list[dict[str, object]] = []
    loop.supervisor.on_exit = exits.append
    loop.supervisor.on_event = events.append
    [pid] = loop.runner.pids()
    loop.clock.now += 30.0
    exited_at = loop.clock.wall()
    loop.runner.exit(pid, EXIT_1)
    loop.children_exited()
    [outcome] = exits
    assert (outcome.task, outcome.record.status, outcome.record.error) == ("web", EXIT_1, None)
    assert [e["event"] for e in events] == ["exited"]
    assert events[0]["time"] == exited_at


def test_an_exit_is_told_once_its_replacement_is_spawned(
    make_loop: MakeLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its log line and its event's listeners are no part of the restart's latency.
    loop = make_loop(desired(task("web")))
    happened: list[str] = []
    loop.supervisor.on_event = lambda event: happened.append(str(event["event"]))
    begin = loop.runner.begin

    def begin_and_note(
        requests: Sequence[StartRequest],
    ) -> Callable[[], list[Spawned | Exception]]:
        happened.append("spawn")
        return begin(requests)

    monkeypatch.setattr(loop.runner, "begin", begin_and_note)
    [pid] = loop.runner.pids()
    loop.clock.now += 30.0
    loop.runner.exit(pid, signal.SIGKILL)
    loop.children_exited()
    assert happened == ["spawn", "exited"]
    assert len(loop.runner.pids()) == 1


def test_sigchld_spawns_the_replacement_without_a_turn_of_the_loop(make_loop: MakeLoop) -> None:
    loop = make_loop(desired(task("web")))
    [pid] = loop.runner.pids()
    loop.clock.now += 30.0
    loop.runner.exit(pid, signal.SIGKILL)
    loop.supervisor.on_child()
    assert len(loop.runner.started) == 2
    loop.scheduler.run_soon()
    assert len(loop.runner.started) == 2


def test_an_exit_is_told_before_the_next_pass_when_on_exit_listens(make_loop: MakeLoop) -> None:
    # --exit-with stops every task on its task's exit: before that pass could restart it.
    loop = make_loop(desired(task("web")))
    loop.supervisor.on_exit = lambda outcome: loop.supervisor.stop()
    [pid] = loop.runner.pids()
    loop.clock.now += 30.0
    loop.runner.exit(pid, signal.SIGKILL)
    loop.children_exited()
    assert loop.runner.pids() == []
    assert len(loop.runner.started) == 1


def test_only_an_exit_outside_a_cgroup_is_followed_by_a_scan_of_proc(
    make_loop: MakeLoop, tmp_path: Path
) -> None:
    loop = make_loop(desired(task("web")))
    [first] = loop.runner.pids()  # started before there were cgroups: outside one
    loop.supervisor.confinement.cgroups = Cgroups([Hierarchy(2, frozenset(), str(tmp_path))])
    loop.clock.now += 30.0
    loop.runner.exit(first, EXIT_1)
    loop.supervisor.reaper.reap()
    assert loop.supervisor.reaper.busy()  # the /proc scan for what it left is due
    loop.scheduler.advance(loop.clock.now + SWEEP_DELAY)
    [second] = loop.runner.pids()  # started in its cgroup
    assert (tmp_path / "web@0").is_dir()
    loop.clock.now += 30.0
    loop.runner.exit(second, EXIT_1)
    loop.supervisor.reaper.reap()
    assert not loop.supervisor.reaper.busy()  # killing its cgroup leaves nothing to look for


def test_the_exit_of_a_process_in_its_cgroup_kills_no_process_group(
    make_loop: MakeLoop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its cgroup is killed instead: the process group is in it (one system call an exit).
    loop = make_loop(desired(task("web")))
    [outside] = loop.runner.pids()
    loop.supervisor.confinement.cgroups = Cgroups([Hierarchy(2, frozenset(), str(tmp_path))])
    groups: list[int] = []

    def signal_group(pid: int, signum: int, *, or_process: bool = False) -> bool:
        groups.append(pid)
        return False

    monkeypatch.setattr(loop.runner, "signal_group", signal_group)
    loop.clock.now += 30.0
    loop.runner.exit(outside, EXIT_1)
    loop.children_exited()
    assert groups == [outside]  # started outside a cgroup: its group is killed
    [inside] = loop.runner.pids()
    loop.clock.now += 30.0
    loop.runner.exit(inside, EXIT_1)
    loop.children_exited()
    assert groups == [outside]


def test_only_a_sigkill_has_the_memory_cgroup_read_for_its_cause(tmp_path: Path) -> None:
    confinement = Confinement()
    confinement.cgroups = Cgroups([Hierarchy(2, frozenset({"memory"}), str(tmp_path))])
    confinement.cgroups.prepare("web", 0, CgroupLimits(memory=1 << 20))
    (tmp_path / "web@0" / "memory.events").write_text("oom 1\noom_kill 1\n")
    assert confinement.exit_cause(("web", 0), signal.SIGTERM) is None
    cause = confinement.exit_cause(("web", 0), signal.SIGKILL)
    assert cause is not None and cause.startswith("out of memory")


@dataclass
class Recording:
    """A supervisor of five `web` instances keeping records, and the times of its writes."""

    supervisor: Supervisor
    clock: FakeClock
    scheduler: FakeScheduler
    runner: FakeRunner
    records: Records
    writes: list[float]

    def recorded(self) -> set[int]:
        earlier = Records(self.records.path).load()
        assert earlier is not None
        return {r.pid for r in earlier.processes}


@pytest.fixture
def recording(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Recording]:
    monkeypatch.setattr(records_module, "start_ticks", lambda pid: 1000 + pid)  # fake pids
    clock = FakeClock()
    writes: list[float] = []
    write = Records._write

    def counted(self: Records, snapshot: frozenset[ProcessRecord], *rest: Any) -> None:
        writes.append(clock.now)
        write(self, snapshot, *rest)

    monkeypatch.setattr(Records, "_write", counted)
    scheduler = FakeScheduler(clock)
    runner = FakeRunner()
    records = Records(str(tmp_path / "tf.state"))
    supervisor = Supervisor(
        desired(task("web", count=5)), records, clock=clock, scheduler=scheduler, runner=runner
    )
    supervisor.begin(scheduler)
    try:
        scheduler.run_soon()
        yield Recording(supervisor, clock, scheduler, runner, records, writes)
    finally:
        supervisor.end()
        supervisor.sockets.close()


def test_the_records_are_written_once_for_a_burst_of_restarts(recording: Recording) -> None:
    loop = recording
    loop.clock.now += 30.0
    loop.writes.clear()
    for pid in loop.runner.pids():  # each exit in a pass of its own
        loop.runner.exit(pid, EXIT_1)
        loop.supervisor.reaper.reap()
        loop.scheduler.run_soon()
    assert len(loop.runner.started) == 10
    assert loop.writes == []  # not on the restart's way
    loop.scheduler.advance(loop.clock.now + 1.0)
    assert len(loop.writes) == 1
    assert loop.recorded() == set(loop.runner.pids())


def test_restarts_that_keep_coming_write_the_records_at_most_once_a_second(
    recording: Recording,
) -> None:
    # A write costs as much CPU time as a restart: one every tenth of a second of a run
    # of restarts was a tenth of taskforce's time in them (bench/outside.py).
    loop = recording
    loop.scheduler.advance(loop.clock.now + 30.0)
    loop.writes.clear()
    began = loop.clock.now
    for _ in range(10):  # a restart every 0.2 s for 2 s
        loop.runner.exit(loop.runner.pids()[0], EXIT_1)
        loop.supervisor.reaper.reap()
        loop.scheduler.run_soon()
        loop.scheduler.advance(loop.clock.now + 0.2)
    assert loop.writes[0] == pytest.approx(began + 0.1)  # the first as soon as before
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(loop.writes))
    loop.scheduler.advance(loop.clock.now + 10.0)  # the backed-off restarts too, and their write
    assert loop.recorded() == set(loop.runner.pids())


def test_a_run_that_must_not_run_twice_is_recorded_in_the_pass_that_starts_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A once task's run not yet in the records when taskforce is killed was taken by the
    # next taskforce for a stray and stopped, to be run a second time (seen in a loaded
    # run of tests/reliability/test_faults.py); a wait task's start may wait for the burst.
    monkeypatch.setattr(records_module, "start_ticks", lambda pid: 1000 + pid)  # fake pids
    clock = FakeClock()
    scheduler = FakeScheduler(clock)
    runner = FakeRunner()
    records = Records(str(tmp_path / "tf.state"))
    once = replace(task("job"), control=Control.ONCE)
    supervisor = Supervisor(
        desired(task("web"), once), records, clock=clock, scheduler=scheduler, runner=runner
    )
    supervisor.begin(scheduler)
    try:
        scheduler.run_soon()
        assert len(runner.started) == 2
        written = Records(records.path).load()  # no time has passed
        assert written is not None
        assert {r.pid for r in written.processes} == set(runner.pids())
    finally:
        supervisor.end()
        supervisor.sockets.close()


def test_a_new_desired_state_starts_what_it_adds_and_stops_what_it_drops(
    make_loop: MakeLoop,
) -> None:
    loop = make_loop(desired(task("web")))
    [web] = loop.runner.pids()
    loop.supervisor.set_desired(desired(task("db")))
    loop.settle()
    assert loop.runner.signals == [(web, signal.SIGTERM)]
    loop.children_exited()
    assert [launch.argv for _, launch in loop.runner.started] == [("prog", "0")] * 2
    assert loop.runner.pids() == [web + 1]


def with_socket(spec: TaskSpec, path: Path) -> TaskSpec:
    sockets = (SocketSpec("http", UNIX, path=str(path)),)
    instances = tuple(
        dataclasses.replace(i, launch=dataclasses.replace(i.launch, sockets=sockets))
        for i in spec.instances
    )
    return dataclasses.replace(spec, instances=instances)


def test_a_held_socket_is_passed_to_every_start_and_closed_when_dropped(
    make_loop: MakeLoop, tmp_path: Path
) -> None:
    path = tmp_path / "web.sock"
    loop = make_loop(desired(with_socket(task("web"), path)))
    [first] = loop.runner.requests
    [fd] = first.fds
    assert stat.S_ISSOCK(os.fstat(fd).st_mode)
    env = dict(first.launch.env)
    assert (env["LISTEN_FDS"], env["LISTEN_FDNAMES"]) == ("1", "http")
    [pid] = loop.runner.pids()
    loop.clock.now += 30.0
    loop.runner.exit(pid, EXIT_1)
    loop.children_exited()
    loop.scheduler.advance(loop.clock.now + 1.0)
    assert [r.fds for r in loop.runner.requests] == [(fd,), (fd,)]  # the same socket
    loop.supervisor.set_desired(desired(task("web")))
    loop.settle()
    assert loop.supervisor.sockets.describe("web") == []


def test_a_socket_that_cannot_be_bound_fails_the_start(make_loop: MakeLoop, tmp_path: Path) -> None:
    loop = make_loop(desired(with_socket(task("web"), tmp_path / "missing" / "web.sock")))
    assert not loop.runner.requests
    [instance] = loop.supervisor.planner.tasks["web"].instances.values()
    assert instance.last_exit is not None
    assert instance.last_exit.error is not None


@dataclass
class SlowBurst(FakeRunner):
    """Starts take `seconds` of the clock, as a burst does on a loaded host; the first
    start command leaves a real daemon (this test's child) named in `pidfile`, forked while
    the burst is under way, as a start command that runs at once does."""

    clock: FakeClock | None = None
    seconds: float = 5.0
    pidfile: Path | None = None
    daemons: list[subprocess.Popen[bytes]] = dataclasses.field(default_factory=list)

    def begin(self, requests: Sequence[StartRequest]) -> Callable[[], list[Spawned | Exception]]:
        started = super().begin(requests)
        if self.pidfile is not None and not self.daemons:
            self.daemons.append(subprocess.Popen(["sleep", "3600"]))
            self.pidfile.write_text(f"{self.daemons[0].pid}\n")
        assert self.clock is not None
        self.clock.now += self.seconds
        return started


def test_a_daemon_forked_while_its_burst_was_spawned_is_not_older_than_its_start_command(
    make_loop: MakeLoop, tmp_path: Path
) -> None:
    """A nowait start command exits 0 leaving its daemon, which it forked while the rest
    of its burst was still being spawned: the daemon is taken, not doubted as older than
    its start command and started again beside itself (a loaded run of the 100-task SIGKILL
    test had two daemons of one task)."""
    pidfile = tmp_path / "d.pid"
    spec = task("d")
    spec = dataclasses.replace(
        spec,
        control=Control.NOWAIT,
        instances=(dataclasses.replace(spec.instances[0], pidfile=str(pidfile)),),
    )
    # On the clock of /proc's start times: the daemon's is read.
    runner = SlowBurst(clock=FakeClock(time.monotonic()), pidfile=pidfile)
    loop = make_loop(desired(spec), runner, clock=runner.clock)
    try:
        [(launcher, _)] = runner.started
        [daemon] = runner.daemons
        runner.exit(launcher, 0)
        loop.children_exited()
        loop.scheduler.advance(loop.clock.now + 1.0)
        instance = loop.supervisor.planner.tasks["d"].instances[0]
        assert instance.pid == daemon.pid
        assert len(runner.started) == 1
    finally:
        for daemon in runner.daemons:
            daemon.kill()
            daemon.wait()
