"""skarnet's s6-svscan (one s6-supervise per service) from Debian's package."""

from __future__ import annotations

from collections.abc import Callable

from harness import install
from harness.workload import Task, Workload
from peers import servicedirs
from peers.base import Peer


class S6(Peer):
    name = "s6"
    notes = (
        "services signal readiness (notification-fd; without it s6-supervise waits 1 s "
        "before every restart); stop: `s6-svscanctl -t`; reload: no configuration file: "
        "replace the service's run, then `s6-svc -r` it"
    )

    def install(self) -> str:
        install.apt(["s6"], ["s6-svscan", "s6-supervise", "s6-svc", "s6-svscanctl"])
        return install.debian_version("s6")

    def launch(self, workload: Workload) -> None:
        self.workload = workload
        scan = servicedirs.write_service_dirs(workload)
        for task in workload.tasks:
            (scan / task.name / "notification-fd").write_text("3\n")
        limit = max(1000, 2 * len(workload.tasks))
        self.proc = self._spawn(
            ["s6-svscan", "-c", str(limit), scan],
            env=servicedirs.environment(workload),
            cwd=workload.root,
        )

    def runs(self, pid: int, task: Task) -> bool:
        assert self.workload is not None
        return servicedirs.runs(self.workload, pid, task)

    def request_stop(self) -> None:
        assert self.workload is not None
        self._helper(["s6-svscanctl", "-t", servicedirs.scan_dir(self.workload)])

    def prepare_reload(self, new: Workload, name: str) -> Callable[[], None]:
        rename = servicedirs.replace_run(new, name)
        service = servicedirs.scan_dir(new) / name

        def apply() -> None:
            rename()
            self._helper(["s6-svc", "-r", service])

        return apply
