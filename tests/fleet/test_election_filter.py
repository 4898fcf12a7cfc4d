"""What the election lets the legion run (no etcd needed: the lease is a stand-in)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("taskforce.fleet.session", reason="the fleet extra is not installed")

from taskforce.core.spec import DesiredState, InstanceSpec, LaunchSpec, TaskSpec
from taskforce.core.vocabulary import Control
from taskforce.fleet.election import Election


class Keeper:
    def __init__(self) -> None:
        self.lease_id = 7
        self.safe = True
        self.listeners: list[Any] = []

    def listen(self, callback: Any) -> None:
        self.listeners.append(callback)


class Legion:
    supervisor = None
    loaded = None


def spec(name: str, cluster: bool = False) -> TaskSpec:
    launch = LaunchSpec("/bin/true", ("/bin/true",), ())
    return TaskSpec(name, Control.WAIT, (InstanceSpec(launch),), cluster=cluster)


def desired() -> DesiredState:
    return DesiredState({"sched": spec("sched", cluster=True), "web": spec("web")})


def election() -> tuple[Election, Keeper]:
    keeper = Keeper()
    return Election(None, keeper, "/p/", "h1", Legion()), keeper  # type: ignore[arg-type]


def test_a_cluster_task_not_held_is_left_out_and_does_not_block_requires() -> None:
    chosen, _ = election()
    out = chosen.filter(desired())
    assert set(out.tasks) == {"web"} and "sched" in out.out_of_scope
    assert chosen.unfiltered(out) == desired()


def test_a_held_task_runs_only_while_the_lease_is_safe() -> None:
    chosen, keeper = election()
    chosen.loaded(chosen.filter(desired()))
    assert chosen.wanted == {"sched"}
    chosen._settle(frozenset({"sched"}), {}, lease=7)
    assert set(chosen.filter(desired()).tasks) == {"sched", "web"}
    keeper.safe = False
    assert set(chosen.filter(desired()).tasks) == {"web"}
    keeper.safe, keeper.lease_id = True, 8  # a new lease: the old keys are gone
    assert set(chosen.filter(desired()).tasks) == {"web"}


def test_a_task_leaving_the_scope_is_released_once_stopped() -> None:
    chosen, _ = election()
    chosen.loaded(chosen.filter(desired()))
    chosen._settle(frozenset({"sched"}), {}, lease=7)
    chosen.loaded(DesiredState({"web": spec("web")}))
    assert chosen.wanted == frozenset() and chosen._releasing == {"sched"}
