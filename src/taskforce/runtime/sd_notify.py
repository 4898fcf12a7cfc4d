"""Moved to :mod:`taskforce.runtime.notify.systemd`; this path stays only for cli/, fleet/ and
api/run.py until their rewiring (another branch) imports from there."""

from taskforce.runtime.notify.systemd import ENV, WATCHDOG_ENV, Notifier, SystemdStatus, Watchdog

__all__ = ["ENV", "WATCHDOG_ENV", "Notifier", "SystemdStatus", "Watchdog"]
