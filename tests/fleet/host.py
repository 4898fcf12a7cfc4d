"""Run one fleet host: `taskforce -e -p - -f CONFIG_URL -r ROLES_URL`, as the command does.

Until the command itself knows etcd URLs, this does what it is to do with them (see
taskforce.fleet.wire); once it does, the tests run the command instead (conftest).
"""

from __future__ import annotations

import asyncio
import sys

from taskforce.cli.logs import setup_logging
from taskforce.config.errors import ConfigError
from taskforce.fleet.wire import fleet_legion_kwargs, run_fleet
from taskforce.runtime.legion import Legion


def main(config_url: str, roles_url: str | None) -> int:
    setup_logging("taskforce", to_stderr=True, verbose="-v" in sys.argv, quiet=False)
    legion = Legion(**fleet_legion_kwargs(config_url, roles_url))
    try:
        asyncio.run(run_fleet(legion))
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"taskforce: {problem}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "-v"]
    sys.exit(main(args[0], args[1] if len(args) > 1 else None))
