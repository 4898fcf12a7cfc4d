"""What pyproject.toml cannot say: the optional C half of taskforce, and the man page.

The C extension (src/taskforce/_syscalls.c: vfork+exec) is skipped without a C compiler;
taskforce then spawns with fork+exec from Python, which is slower but behaves the same.
The man page is written from the command's argparse definition at build time
(taskforce.cli.manpage, with argparse-manpage) and installed as share/man/man1/taskforce.1.
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

MAN_PAGE = os.path.join("build", "man", "taskforce.1")


class BuildPyAndManPage(build_py):
    def run(self) -> None:
        sys.path.insert(0, os.path.abspath("src"))  # the code being built, not an installed one
        try:
            from taskforce.cli.manpage import render
        finally:
            sys.path.pop(0)
        os.makedirs(os.path.dirname(MAN_PAGE), exist_ok=True)
        with open(MAN_PAGE, "w", encoding="utf-8") as page:
            page.write(render())
        super().run()


extensions = []
if sys.platform.startswith("linux"):
    extensions.append(
        Extension("taskforce._syscalls", ["src/taskforce/_syscalls.c"], optional=True)
    )

setup(
    ext_modules=extensions,
    cmdclass={"build_py": BuildPyAndManPage},
    data_files=[("share/man/man1", [MAN_PAGE])],
)
