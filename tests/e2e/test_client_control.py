"""The client and the control plane, end to end: which instance a command reaches, what
it waits for, what it says and logs (issue 13, points 1-4 and 20).

Every taskforce here gets its own XDG_RUNTIME_DIR (a short temporary directory: socket
paths are limited to ~107 bytes), so that neither its default socket nor its record of
where it listens meets another test's, or another user's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Taskforce


@pytest.mark.parametrize(
    "argv",
    [
        ["fleet", "status", "--etcd", "etcd://127.0.0.1:1/fleet/config"],
        ["fleet", "push", "--etcd", "etcd://127.0.0.1:1/fleet/config", "x.conf"],
        ["-e", "-f", "etcd://127.0.0.1:1/fleet/config"],
        ["-C", "-f", "etcd://127.0.0.1:1/fleet/config"],
    ],
)
def test_the_fleet_without_its_extra_says_what_to_install(
    tmp_path: Path, taskforce: Taskforce, argv: list[str]
) -> None:
    # A module of that name that cannot be imported: as if the extra were not installed.
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "aetcd.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'aetcd'\", name='aetcd')\n"
    )
    taskforce.env["PYTHONPATH"] = str(hide)
    result = taskforce.run(*argv, timeout=30)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "pip install 'taskforce[fleet]'" in result.stderr
    assert "Traceback" not in result.stderr
