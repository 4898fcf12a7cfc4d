"""taskforce as of a git commit, beside the working tree's: an A/B in one run.

`BENCH_TASKFORCE_REF=<commit> bench/run.py --only taskforce,taskforce-ref,...` builds the
commit's src/taskforce (and its C extension, with the system `cc`) into bench/.peers;
without the variable it is HEAD. Both run the same workloads interleaved, so the load of a
shared machine hits both alike.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

from harness.install import UnavailableError
from peers.taskforce import Taskforce


class TaskforceRef(Taskforce):
    name = "taskforce-ref"
    notes = "the same, from the git commit in BENCH_TASKFORCE_REF (default HEAD)"

    def snapshot(self) -> Path:
        return self.env.peers_dir / "taskforce-ref-src"

    def install(self) -> str:
        ref = os.environ.get("BENCH_TASKFORCE_REF", "HEAD")
        target = self.snapshot()
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        repo = str(self.env.bench.parent)
        archive = subprocess.run(
            ["git", "-C", repo, "archive", ref, "src/taskforce"], capture_output=True, check=False
        )
        if archive.returncode != 0:
            raise UnavailableError(f"git archive {ref}: {archive.stderr.decode().strip()[-200:]}")
        untar = ["tar", "-x", "--strip-components=1", "-C", str(target)]
        subprocess.run(untar, input=archive.stdout, check=True)
        package = target / "taskforce"
        library = package / f"_syscalls{sysconfig.get_config_var('EXT_SUFFIX')}"
        include = sysconfig.get_paths()["include"]
        build = ["cc", "-O2", "-fPIC", "-shared", f"-I{include}", str(package / "_syscalls.c")]
        if subprocess.run([*build, "-o", str(library)], check=False).returncode != 0:
            raise UnavailableError(f"cannot build the C extension of {ref}")
        subprocess.run([str(self.env.python), "-m", "compileall", "-q", str(package)], check=False)
        return f"{self._version()} ({ref})"
