"""`taskforce fleet status`: every host of the fleet, its roles and its tasks, from etcd;
`taskforce fleet push FILE`: check a configuration and put it in etcd.

Imports only what the command line needs: the command adds these subcommands cheaply.

The etcd URL is the one the hosts run with (`-f`, or --etcd, or $TASKFORCE_ETCD): the
status keys sit beside the configuration key (or under its prefix=). A URL whose path
ends with "/" names the prefix itself.

Exit codes, as the other client commands: 0 done, 1 the file has problems (push),
2 bad usage, 4 etcd unreachable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from taskforce.cli.parser import Parser
from taskforce.fleet.urls import EtcdUrl, EtcdUrlError, is_etcd_url, parse_etcd_url

ETCD_ENV = "TASKFORCE_ETCD"
EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 4


def add_fleet_command(sub: Any) -> None:
    """Add `fleet status` to the command's subparsers."""
    fleet = sub.add_parser("fleet", help="The fleet of taskforces sharing an etcd configuration")
    actions = fleet.add_subparsers(dest="fleet_command", metavar="ACTION", required=True)
    status = actions.add_parser(
        "status", help="Every host of the fleet, its roles and its tasks' states"
    )
    status.add_argument("--json", action="store_true", help="print the raw status as JSON")
    push = actions.add_parser(
        "push", help="Check a configuration file and put it in etcd for the whole fleet"
    )
    push.add_argument("file", help="the configuration (or, with --roles, roles) file")
    push.add_argument(
        "--roles", action="store_true", help="the file is a roles file (the URL its key)"
    )
    for action in (status, push):
        action.add_argument(
            "--etcd",
            metavar="URL",
            help=f"the etcd key's URL (default: -f when it is one, or ${ETCD_ENV})",
        )


def run_fleet_command(args: argparse.Namespace) -> int:
    url = _url(args)
    if url is None:
        return EXIT_USAGE
    if args.fleet_command == "push":
        return _push(url, args.file, args.roles)
    import asyncio

    from taskforce.fleet.client import read_statuses  # the fleet command only

    try:
        hosts = asyncio.run(read_statuses(url.connection, url.prefix))
    except OSError as exc:
        print(f"taskforce fleet: etcd is unreachable: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if args.json:
        print(json.dumps(hosts, indent=2, sort_keys=True))
    else:
        print(render(hosts))
    return EXIT_OK


def _url(args: argparse.Namespace) -> EtcdUrl | None:
    candidates = (getattr(args, "etcd", None), getattr(args, "config_file", None))
    url_text = next((c for c in candidates if is_etcd_url(c)), os.environ.get(ETCD_ENV))
    if not url_text:
        print("taskforce fleet: give the fleet's etcd URL (--etcd, -f or $TASKFORCE_ETCD)",
              file=sys.stderr)  # fmt: skip
        return None
    try:
        return parse_etcd_url(url_text)
    except EtcdUrlError as exc:
        print(f"taskforce fleet: {exc}", file=sys.stderr)
        return None


def _push(url: EtcdUrl, path: str, roles: bool) -> int:
    """Put a configuration (checked first: a bad one never reaches the fleet) or a roles
    file at the URL's key."""
    from taskforce.config.errors import ConfigError
    from taskforce.config.load import read_file
    from taskforce.config.roles import parse_roles
    from taskforce.config.validate import validate_document
    from taskforce.config.yaml_source import load_document

    try:
        data = read_file(path)
        if roles:
            parse_roles(data, path)
        else:
            validate_document(load_document(data.decode("utf-8", "replace"), path))
    except OSError as exc:
        print(f"taskforce fleet: {path}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{problem}", file=sys.stderr)
        print(f"taskforce fleet: {path} not pushed", file=sys.stderr)
        return EXIT_PROBLEMS
    import asyncio

    from taskforce.fleet.client import put_key  # the fleet command only

    try:
        asyncio.run(put_key(url, data))
    except OSError as exc:
        print(f"taskforce fleet: etcd is unreachable: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    print(f"{path} pushed to {url.display}")
    return EXIT_OK


def render(hosts: dict[str, Any]) -> str:
    """One table: a row per task of each host (a host with no task still gets a row)."""
    rows = [("HOST", "ROLES", "TASK", "STATE", "RUNNING", "PIDS")]
    for name in sorted(hosts):
        status = hosts[name]
        roles = status.get("roles")
        roles_text = ",".join(roles) if roles else ("-" if roles is None else "(none)")
        tasks = status.get("tasks") or {}
        cluster = status.get("cluster") or {}
        if status.get("reload_error"):
            rows.append((name, roles_text, "(config)", "rejected", "", ""))
        if not tasks and not cluster:
            rows.append((name, roles_text, "-", "no tasks", "", ""))
        for task in sorted(tasks):
            info = tasks[task]
            label = f"{task} (cluster)" if task in cluster else task
            pids = ",".join(str(p) for p in info.get("pids") or ()) or "-"
            running = f"{info.get('running', 0)}/{info.get('count', 0)}"
            rows.append((name, roles_text, label, str(info.get("state")), running, pids))
        done = status.get("done") or {}
        for task in sorted(set(cluster) - set(tasks)):
            holder = cluster[task]
            state = f"standby: held by {holder}" if holder else "standby: not held yet"
            if task in done:  # a once task that has run, here or elsewhere
                state = f"done on {done[task]}"
            rows.append((name, roles_text, f"{task} (cluster)", state, "", ""))
    if len(rows) == 1:
        return "no host of the fleet is alive"
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m taskforce.cli.fleet status|push ...`, as `taskforce fleet ...`."""
    args = sys.argv[1:] if argv is None else argv
    parser = Parser(prog="taskforce")
    add_fleet_command(parser.add_subparsers(dest="command", required=True))
    return run_fleet_command(parser.parse_args(args if args[:1] == ["fleet"] else ["fleet", *args]))


if __name__ == "__main__":
    sys.exit(main())
