"""Supervisor (supervisord) from PyPI, in its own venv."""

from __future__ import annotations

import signal
import subprocess
import xmlrpc.client
from collections.abc import Callable
from pathlib import Path

from harness import install, unixhttp
from harness.workload import Workload
from peers.base import Peer, rename_into


def config_text(workload: Workload) -> str:
    root = workload.root
    lines = [
        "[supervisord]",
        "nodaemon = true",
        f"logfile = {root}/supervisord.log",
        f"pidfile = {root}/supervisord.pid",
        f"childlogdir = {root}",
        f"minfds = {max(1024, 8 * len(workload.tasks))}",
        f"minprocs = {max(200, 2 * len(workload.tasks))}",
        "",
        "[unix_http_server]",
        f"file = {root}/supervisor.sock",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl = unix://{root}/supervisor.sock",
        "",
    ]
    for task in workload.tasks:
        lines += [
            f"[program:{task.name}]",
            f"command = {' '.join(task.argv)}",
            "autorestart = true",
            "startsecs = 1",
            "stdout_logfile = NONE",
            "stderr_logfile = NONE",
            "",
        ]
    return "\n".join(lines)


class Supervisord(Peer):
    name = "supervisord"
    notes = "stop: SIGTERM; reload: new configuration, then `supervisorctl update`"

    def bin(self) -> Path:
        return self.env.peers_dir / "venv-supervisor" / "bin"

    def install(self) -> str:
        install.venv(self.env.python, self.bin().parent, "supervisor")
        done = subprocess.run(
            [str(self.bin() / "supervisord"), "--version"],
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout.strip()

    def launch(self, workload: Workload) -> None:
        self.workload = workload
        conf = workload.root / "supervisord.conf"
        conf.write_text(config_text(workload))
        self.proc = self._spawn([self.bin() / "supervisord", "-c", conf], cwd=workload.root)

    def request_stop(self) -> None:
        self._signal(signal.SIGTERM)

    def status_query(self) -> Callable[[], int] | None:
        assert self.workload is not None
        sock = self.workload.root / "supervisor.sock"
        body = xmlrpc.client.dumps((), "supervisor.getAllProcessInfo").encode()
        headers = {"Content-Type": "text/xml"}
        return lambda: len(unixhttp.request(sock, "POST", "/RPC2", body, headers))

    def prepare_reload(self, new: Workload, name: str) -> Callable[[], None]:
        conf = new.root / "supervisord.conf"
        rename = rename_into(conf, config_text(new))

        def apply() -> None:
            rename()
            self._helper([self.bin() / "supervisorctl", "-c", conf, "update"])

        return apply
