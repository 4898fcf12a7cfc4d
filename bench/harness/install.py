"""Install peers from their usual registries, once: later runs reuse what is there."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

_apt_updated = False


class UnavailableError(Exception):
    """A peer cannot be installed or run here; the message says why."""


def _run(argv: list[str], what: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise UnavailableError(f"{what} failed: {' / '.join(tail)}")


def apt(packages: list[str], binaries: list[str]) -> None:
    """Debian packages, installed only if one of `binaries` is missing from PATH."""
    global _apt_updated
    if all(shutil.which(binary) for binary in binaries):
        return
    if shutil.which("apt-get") is None:
        raise UnavailableError(f"{', '.join(binaries)} not found and no apt-get to install them")
    if os.geteuid() != 0:
        raise UnavailableError(f"{', '.join(binaries)} not found; apt-get needs root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _apt_updated:
        _run(["apt-get", "update", "-qq"], "apt-get update", env)
        _apt_updated = True
    _run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
        f"apt-get install {' '.join(packages)}",
        env,
    )
    missing = [binary for binary in binaries if shutil.which(binary) is None]
    if missing:
        raise UnavailableError(
            f"installed {' '.join(packages)} but {', '.join(missing)} still missing"
        )


def venv(python: Path, where: Path, requirement: str) -> Path:
    """A virtualenv at `where` with `requirement` installed from PyPI; returns its bin/."""
    marker = where / ".installed"
    if marker.exists() and marker.read_text() == requirement:
        return where / "bin"
    shutil.rmtree(where, ignore_errors=True)
    base = _base_python(python)
    _run([str(base), "-m", "venv", str(where)], f"venv for {requirement}")
    _run(
        [str(where / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", requirement],
        f"pip install {requirement}",
    )
    marker.write_text(requirement)
    return where / "bin"


def _base_python(python: Path) -> Path:
    """The interpreter our own venv was made from (a venv made from a venv nests oddly)."""
    cfg = python.parent.parent / "pyvenv.cfg"
    if not cfg.exists():
        return python
    settings = {}
    for line in cfg.read_text().splitlines():
        key, _, value = line.partition("=")
        settings[key.strip()] = value.strip()
    if "executable" in settings:
        return Path(settings["executable"])
    return Path(settings.get("home", str(python.parent))) / "python3"


def npm(prefix: Path, package: str, binary: str) -> Path:
    """`npm install package` into `prefix`; returns the path of node_modules/.bin/binary."""
    exe = prefix / "node_modules" / ".bin" / binary
    if exe.exists():
        return exe
    if shutil.which("npm") is None:
        apt(["nodejs", "npm"], ["node", "npm"])
    prefix.mkdir(parents=True, exist_ok=True)
    _run(
        ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(prefix), package],
        f"npm install {package}",
    )
    if not exe.exists():
        raise UnavailableError(f"npm installed {package} but {exe} is missing")
    return exe


def debian_version(package: str) -> str:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", package],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "?"
