"""File watching: inotify on Linux, kqueue on BSD/macOS, polling as a fallback.

Also finds the files a Python program is made of, for the ``python`` event.
"""

from .base import FileWatcher
from .pymodules import discover_modules, discover_modules_async, is_python_script
from .resolve import is_listing, listing

__all__ = [
    "FileWatcher",
    "discover_modules",
    "discover_modules_async",
    "is_listing",
    "is_python_script",
    "listing",
]
