"""Moved: the control facade to :mod:`taskforce.runtime.manage`, the status views (and the
Controller that has both) to :mod:`taskforce.api.status`. This path stays only for
fleet/ and api/run.py until their rewiring (another branch) imports from there; it is
the one place where runtime names the api."""

from taskforce.api.status import Controller
from taskforce.runtime.manage import ControlError

__all__ = ["ControlError", "Controller"]
