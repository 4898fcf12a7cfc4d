"""Build the benchmark child: a static C program if a compiler is found, else Python."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Child:
    """The child program, and a second copy used as a task's 'new version' on reload."""

    exe: Path
    exe2: Path
    kind: str  # "C (static)", "C (dynamic)" or "Python"


def _compile(src: Path, out: Path, extra: tuple[str, ...] = ()) -> str | None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    for flags, kind in ((["-static"], "C (static)"), ([], "C (dynamic)")):
        tmp = out.with_suffix(".tmp")
        done = subprocess.run(
            [cc, "-O2", *flags, *extra, "-o", str(tmp), str(src)], capture_output=True, check=False
        )
        if done.returncode == 0:
            tmp.rename(out)
            return kind
    return None


def build_child(cache: Path) -> Child:
    """Compile bench/child.c once per source version (cached under `cache`)."""
    src = BENCH / "child.c"
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:12]
    out_dir = cache / f"child-{digest}"
    exe, exe2, kind_file = out_dir / "child", out_dir / "child2", out_dir / "kind"
    if not (exe.exists() and exe2.exists() and kind_file.exists()):
        out_dir.mkdir(parents=True, exist_ok=True)
        kind = _compile(src, exe)
        if kind is None:
            shutil.copy2(BENCH / "child.py", exe)
            kind = "Python"
        shutil.copy2(exe, exe2)
        kind_file.write_text(kind)
    return Child(exe=exe, exe2=exe2, kind=kind_file.read_text())


def build_tool(name: str, cache: Path) -> Path | None:
    """Compile bench/<name>.c (threads allowed) once per source version; None without a
    C compiler."""
    src = BENCH / f"{name}.c"
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:12]
    exe = cache / f"{name}-{digest}" / name
    if not exe.exists():
        exe.parent.mkdir(parents=True, exist_ok=True)
        if _compile(src, exe, ("-pthread",)) is None:
            return None
    return exe
