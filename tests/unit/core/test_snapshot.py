"""The planner's snapshot across a re-exec: what a running process was started with comes
back as it was, or the new image would take it for outdated and restart it."""

from __future__ import annotations

import json

from taskforce.core import snapshot
from taskforce.core.actions import Start
from taskforce.core.planner import Planner
from taskforce.core.sockets import TCP, SocketSpec
from taskforce.core.spec import DesiredState, InstanceSpec, LaunchSpec, TaskSpec
from taskforce.core.vocabulary import Control


def test_a_process_started_with_every_launch_field_is_not_restarted_after_a_hand_over() -> None:
    launch = LaunchSpec(
        "server",
        ("server",),
        (("A", "1"),),
        cwd="/srv",
        user="www",
        group=33,
        no_new_privs=True,
        sockets=(SocketSpec("http", TCP, "127.0.0.1", 8080, backlog=10, reuseport=True),),
    )
    desired = DesiredState({"web": TaskSpec("web", Control.WAIT, (InstanceSpec(launch),))})
    before = Planner(desired)
    [start] = before.plan(0.0).actions
    assert isinstance(start, Start)
    before.started("web", 0, 101, 0.0, 0.0)
    data = json.loads(json.dumps(snapshot.take(before)))
    after = Planner(desired)
    assert snapshot.restore(after, data) == [101]
    restored = after.tasks["web"].instances[0].spec
    assert restored is not None and restored.launch == launch
    assert after.plan(1.0).actions == ()
