"""Mozilla's circus (circusd) from PyPI, in its own venv."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from harness import install
from harness.workload import Workload
from peers.base import Peer, rename_into


def config_text(workload: Workload) -> str:
    root = workload.root
    lines = [
        "[circus]",
        f"endpoint = ipc://{root}/ctl.sock",
        f"pubsub_endpoint = ipc://{root}/pub.sock",
        "statsd = False",  # (setting stats_endpoint would turn it on)
        "",
    ]
    for task in workload.tasks:
        lines += [
            f"[watcher:{task.name}]",
            f"cmd = {task.exe}",
            f"args = {' '.join(task.argv[1:])}",
            "numprocesses = 1",
            "warmup_delay = 0",
            "",
        ]
    return "\n".join(lines)


class Circus(Peer):
    name = "circus"
    notes = "stop: SIGTERM; reload: new configuration, then `circusctl reloadconfig`"

    def bin(self) -> Path:
        return self.env.peers_dir / "venv-circus" / "bin"

    def install(self) -> str:
        install.venv(self.env.python, self.bin().parent, "circus")
        done = subprocess.run(
            [str(self.bin() / "circusd"), "--version"], capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    def launch(self, workload: Workload) -> None:
        self.workload = workload
        conf = workload.root / "circus.ini"
        conf.write_text(config_text(workload))
        self.proc = self._spawn(
            [self.bin() / "circusd", "--log-output", workload.root / "circusd.log", conf],
            cwd=workload.root,
        )

    def request_stop(self) -> None:
        self._signal(signal.SIGTERM)

    def prepare_reload(self, new: Workload, name: str) -> Callable[[], None]:
        rename = rename_into(new.root / "circus.ini", config_text(new))
        endpoint = f"ipc://{new.root}/ctl.sock"

        def apply() -> None:
            rename()
            self._helper([self.bin() / "circusctl", "--endpoint", endpoint, "reloadconfig"])

        return apply
