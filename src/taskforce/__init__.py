"""taskforce: an event-driven process supervisor.

The library entry point is :class:`taskforce.Legion`; the ``taskforce`` command is
built on it.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("taskforce")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
