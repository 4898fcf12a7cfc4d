"""The JSON Schema of the configuration file, for editors (yaml-language-server) and tools.

It is rendered from the same description validation uses
(:mod:`taskforce.config.description`), so the two cannot disagree about which keys exist
or what they hold. The schema cannot express everything validation checks (links between
tasks, signal names), so it may accept a file that validation rejects, never the reverse.

Included files (`include`) hold tasks, and defines, defaults and env_file for those
tasks: their schema is ``$defs/included_file`` of the main one, and
``python -m taskforce.config.schema --included`` prints it on its own (for an editor's
mapping of ``conf.d/*.conf``).

``python -m taskforce.config.schema`` prints the main file's.
"""

from __future__ import annotations

import json
import sys

from taskforce.config.description import CONFIG, FRAGMENT
from taskforce.config.shapes import Defs, JsonSchema

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def config_schema() -> JsonSchema:
    """A draft 2020-12 JSON Schema describing a taskforce configuration file."""
    defs: Defs = {}
    body = CONFIG.json_schema(defs)
    _daemon_rule(body)
    included = FRAGMENT.json_schema(defs)
    _daemon_rule(included)
    defs["included_file"] = {
        "description": "A file named by `include`: tasks, and defines, defaults and "
        "env_file for those tasks alone.",
        **included,
    }
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "taskforce configuration",
        "description": "Tasks for the taskforce process supervisor to start and restart, "
        "with the context (environment and {name} substitutions) they run in.",
        **body,
        "$defs": defs,
    }


def included_schema() -> JsonSchema:
    """The JSON Schema of a file that a configuration includes."""
    main = config_schema()
    defs = main["$defs"]
    body = defs.pop("included_file")
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "taskforce included configuration file",
        **body,
        "$defs": defs,
    }


def _daemon_rule(body: JsonSchema) -> None:
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


def config_schema_json(included: bool = False) -> str:
    schema = included_schema() if included else config_schema()
    return json.dumps(schema, indent=2, sort_keys=False) + "\n"


if __name__ == "__main__":
    print(config_schema_json("--included" in sys.argv[1:]), end="")
