"""The workload every peer is given: N tasks running the same child program."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.build import Child


@dataclass(frozen=True)
class Task:
    """One supervised program: `exe ts_path [extra...]`, optionally restarted on a file change."""

    name: str
    exe: Path
    ts_path: Path
    watch: Path | None = None
    extra: tuple[str, ...] = ()

    @property
    def argv(self) -> list[str]:
        return [str(self.exe), str(self.ts_path), *self.extra]


@dataclass
class Workload:
    """A peer's run directory (configuration, state, timestamps) and its tasks."""

    root: Path
    child: Child
    tasks: list[Task] = field(default_factory=list)

    @property
    def ts_dir(self) -> Path:
        return self.root / "ts"

    @property
    def watch_dir(self) -> Path:
        return self.root / "watch"

    @classmethod
    def create(cls, root: Path, child: Child, count: int, watched: int = 0) -> Workload:
        """Tasks c0000.. ; the first `watched` of them restart when their watch file changes."""
        workload = cls(root=root, child=child)
        for directory in (root, workload.ts_dir, workload.watch_dir):
            directory.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            name = f"c{index:04d}"
            watch = None
            if index < watched:
                watch = workload.watch_dir / f"{name}.conf"
                watch.write_text("version 0\n")
            workload.tasks.append(Task(name, child.exe, workload.ts_dir / name, watch))
        return workload

    def task(self, name: str) -> Task:
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(name)

    def changed(self, name: str) -> Workload:
        """The same workload with task `name`'s argv changed (an argument added or dropped)."""
        tasks = []
        for task in self.tasks:
            if task.name == name:
                extra = () if task.extra else ("--version=2",)
                task = Task(task.name, task.exe, task.ts_path, task.watch, extra)
            tasks.append(task)
        return Workload(root=self.root, child=self.child, tasks=tasks)
