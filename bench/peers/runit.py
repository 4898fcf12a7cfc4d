"""runit's runsvdir (one runsv per service) from Debian's package."""

from __future__ import annotations

import signal
from collections.abc import Callable

from harness import install
from harness.workload import Task, Workload
from peers import servicedirs
from peers.base import Peer


class Runit(Peer):
    name = "runit"
    notes = (
        "stop: SIGHUP to runsvdir; reload: no configuration file: "
        "replace the service's run, then `sv restart` it"
    )

    def install(self) -> str:
        install.apt(["runit"], ["runsvdir", "runsv", "sv"])
        return install.debian_version("runit")

    def launch(self, workload: Workload) -> None:
        self.workload = workload
        scan = servicedirs.write_service_dirs(workload)
        self.proc = self._spawn(
            ["runsvdir", "-P", scan], env=servicedirs.environment(workload), cwd=workload.root
        )

    def runs(self, pid: int, task: Task) -> bool:
        assert self.workload is not None
        return servicedirs.runs(self.workload, pid, task)

    def request_stop(self) -> None:
        self._signal(signal.SIGHUP)

    def prepare_reload(self, new: Workload, name: str) -> Callable[[], None]:
        rename = servicedirs.replace_run(new, name)
        service = servicedirs.scan_dir(new) / name

        def apply() -> None:
            rename()
            self._helper(["sv", "restart", service])

        return apply
