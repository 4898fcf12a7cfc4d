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
LAYERS = "the layers: cli > app > api | fleet > runtime > config | watch > core"


def lint_imports(src: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports with the project's contracts, over the taskforce package under `src`."""
    # PYTHONPATH comes before the editable install's path: the copy is the one analysed.
    env = {**os.environ, "PYTHONPATH": str(src)}
    command = [str(LINT_IMPORTS), "--config", str(REPO / "pyproject.toml"), "--no-cache"]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def broken_contracts(source: Path, cwd: Path, module: str, violation: str) -> str:
    """lint-imports' report of the broken contracts once `violation` is added to `module`
    (a path under taskforce/) in the copy `source`; it must fail."""
    path = source / "taskforce" / module
    path.write_text(path.read_text() + f"\n{violation}\n")
    result = lint_imports(source, cwd)
    assert result.returncode == 1, result.stdout + result.stderr
    return result.stdout[result.stdout.index("Broken contracts") :]


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
        (
            "fleet/member.py",
            "from taskforce.api import server",
            LAYERS,
            "taskforce.fleet is not allowed to import taskforce.api",
        ),
        (
            "fleet/urls.py",
            "from taskforce.cli import parser",
            LAYERS,
            "taskforce.fleet is not allowed to import taskforce.cli",
        ),
        (
            "api/routes.py",
            "import taskforce.fleet.view",
            LAYERS,
            "taskforce.api is not allowed to import taskforce.fleet",
        ),
        (
            "api/server.py",
            "from taskforce.app import serve",
            LAYERS,
            "taskforce.api is not allowed to import taskforce.app",
        ),
        (
            "app/serve.py",
            "from taskforce.cli import defaults",
            LAYERS,
            "taskforce.app is not allowed to import taskforce.cli",
        ),
        (
            "runtime/legion.py",
            "import taskforce.api.paths",
            LAYERS,
            "taskforce.runtime is not allowed to import taskforce.api",
        ),
        (
            "config/load.py",
            "from taskforce.watch import base",
            LAYERS,
            "taskforce.config is not allowed to import taskforce.watch",
        ),
    ],
)
def test_a_deliberate_violation_breaks_the_contract(
    source: Path, tmp_path: Path, module: str, violation: str, contract: str, what: str
) -> None:
    broken = broken_contracts(source, tmp_path, module, violation)
    assert contract in broken and what in broken
    assert f"{module[:-3].replace('/', '.')} ->" in broken


@pytest.mark.parametrize(
    ("module", "violation", "package", "breaker"),
    [
        # Once the commands' module imported the main one back (for DEFAULT_PIDFILE).
        (
            "cli/commands.py",
            "from taskforce.cli import main",
            "taskforce.cli",
            ".commands -> .main",
        ),
        ("app/logs.py", "import taskforce.app.daemon", "taskforce.app", ".logs -> .daemon"),
    ],
)
def test_an_import_cycle_breaks_the_contract(
    source: Path, tmp_path: Path, module: str, violation: str, package: str, breaker: str
) -> None:
    broken = broken_contracts(source, tmp_path, module, violation)
    assert "no import cycles between the modules of a package" in broken
    assert f"No cycles are allowed in {package}." in broken and breaker in broken
