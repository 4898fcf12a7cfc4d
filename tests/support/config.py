"""Configuration files for the tests, and the quick restart policy they run under."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from taskforce.config.roles import Roles

# Short timeouts so that the suite stays quick; min_uptime stays high enough that a
# probe that lives until stopped is never mistaken for a failure.
FAST: dict[str, Any] = {
    "stop_timeout": 1,
    "restart": {"min_uptime": 0.5, "initial_delay": 0.1, "factor": 2, "max_delay": 1},
}


def write_config(path: Path, tasks: dict[str, Any], **top: Any) -> Path:
    """Write a configuration as JSON (valid YAML flow style)."""
    doc = dict(top)
    doc["tasks"] = tasks
    path.write_text(json.dumps(doc, indent=2))
    return path


def fast_config(
    directory: Path, tasks: dict[str, Any], name: str = "taskforce.conf", **top: Any
) -> str:
    """A configuration file in `directory` whose settings are FAST unless `top` says."""
    top.setdefault("settings", FAST)
    return str(write_config(directory / name, tasks, **top))


def replace_file(path: Path, text: str) -> None:
    """Give `path` new contents in one rename, as editors and deployment tools do (the
    file written first is hidden: no include pattern matches it)."""
    tmp = path.parent / f".{path.name}.tmp"
    tmp.write_text(text)
    os.replace(tmp, path)


# Each layer of a task's context (the keyword arguments of config.resolve that give it),
# with the name it makes present.
CONTEXT_LAYERS: dict[str, tuple[str, dict[str, Any]]] = {
    "the environment": ("WHERE", {"env": {"WHERE": "x"}}),
    "a top-level define": ("WHERE", {"defines": {"WHERE": "x"}}),
    "a top-level default": ("WHERE", {"defaults": {"WHERE": "x"}}),
    "a top-level role define": (
        "WHERE",
        {"role_defines": {"r": {"WHERE": "x"}}, "roles": Roles(("r",))},
    ),
    "a roles file value": ("Task_role_r", {"roles": Roles(("r",), {"r": "x"})}),
}
