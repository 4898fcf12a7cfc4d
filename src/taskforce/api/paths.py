"""Where the default unix socket lives: next to the pidfile, or in a runtime directory.

Only :mod:`os` is imported, so the command-line client can find a daemon's socket cheaply.
"""

from __future__ import annotations

import os

SOCKET_NAME = "taskforce.sock"


def default_socket_path(pidfile: str | None, environ: dict[str, str] | None = None) -> str:
    """The socket a taskforce with this pidfile (or none) offers when nothing is configured.

    With a pidfile, `/var/run/taskforce.pid` gives `/var/run/taskforce.sock`: one socket
    per instance, wherever instances are told apart. Without one: `$XDG_RUNTIME_DIR`, else
    `/run` for root, else `/tmp/taskforce-UID` (a directory of our own, made when binding).
    A directory that is not ours (root keeping a user's `$XDG_RUNTIME_DIR`, say) is
    refused when binding.
    """
    if pidfile is not None:
        base = os.path.abspath(pidfile)
        stem = base[: -len(".pid")] if base.endswith(".pid") else base
        return stem + ".sock"
    runtime = (os.environ if environ is None else environ).get("XDG_RUNTIME_DIR", "")
    if os.path.isabs(runtime):
        return os.path.join(runtime, SOCKET_NAME)
    uid = os.geteuid()
    if uid == 0:
        return os.path.join("/run" if os.path.isdir("/run") else "/var/run", SOCKET_NAME)
    return os.path.join(private_tmp_dir(uid), SOCKET_NAME)


def private_tmp_dir(uid: int) -> str:
    """The directory of our own under /tmp: /tmp is writable by all, this one by us only."""
    return f"/tmp/taskforce-{uid}"


# Listening sockets handed from one image of taskforce to the next across a re-exec
# (reset, upgrade), as JSON {path: fd}: clients never meet a missing or dead socket.
INHERITED_ENV = "TASKFORCE_INHERITED_SOCKETS"
_handed_over: dict[str, str] = {}


def claim_handed_over(environ: dict[str, str] | None = None) -> None:
    """Take the hand-over out of the environment, before anything copies it (the tasks'
    environment must not change across a re-exec); :mod:`taskforce.api.unix` uses it."""
    text = (os.environ if environ is None else environ).pop(INHERITED_ENV, None)
    if text is not None:
        _handed_over["sockets"] = text


def handed_over() -> str:
    """The hand-over claimed (once: later callers get "")."""
    return _handed_over.pop("sockets", "")
