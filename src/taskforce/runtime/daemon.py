"""Moved to :mod:`taskforce.runtime.own.detach`;
this path stays only for cli/, fleet/ and api/run.py until their rewiring (another
branch) imports from there."""

from taskforce.runtime.own.detach import detach

__all__ = ["detach"]
