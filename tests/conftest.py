"""Fixtures of the whole suite: run taskforce for real, and clean up always. The helpers
they use, and the tests import, live in tests/support/."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.probes import Probes
from support.procfs import kill_marked
from support.runner import Taskforce
from support.teardown import uninterrupted
from support.tls import Certificate, self_signed

# Before any test module can load gRPC: it reads its fork setting then, once, and an unset
# one is "on" in its core. A fleet test module's `importorskip("aetcd")` loaded it at
# collection with the setting unset, and every fork of this process with a preexec_fn ran
# gRPC's fork handlers: one restarted its poller in a child that died of SIGABRT before
# exec (grpc/grpc#43055). Processes the tests start do not inherit it (support/environ.py).
from taskforce.fleet.grpc_fork import FORK_ENV, FORK_ENV_OURS

# The etcd cluster and fleet fixtures, for tests/fleet and tests/browser.
pytest_plugins = ["fleet.fixtures"]


def pytest_configure(config: pytest.Config) -> None:
    if not FORK_ENV_OURS:  # the user's: it could turn them on
        raise pytest.UsageError(
            f"{FORK_ENV} is set in the environment: unset it (the suite forks while gRPC's "
            "threads run, which needs gRPC's fork support off, and turns it off itself)"
        )


@pytest.fixture
def probes(tmp_path: Path) -> Probes:
    directory = tmp_path / "probes"
    directory.mkdir(exist_ok=True)
    return Probes(directory)


@pytest.fixture
def taskforce(tmp_path: Path, probes: Probes) -> Iterator[Taskforce]:
    tf = Taskforce(tmp_path, uuid.uuid4().hex)
    try:
        yield tf
    finally:
        tf.cleanup()
        # Captured by pytest, and shown with the report of a test that failed.
        print(f"---- taskforce log (last 8000 characters) ----\n{tf.log()[-8000:]}")


@pytest.fixture
def marker() -> Iterator[str]:
    """Marks the environment of the tasks a test starts in-process (TF_TEST_MARKER);
    whatever a failed test leaves running is killed."""
    value = uuid.uuid4().hex
    try:
        yield value
    finally:
        with uninterrupted():
            kill_marked(value)


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """One self-signed certificate for the session's TLS tests."""
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def runtime(taskforce: Taskforce) -> Iterator[Path]:
    """A private XDG_RUNTIME_DIR for this test's taskforces and clients: short, since a
    socket path is limited to about 107 bytes (tmp_path is too long for that)."""
    path = Path(tempfile.mkdtemp(prefix="tfx-"))
    taskforce.env["XDG_RUNTIME_DIR"] = str(path)
    taskforce.env.pop("TASKFORCE_SERVER", None)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
