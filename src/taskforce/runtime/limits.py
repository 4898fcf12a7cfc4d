"""Moved to :mod:`taskforce.runtime.own.open_files`;
this path stays only for cli/, fleet/ and api/run.py until their rewiring (another
branch) imports from there."""

from taskforce.runtime.own.open_files import raise_open_files, restore_open_files

__all__ = ["raise_open_files", "restore_open_files"]
