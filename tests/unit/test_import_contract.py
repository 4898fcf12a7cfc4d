"""The layers' import contract (pyproject.toml, run by `make lint`) holds for the source and
breaks on a deliberate violation, in a copy of the source so that the tree is never touched."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
# Installed with the dev extra, beside the interpreter running the tests.
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(src: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports with the project's contracts, over the taskforce package under `src`."""
    # PYTHONPATH comes before the editable install's path: the copy is the one analysed.
    env = {**os.environ, "PYTHONPATH": str(src)}
    command = [str(LINT_IMPORTS), "--config", str(REPO / "pyproject.toml"), "--no-cache"]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A copy of src/ to break."""
    copy = tmp_path / "src"
    shutil.copytree(REPO / "src" / "taskforce", copy / "taskforce", ignore=_not_python)
    return copy


def _not_python(folder: str, names: list[str]) -> list[str]:
    return [n for n in names if n == "__pycache__" or n.endswith((".so", ".c"))]


def test_the_source_keeps_the_contract(source: Path, tmp_path: Path) -> None:
    result = lint_imports(source, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "violation", "contract", "what"),
    [
        (
            "core/deadline.py",
            "import time",
            "core is pure: no I/O, no processes, no threads, no clock",
            "taskforce.core is not allowed to import time",
        ),
        (
            "core/restart.py",
            "import asyncio.events",
            "core is pure: no I/O, no processes, no threads, no clock",
            "taskforce.core is not allowed to import asyncio",
        ),
        (
            "core/spec.py",
            "from taskforce.config import model",
            "core imports nothing else of taskforce",
            "taskforce.core is not allowed to import taskforce.config",
        ),
        (
            "config/model.py",
            "from taskforce.runtime.processes import records",
            "config and watch sit below the runtime and what runs on it",
            "taskforce.config is not allowed to import taskforce.runtime",
        ),
        (
            "watch/base.py",
            "import taskforce.cli.main",
            "config and watch sit below the runtime and what runs on it",
            "taskforce.watch is not allowed to import taskforce.cli",
        ),
    ],
)
def test_a_deliberate_violation_breaks_the_contract(
    source: Path, tmp_path: Path, module: str, violation: str, contract: str, what: str
) -> None:
    path = source / "taskforce" / module
    path.write_text(path.read_text() + f"\n{violation}\n")
    result = lint_imports(source, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    broken = result.stdout[result.stdout.index("Broken contracts") :]
    assert contract in broken and what in broken
    assert f"{module[:-3].replace('/', '.')} ->" in broken
