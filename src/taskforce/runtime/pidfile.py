"""Moved to :mod:`taskforce.runtime.own.pidfile`;
this path stays only for cli/, fleet/ and api/run.py until their rewiring (another
branch) imports from there."""

from taskforce.runtime.own.pidfile import Pidfile, PidfileError, signal_running, wait_released

__all__ = ["Pidfile", "PidfileError", "signal_running", "wait_released"]
