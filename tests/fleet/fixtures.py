"""Fixtures of the tests that run a fleet (tests/fleet, and the browser's fleet view): a
three-member etcd cluster on loopback ports (started once for the session, data in a
temporary directory), and a fleet of taskforce hosts per test under a key prefix of its
own. Every process is stopped, whatever happens. Registered by tests/conftest.py.

etcd comes from Debian's etcd-server package (tests/fleet/setup.sh installs it); without
it the tests are skipped, saying so.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.harness import ETCD, EtcdCluster
from fleet.scenario import Fleet


@pytest.fixture(scope="session")
def etcd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    if not os.access(ETCD, os.X_OK):
        pytest.skip("etcd is not installed: run tests/fleet/setup.sh (Debian's etcd-server)")
    try:
        import taskforce.fleet.session  # noqa: F401
    except ImportError:
        pytest.skip("the fleet extra is not installed: pip install -e '.[fleet]'")
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd"))
    try:
        cluster.start()
        cluster.wait_healthy(timeout=30)
        yield cluster
    finally:
        cluster.stop_all()


@pytest.fixture
def etcd(etcd_cluster: EtcdCluster) -> Iterator[EtcdCluster]:
    """The cluster with every member up (a test may stop some: they come back after it)."""
    etcd_cluster.start()
    etcd_cluster.wait_healthy()
    yield etcd_cluster
    etcd_cluster.start()


@pytest.fixture
def fleet(etcd: EtcdCluster, tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(etcd, tmp_path)
    try:
        yield fleet
    finally:
        fleet.close()
