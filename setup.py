"""The optional C half of taskforce: vfork+exec (src/taskforce/_syscalls.c).

Everything else is in pyproject.toml. Without a C compiler the extension is skipped and
taskforce spawns with fork+exec from Python, which is slower but behaves the same.
"""

import sys

from setuptools import Extension, setup

extensions = []
if sys.platform.startswith("linux"):
    extensions.append(
        Extension("taskforce._syscalls", ["src/taskforce/_syscalls.c"], optional=True)
    )

setup(ext_modules=extensions)
