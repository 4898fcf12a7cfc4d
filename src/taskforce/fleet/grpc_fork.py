"""gRPC's fork handlers, turned off before gRPC is first imported.

They would log at every task start ("other threads are calling into gRPC") and are not
needed: a task process execs at once, touching no gRPC state. Left on, they also abort a
child forked while gRPC's threads run and find its poller gone. gRPC reads the setting
when it loads, so every import of gRPC in taskforce comes after this module's.
"""

from __future__ import annotations

import os

FORK_ENV = "GRPC_ENABLE_FORK_SUPPORT"
# Says that we set it, not the user: an in-place upgrade re-executes taskforce with this
# environment, and the new image must not take our setting for the user's (its tasks
# would inherit it, and so differ from those it takes over: all restarted).
FORK_ENV_MARK = "TASKFORCE_SET_GRPC_FORK"
FORK_ENV_OURS = FORK_ENV not in os.environ or os.environ.get(FORK_ENV_MARK) == "1"
if FORK_ENV_OURS:  # then tasks must not inherit it
    os.environ[FORK_ENV] = "0"
    os.environ[FORK_ENV_MARK] = "1"
