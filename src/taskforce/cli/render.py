"""The `taskforce status` table, from the JSON of GET /status/tasks.

Plain ANSI colour, no terminal library: the client commands must stay cheap to import.
Rendering is a pure function of the data and a clock, so it is tested without a server.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

_RESET = "\033[0m"
_BOLD, _DIM, _RED, _GREEN, _YELLOW = "\033[1m", "\033[2m", "\033[31m", "\033[32m", "\033[33m"

_STATE_COLOURS = {
    "running": _GREEN,
    "done": _GREEN,
    "starting": _YELLOW,
    "pending": _YELLOW,
    "waiting": _YELLOW,
    "stopping": _YELLOW,
    "backing off": _RED,
    "failed": _RED,
    "invalid": _RED,
    "stopped": _DIM,
    "off": _DIM,
    "suspend": _DIM,
    "removed": _DIM,
}

HEADERS = ("TASK", "CONTROL", "STATE", "RUN", "PIDS", "UPTIME", "RESTARTS", "LAST EXIT")
_RIGHT = frozenset({"RUN", "UPTIME", "RESTARTS"})  # numbers line up on the right
_MAX_PIDS = 4  # a pool of 100 would otherwise make the table unreadable


def use_colour(stream: TextIO) -> bool:
    """Colour only for a terminal, and never when NO_COLOR is set (no-color.org)."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False


def status_table(tasks: Mapping[str, Any], now: float, *, colour: bool = False) -> str:
    """The table, one line per task; a WHY column appears when some task is waiting."""
    rows = [_row(name, t if isinstance(t, Mapping) else {}, now) for name, t in tasks.items()]
    if not rows:
        return "no tasks\n"
    headers: Sequence[str] = HEADERS
    if any(row[-1] for row in rows):
        headers = (*HEADERS, "WHY")
    else:
        rows = [row[:-1] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = [_line(headers, widths, headers, [_BOLD] * len(headers) if colour else None)]
    for row in rows:
        colours = None
        if colour:
            colours = [""] * len(headers)
            colours[2] = _STATE_COLOURS.get(row[2], "")
            if row[6] not in ("0", "-"):
                colours[6] = _YELLOW
        lines.append(_line(row, widths, headers, colours))
    return "\n".join(lines) + "\n"


def _line(
    cells: Sequence[str], widths: Sequence[int], headers: Sequence[str], colours: list[str] | None
) -> str:
    out = []
    for i, (cell, width) in enumerate(zip(cells, widths, strict=True)):
        # Padding is computed on the plain text: escape codes have no width on screen.
        pad = " " * (width - len(cell))
        text = f"{colours[i]}{cell}{_RESET}" if colours and colours[i] else cell
        out.append(pad + text if headers[i] in _RIGHT else text + pad)
    return "  ".join(out).rstrip()


def _row(name: str, task: Mapping[str, Any], now: float) -> list[str]:
    processes = [p for p in _list(task.get("processes")) if isinstance(p, Mapping)]
    pids = [str(p["pid"]) for p in processes if p.get("pid") is not None]
    started = [
        float(p["started_t"])
        for p in processes
        if p.get("pid") is not None and _is_num(p.get("started_t"))
    ]
    running = task.get("running", len(pids))
    return [
        _text(name),
        _text(task.get("control")),
        _text(task.get("state")),
        f"{_text(running)}/{_text(task.get('count'))}",
        _pids(pids),
        # The youngest process: a pool where one instance keeps restarting shows it.
        duration(now - max(started)) if started else "-",
        _text(task.get("restarts")),
        _last_exit(processes, now),
        _why(task, now),
    ]


def _why(task: Mapping[str, Any], now: float) -> str:
    """Why the task is in its state, and when its schedule runs it next."""
    why = _text(task.get("why"), empty="")
    if _is_num(task.get("next_run_t")):
        why = "; ".join(filter(None, (why, f"next run in {duration(task['next_run_t'] - now)}")))
    return why


def _pids(pids: list[str]) -> str:
    if not pids:
        return "-"
    if len(pids) <= _MAX_PIDS:
        return ",".join(pids)
    return ",".join(pids[: _MAX_PIDS - 1]) + f",+{len(pids) - _MAX_PIDS + 1}"


def _last_exit(processes: list[Mapping[str, Any]], now: float) -> str:
    exited = [p for p in processes if p.get("exit") and _is_num(p.get("exited_t"))]
    if not exited:
        return "-"
    last = max(exited, key=lambda p: float(p["exited_t"]))
    return f"{last['exit']}, {duration(now - float(last['exited_t']))} ago"


def duration(seconds: float) -> str:
    """Two units at most: 42s, 5m07s, 3h04m, 2d05h."""
    s = max(0, int(seconds))  # clocks of client and server may disagree a little
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d{h:02d}h"


def _text(value: object, empty: str = "-") -> str:
    if value is None or value == "":
        return empty
    # One line per task whatever the server sends, and no escape codes of its own.
    text = " ".join(str(value).split())
    return "".join(c if c.isprintable() else "?" for c in text)


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _is_num(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


__all__ = ["HEADERS", "duration", "status_table", "use_colour"]
