"""PM2 from npm, installed under bench/.peers/node, in daemon mode (its usual use)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import install
from harness.workload import Workload
from peers.base import Peer, rename_into


def ecosystem_text(workload: Workload) -> str:
    apps: list[dict[str, Any]] = []
    for task in workload.tasks:
        app: dict[str, Any] = {
            "name": task.name,
            "script": str(task.exe),
            "args": task.argv[1:],
            "interpreter": "none",
            "exec_mode": "fork",
            "autorestart": True,
        }
        if task.watch is not None:
            app["watch"] = [str(task.watch)]
        apps.append(app)
    return json.dumps({"apps": apps}, indent=1)


class Pm2(Peer):
    name = "pm2"
    file_change = True
    notes = (
        "start: `pm2 start ecosystem.json` (spawns the daemon); stop: `pm2 kill`; "
        "reload: new ecosystem file, then `pm2 startOrReload ecosystem.json --only <app>` "
        "(PM2 does not diff: without --only it reloads every app, one by one)"
    )

    def exe(self) -> Path:
        return self.env.peers_dir / "node" / "node_modules" / ".bin" / "pm2"

    def install(self) -> str:
        install.npm(self.exe().parent.parent.parent, "pm2", "pm2")
        package = self.exe().parent.parent / "pm2" / "package.json"
        return str(json.loads(package.read_text())["version"])

    def _env(self) -> dict[str, str]:
        assert self.workload is not None
        home = self.workload.root / "pm2home"
        return {**os.environ, "PM2_HOME": str(home), "HOME": str(self.workload.root)}

    def launch(self, workload: Workload) -> None:
        self.workload = workload
        eco = workload.root / "ecosystem.json"
        eco.write_text(ecosystem_text(workload))
        self.proc = self._spawn([self.exe(), "start", eco], env=self._env(), cwd=workload.root)

    def supervisor_pid(self) -> int | None:
        """The God daemon (the `pm2 start` command exits once it has handed over)."""
        if self.workload is None:
            return None
        try:
            return int((self.workload.root / "pm2home" / "pm2.pid").read_text())
        except (OSError, ValueError):
            return None

    def request_stop(self) -> None:
        self._helper([self.exe(), "kill"], env=self._env())

    def prepare_reload(self, new: Workload, name: str) -> Callable[[], None]:
        eco = new.root / "ecosystem.json"
        rename = rename_into(eco, ecosystem_text(new))

        def apply() -> None:
            rename()
            self._helper([self.exe(), "startOrReload", eco, "--only", name], env=self._env())

        return apply
