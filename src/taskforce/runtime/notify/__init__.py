"""Telling the outside about state changes: notification targets (webhooks, commands), systemd.

The package names what api/run.py and the fleet wiring import from `taskforce.runtime.notify`.
"""

from taskforce.runtime.notify.notifications import Notifications, attach_notifications

__all__ = ["Notifications", "attach_notifications"]
