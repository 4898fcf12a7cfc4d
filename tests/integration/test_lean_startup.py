"""The memory budget (25 MB RSS with 100 tasks) depends on what a daemon never loads:
modules of features its configuration does not use. A real taskforce with a JSON
configuration of `wait` tasks (no schedule, no fleet, no TLS, no notification) and its
control socket on runs until its tasks are up and is stopped; the modules it had loaded
are then written out by an exit hook, and its mappings read from its /proc entry."""

from __future__ import annotations

import sys
from pathlib import Path

from support.config import fast_config
from support.probes import Probes, probe_task
from support.runner import Taskforce

# sys.modules of the daemon, written when it exits after SIGTERM.
_RUN_AND_DUMP_MODULES = """
import atexit, sys
out = sys.argv[1]
atexit.register(lambda: open(out, "w").write("\\n".join(sorted(sys.modules))))
sys.argv = ["taskforce", *sys.argv[2:]]
from taskforce.cli.main import main
sys.exit(main())
"""

# Each loaded only for a feature (PyYAML: for a configuration that is not plain JSON,
# 1.4 MB resident; ssl and OpenSSL: for TLS, 3.8 MB; cronsim: for cron schedules;
# aetcd: for the fleet; urllib.parse and ipaddress, 0.4 MB: for the first API request
# or a notification's URL).
NOT_LOADED = (
    *("yaml", "_yaml", "ssl", "_ssl", "cronsim", "zoneinfo", "aetcd", "grpc"),
    *("urllib.parse", "ipaddress"),
)


def test_daemon_with_plain_tasks_loads_no_optional_module(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    conf = fast_config(tmp_path, {f"t{i}": probe_task() for i in range(3)})
    modules = tmp_path / "modules.txt"
    pidfile = tmp_path / "taskforce.pid"
    argv = [sys.executable, "-c", _RUN_AND_DUMP_MODULES, str(modules)]
    taskforce.spawn([*argv, "-e", "-p", str(pidfile), "-f", conf])
    probes.wait(3)
    taskforce.wait_log("HTTP service listening")

    with open(f"/proc/{taskforce.pid}/maps") as maps:
        mapped = maps.read()
    assert taskforce.stop() == 0

    loaded = set(modules.read_text().split())
    assert "taskforce.runtime.legion" in loaded  # the hook saw the daemon's modules
    assert sorted(loaded & set(NOT_LOADED)) == []
    for library in ("_yaml.cpython", "_ssl.cpython", "libssl.so", "libcrypto.so"):
        assert library not in mapped
