"""`taskforce logs TASK [-f] [-n N] [--json]`: show, and follow, a task's captured output.

Lines are printed as `task[instance]: text`, as the stderr destination shows them, or with
--json one JSON object per line ({instance, stream, time, text}). Following reads the
server-sent events of /logs/TASK?follow=1 until interrupted or taskforce goes away.
"""

from __future__ import annotations

import http.client
import json
import sys
from typing import IO, Any
from urllib.parse import quote, urlencode

from taskforce.cli.client import Client, RequestError, UnreachableError


def logs_path(task: str) -> str:
    return f"/logs/{quote(task, safe='')}"


def show(client: Client, task: str, lines: int, as_json: bool, follow: bool) -> int:
    if not follow:
        answer = client.get(logs_path(task), {"n": str(lines)})
        if not isinstance(answer, dict) or not isinstance(answer.get("lines"), list):
            raise RequestError(
                f"taskforce at {client.endpoint.described} sent an unexpected logs answer"
            )
        _print(task, answer["lines"], as_json, sys.stdout)
        return 0
    return _follow(client, task, lines, as_json)


def _print(task: str, lines: list[Any], as_json: bool, out: IO[str]) -> None:
    for line in lines:
        if not isinstance(line, dict):
            continue
        if as_json:
            out.write(json.dumps(line) + "\n")
        else:
            out.write(f"{task}[{line.get('instance')}]: {line.get('text')}\n")
    out.flush()


def _follow(client: Client, task: str, lines: int, as_json: bool) -> int:
    target = client.endpoint.prefix + logs_path(task) + "?" + urlencode({"n": lines, "follow": 1})
    headers = {"Accept": "text/event-stream"}
    if client.token:
        headers["Authorization"] = f"Bearer {client.token}"
    conn = client._connection()  # the client's transport: unix socket, TCP or TLS
    try:
        try:
            conn.request("GET", target, headers=headers)
            response = conn.getresponse()
        except OSError as exc:
            raise UnreachableError(
                f"cannot reach taskforce at {client.endpoint.described}: {client._why(exc)}"
            ) from None
        if response.status != 200:
            client._decode(response.status, response.reason, response.read())  # raises
            raise RequestError(f"taskforce at {client.endpoint.described} did not start the stream")
        if conn.sock is not None:
            conn.sock.settimeout(None)  # a quiet task is no reason to give up
        _events(task, response, as_json)
    except http.client.HTTPException as exc:
        raise RequestError(f"the stream from taskforce broke off ({exc})") from None
    finally:
        conn.close()
    raise RequestError("taskforce closed the stream (it stopped or restarted)")


def _events(task: str, response: http.client.HTTPResponse, as_json: bool) -> None:
    """Print the events of the stream until it ends."""
    name, data = "", ""
    while raw := response.readline():
        line = raw.decode(errors="replace").rstrip("\r\n")
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()
        elif not line and data:
            payload = json.loads(data)
            if name == "lines" and isinstance(payload, list):
                _print(task, payload, as_json, sys.stdout)
            elif name == "skipped" and isinstance(payload, dict):
                print(
                    f"taskforce: {payload.get('lines')} lines skipped: not read fast enough",
                    file=sys.stderr,
                    flush=True,
                )
            name, data = "", ""
