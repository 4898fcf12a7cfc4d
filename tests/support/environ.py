"""The environment of the processes the tests start: the test process's own, less what
tests/conftest.py set for this process alone."""

from __future__ import annotations

import os

from taskforce.fleet.grpc_fork import FORK_ENV, FORK_ENV_MARK

# gRPC's fork setting, made for the test process (where gRPC may load) before any test
# module loads: a user's shell has neither, so neither has the taskforce under test (not
# in fleet mode, it passes its whole environment on to its tasks).
TEST_PROCESS_ONLY = (FORK_ENV, FORK_ENV_MARK)


def inherited(**extra: str) -> dict[str, str]:
    """This process's environment as a user's shell would hand it on, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in TEST_PROCESS_ONLY}
    env.update(extra)
    return env
