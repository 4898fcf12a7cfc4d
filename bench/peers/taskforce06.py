"""The original taskforce 0.6.0 from PyPI, in its own venv (it is Python-2-era code)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import install
from harness.workload import Workload
from peers.taskforce import Taskforce


class Taskforce06(Taskforce):
    name = "taskforce-0.6.0"
    notes = "stop: SIGTERM; reload: rename the new configuration over the old"
    settings: dict[str, Any] | None = None  # 0.6.0 has no `settings`

    def bin(self) -> Path:
        return self.env.peers_dir / "venv-taskforce-0.6.0" / "bin"

    def command(self) -> list[str]:
        return [str(self.bin() / "taskforce")]

    def environment(self) -> dict[str, str] | None:
        return None

    def flags(self, workload: Workload) -> list[str | Path]:
        return ["-p", "-"]

    def install(self) -> str:
        install.venv(self.env.python, self.bin().parent, "taskforce==0.6.0")
        return self._version()
