"""The JSON Schema of the configuration file, for editors (yaml-language-server) and tools.

It is rendered from the same description validation uses
(:mod:`taskforce.config.description`), so the two cannot disagree about which keys exist
or what they hold. The schema cannot express everything validation checks (links between
tasks, signal names), so it may accept a file that validation rejects, never the reverse.

``python -m taskforce.config.schema`` prints it.
"""

from __future__ import annotations

import json

from taskforce.config.description import CONFIG
from taskforce.config.shapes import Defs, JsonSchema

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def config_schema() -> JsonSchema:
    """A draft 2020-12 JSON Schema describing a taskforce configuration file."""
    defs: Defs = {}
    body = CONFIG.json_schema(defs)
    task = body["properties"]["tasks"]["additionalProperties"]
    # Background daemons are found through their pidfile (validate._check_daemon_pidfile).
    task.setdefault("allOf", []).append(
        {
            "if": {
                "properties": {"control": {"enum": ["nowait", "adopt"]}},
                "required": ["control"],
            },
            "then": {"required": ["pidfile"]},
        }
    )
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "taskforce configuration",
        "description": "Tasks for the taskforce process supervisor to start and restart, "
        "with the context (environment and {name} substitutions) they run in.",
        **body,
        "$defs": defs,
    }


def config_schema_json() -> str:
    return json.dumps(config_schema(), indent=2, sort_keys=False) + "\n"


if __name__ == "__main__":
    print(config_schema_json(), end="")
