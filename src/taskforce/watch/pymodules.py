"""Files a Python program is made of, for the ``python`` event.

The program is its script plus the modules it imports (transitively) from the task's own
search path: the script's directory and the task's PYTHONPATH. The standard library is left out:
it changes only with the interpreter, which the ``self`` event covers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from functools import partial
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from modulefinder import Module

log = logging.getLogger("taskforce.watch")

# Enough of a first line to hold any interpreter path worth believing.
_SHEBANG_LIMIT = 512


def is_python_script(path: str) -> bool:
    """A ``.py`` file, or a file whose ``#!`` line names a python interpreter."""
    if path.endswith((".py", ".pyw")):
        return True
    try:
        with open(path, "rb") as f:
            first = f.readline(_SHEBANG_LIMIT)
    except OSError:
        return False
    return first.startswith(b"#!") and b"python" in first


def _stdlib_dirs() -> tuple[str, ...]:
    import sysconfig

    # The base interpreter's, not a virtualenv's: a venv's "platstdlib" holds site-packages.
    base = {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}
    dirs = {os.path.dirname(os.__file__)}
    dirs.update(sysconfig.get_path(name, vars=base) for name in ("stdlib", "platstdlib"))
    return tuple(os.path.join(os.path.abspath(d), "") for d in dirs if d)


def _is_stdlib(path: str, stdlib: tuple[str, ...]) -> bool:
    if not path.startswith(stdlib):
        return False
    # A site-packages inside the standard library directory holds installed packages, which
    # count when the task's PYTHONPATH names them.
    parts = path.split(os.sep)
    return "site-packages" not in parts and "dist-packages" not in parts


def discover_modules(script: str, search_path: Sequence[str]) -> frozenset[str]:
    """The script and the files of the modules it imports from ``search_path``.

    The script's directory is searched first, as Python does. Never raises: when the script
    cannot be read or compiled, the result holds at least the script, so that fixing it is
    seen; a module that does not compile is included and its imports are skipped.
    """
    from modulefinder import ModuleFinder

    script = os.path.abspath(script)
    # Python searches the directory of the script's real file first (through symlinks).
    here = os.path.dirname(os.path.realpath(script))
    entries = [here, *(os.path.abspath(p) for p in search_path if p)]
    path = list(dict.fromkeys(entries))
    broken: set[str] = set()

    class Finder(ModuleFinder):
        def load_module(
            self, fqname: str, fp: IO[str], pathname: str, file_info: tuple[str, str, str]
        ) -> Module:
            try:
                return super().load_module(fqname, fp, pathname, file_info)
            except (SyntaxError, ValueError) as exc:
                # ModuleFinder compiles each module; one broken module must not hide the rest.
                broken.add(pathname)
                log.warning("python event: cannot read the imports of %s: %s", pathname, exc)
                raise ImportError(str(exc)) from exc

    finder = Finder(path=path)
    try:
        finder.run_script(script)
    except Exception as exc:
        if script not in broken:
            log.warning("python event: cannot read the imports of %s: %s", script, exc)
    stdlib = _stdlib_dirs()
    found = {script}
    files: list[str | None] = [getattr(m, "__file__", None) for m in finder.modules.values()]
    for name in [*files, *broken]:
        if name:
            full = os.path.abspath(name)
            if not _is_stdlib(full, stdlib):
                found.add(full)
    return frozenset(found)


async def discover_modules_async(script: str, search_path: Sequence[str]) -> frozenset[str]:
    """:func:`discover_modules` in a worker thread: it reads and compiles every module."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, partial(discover_modules, script, tuple(search_path)))
