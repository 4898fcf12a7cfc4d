"""One adapter per supervisor under test; ALL lists them in report order."""

from __future__ import annotations

from harness.install import UnavailableError
from peers.base import Env, Peer
from peers.circus import Circus
from peers.pm2 import Pm2
from peers.runit import Runit
from peers.s6 import S6
from peers.supervisord import Supervisord
from peers.taskforce import Taskforce
from peers.taskforce06 import Taskforce06
from peers.taskforce_ref import TaskforceRef

ALL: list[type[Peer]] = [Taskforce, TaskforceRef, Taskforce06, S6, Runit, Supervisord, Circus, Pm2]

__all__ = ["ALL", "Env", "Peer", "UnavailableError"]
