"""taskforce: an event-driven process supervisor.

The library entry point is :class:`taskforce.runtime.legion.Legion`; the ``taskforce``
command is built on it.
"""

# Kept here (not read through importlib.metadata, which costs megabytes of imports in a
# daemon with a memory budget); pyproject.toml reads it from this line.
__version__ = "1.0.0.dev0"

__all__ = ["__version__"]

# Before anything imports asyncio: keep ssl out of it until TLS is used (memory).
from taskforce import lean_asyncio as _lean_asyncio  # noqa: F401
