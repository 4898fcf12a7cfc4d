"""Moved to :mod:`taskforce.runtime.own.paths`;
this path stays only for cli/, fleet/ and api/run.py until their rewiring (another
branch) imports from there."""

from taskforce.runtime.own.paths import default_state_file

__all__ = ["default_state_file"]
