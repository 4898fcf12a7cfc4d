"""`python -m build` of this checkout: the sdist holds what a packager needs, the wheels
hold the package (and the man page, the license) but not the C source, and both wheels
(one built with a C compiler, one with the compiler made to fail, as on a machine without
one) install and supervise a task: the first spawns through the C extension, the second
with fork from Python.

The builds run without isolation (the dev extra brings `build`, setuptools and
argparse-manpage), so nothing is downloaded; the whole module takes some seconds.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.config import write_config
from support.probes import Probes, probe_task
from support.runner import Taskforce

pytestmark = [pytest.mark.build, pytest.mark.timeout(300)]

REPO = Path(__file__).parents[2]
BUILD_TIMEOUT = 240


def _build(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


def _source_tree(dest: Path) -> Path:
    """The files of this checkout a clone would have (tracked or new, not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        timeout=60,
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout: cannot tell the source files from build products")
    for name in listed.stdout.decode().split("\0"):
        source = REPO / name
        if name and source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


class Dists:
    def __init__(self, sdist: Path, wheels: dict[str, Path]) -> None:
        self.sdist = sdist
        self.wheels = wheels


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    try:
        import build  # noqa: F401
    except ImportError:
        pytest.skip("the `build` package is not installed (it is in the dev extra)")
    work = tmp_path_factory.mktemp("build")
    tree = _source_tree(work / "tree")
    # The sdist, then the wheel from the unpacked sdist: what `python -m build` does, and
    # the proof that the sdist is enough to build from.
    _build(["-o", str(work / "dist")], tree)
    sdist = next((work / "dist").glob("*.tar.gz"))
    wheels = {"c": next((work / "dist").glob("*.whl"))}
    with tarfile.open(sdist) as archive:
        archive.extractall(work / "unpacked", filter="data")
    unpacked = next((work / "unpacked").iterdir())
    # setuptools compiles with $CC: a compiler that always fails is a machine without one
    # (the extension is optional, so the build goes on without it).
    env = {**_clean_env(), "CC": "/bin/false"}
    _build(["--wheel", "-o", str(work / "nocc")], unpacked, env)
    wheels["fork"] = next((work / "nocc").glob("*.whl"))
    return Dists(sdist, wheels)


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CC")}


def test_the_sdist_has_what_a_packager_needs(dists: Dists) -> None:
    with tarfile.open(dists.sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for needed in (
        "LICENSE",
        "README.md",
        "Dockerfile",
        "setup.py",
        "pyproject.toml",
        "systemd/taskforce.service",
        "examples/example.conf",
        "examples/run",
        "examples/fleet/fleet.conf",
        "src/taskforce/_syscalls.c",
        "src/taskforce/cli/manpage.py",
    ):
        assert needed in names, f"{needed} is not in the sdist"
    assert not any(name.startswith("build/") for name in names)


@pytest.mark.parametrize("path", ["c", "fork"])
def test_the_wheel_has_the_package_not_the_c_source(dists: Dists, path: str) -> None:
    with zipfile.ZipFile(dists.wheels[path]) as wheel:
        names = wheel.namelist()
    assert not [n for n in names if n.endswith(".c")]
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert any(n.endswith(".data/data/share/man/man1/taskforce.1") for n in names)
    assert "taskforce/api/static/dashboard.js" in names
    extension = [n for n in names if n.startswith("taskforce/_syscalls.") and n.endswith(".so")]
    if path == "fork":
        assert not extension
    elif not extension:
        pytest.skip("no C compiler here: the wheel was built without the extension")


@pytest.fixture
def installed(request: pytest.FixtureRequest, dists: Dists, tmp_path: Path) -> Iterator[Path]:
    """A fresh virtualenv with one of the wheels installed (its dependencies are taken
    from this environment's site-packages, as nothing may be downloaded)."""
    env = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=120
    )
    python = env / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    # A path in a .pth file is added to sys.path without its own .pth files being run: the
    # dependencies are found there, this checkout's editable taskforce is not.
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-index", "--disable-pip-version-check", "-q", str(dists.wheels[request.param])],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    yield env


@pytest.mark.parametrize("installed", ["c", "fork"], indirect=True)
def test_an_installed_wheel_supervises(
    installed: Path,
    tmp_path: Path,
    taskforce: Taskforce,
    probes: Probes,
    request: pytest.FixtureRequest,
) -> None:
    path = request.node.callspec.params["installed"]
    python = str(installed / "bin" / "python")
    env = {**_clean_env(), "TF_TEST_MARKER": taskforce.marker, "PROBE_DIR": str(probes.dir)}
    where = subprocess.run(
        [
            python,
            "-c",
            "import taskforce.runtime.processes.spawn as p; "
            "print(p.__file__, p._vfork is not None)",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=tmp_path,
    )
    assert where.returncode == 0, where.stderr
    module, has_vfork = where.stdout.split()
    assert module.startswith(str(installed)), module  # the wheel's code, not this checkout's
    if path == "fork":
        assert has_vfork == "False"
    elif has_vfork == "False":
        pytest.skip("no C compiler here: the wheel was built without the extension")

    config = write_config(tmp_path / "tf.conf", {"worker": probe_task()}, settings={"http": []})
    program = str(installed / "bin" / "taskforce")
    checked = subprocess.run(
        [program, "-C", "-f", str(config)], capture_output=True, text=True, env=env, timeout=60
    )
    assert checked.returncode == 0, checked.stderr
    taskforce.spawn([program, "-e", "-p", "-", "-f", str(config)], env=env)
    probes.wait(1, task="worker")
    assert taskforce.stop() == 0
    page = installed / "share" / "man" / "man1" / "taskforce.1"
    assert page.read_text().startswith(".TH TASKFORCE")
