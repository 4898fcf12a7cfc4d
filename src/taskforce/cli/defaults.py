"""Where the command looks by default: its configuration, roles and pidfile."""

from __future__ import annotations

DEFAULT_CONFIG = "/usr/local/etc/taskforce.conf"
DEFAULT_PIDFILE = "/var/run/taskforce.pid"
DEFAULT_ROLES_FILES = ("/var/local/etc/tf_roles.conf", "/usr/local/etc/tf_roles.conf")
