"""Moved to :mod:`taskforce.runtime.loop.supervisor`;
this path stays only for cli/, fleet/ and api/run.py until their rewiring (another
branch) imports from there."""

from taskforce.runtime.loop.supervisor import Outcome

__all__ = ["Outcome"]
