"""The task table as JSON text, kept per task between requests: at 10,000 tasks the
status views cost what changed since the last one, not what exists.

Each task's entry of /status/tasks is serialized once (compact, without the usage figures)
with where each of its keys starts, and kept with a signature of the state it was made
from. A request after no planning pass reuses every entry untouched; after one, each
task's signature is taken again and only the tasks whose signature moved are made anew.
The usage figures (read from /proc when asked) are spliced in at the end of each process
object, so the answer is byte for byte what json.dumps of the whole table gives.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from taskforce.api.query import TASK_FIELDS, TaskQuery

_encode = json.JSONEncoder(separators=(",", ":")).encode
_PROCESSES = TASK_FIELDS.index("processes")
_KEYS = [f'"{name}":'.encode() for name in TASK_FIELDS]

# What the usage of one process adds to its object: `,"cpu_seconds":...` (None: nothing).
UsageOf = Callable[[str, int, "int | None"], bytes]


@dataclass(slots=True)
class Entry:
    """One task's entry: its JSON text and what the filters and usage need of it."""

    signature: object  # the state it was made from; equal signatures, equal text
    key: bytes  # the task's name as a JSON string and a colon
    state: str
    wanted: bool
    text: bytes  # {"control":...,"history":[...]} without usage
    # Where each key's `"name":value` starts in `text`, and one past the closing brace.
    starts: array[int]
    # Each process's closing brace in `text` (usage goes before it), its slot and its
    # pid, one after the other: one flat tuple (a tuple a process and one of the
    # braces took 96 bytes more a task, 1 MB kept with 10,000).
    spots: tuple[int | None, ...]
    # Its lines in each family of /metrics but those made at each scrape, and where each
    # family's end in them (api/metrics.py Row): made at the first scrape after the entry.
    lines: bytes | None = None
    line_ends: Sequence[int] | None = None

    def processes(self) -> Iterator[tuple[int, int | None]]:
        """(slot, pid) of each of its processes, in order."""
        spots = self.spots
        return zip(cast("tuple[int, ...]", spots[1::3]), spots[2::3], strict=True)


def make_entry(name: str, signature: object, data: dict[str, Any], wanted: bool) -> Entry:
    """The entry of a task whose /status/tasks value (without usage) is `data`, its keys
    in TASK_FIELDS order."""
    if tuple(data) != TASK_FIELDS:  # a bug, not bad input: the order is the API's
        raise ValueError(f"{name}: the keys of a status entry are out of order: {list(data)}")
    parts = [b"{"]
    starts = array("I")
    braces: list[int] = []
    at = 1
    for i, (field, value) in enumerate(data.items()):
        if i:
            parts.append(b",")
            at += 1
        starts.append(at)
        head = _KEYS[i]
        if field == "processes":
            piece = bytearray(head + b"[")
            for j, process in enumerate(value):
                if j:
                    piece += b","
                piece += _encode(process).encode()
                braces.append(at + len(piece) - 1)
            piece += b"]"
            text = bytes(piece)
        else:
            text = head + _encode(value).encode()
        parts.append(text)
        at += len(text)
    starts.append(at + 1)  # as if a comma followed the last key's value too
    parts.append(b"}")
    spots = tuple(
        item
        for brace, process in zip(braces, data["processes"], strict=True)
        for item in (brace, process["instance"], process["pid"])
    )
    return Entry(
        signature,
        _encode(name).encode() + b":",
        str(data["state"]),
        wanted,
        b"".join(parts),
        starts,
        spots,
    )


def render(
    name: str, entry: Entry, fields: tuple[str, ...] | None, usage: UsageOf | None
) -> Iterator[bytes]:
    """The pieces of `"name":{...}` for one task: every key or only `fields`, with each
    process's usage when `usage` is given."""
    yield entry.key
    text = entry.text
    if fields is None:
        if usage is None or not entry.spots:
            yield text
            return
        yield from _spliced(name, entry, 0, len(text), usage)
        return
    yield b"{"
    starts = entry.starts
    for n, field in enumerate(fields):
        if n:
            yield b","
        i = TASK_FIELDS.index(field)
        start, end = starts[i], starts[i + 1] - 1  # the comma (or brace) after it
        if i == _PROCESSES and usage is not None and entry.spots:
            yield from _spliced(name, entry, start, end, usage)
        else:
            yield text[start:end]
    yield b"}"


def _spliced(name: str, entry: Entry, start: int, end: int, usage: UsageOf) -> Iterator[bytes]:
    """text[start:end] with each process's usage before its closing brace."""
    text = entry.text
    at = start
    spots = iter(entry.spots)
    for brace, slot, pid in zip(spots, spots, spots, strict=True):
        assert brace is not None and slot is not None
        yield text[at:brace]
        yield usage(name, slot, pid)
        at = brace
    yield text[at:end]


def join(items: Iterable[tuple[str, Entry]], query: TaskQuery, usage: UsageOf | None) -> bytes:
    """The JSON object of the selected tasks, compact, as json.dumps makes it."""
    return b"".join(pieces(items, query, usage))


def pieces(
    items: Iterable[tuple[str, Entry]], query: TaskQuery, usage: UsageOf | None
) -> list[bytes]:
    """join() in the pieces it is made of (most of them kept in the entries), for a
    reply that writes them out a batch at a time rather than joining them whole."""
    out: list[bytes] = []
    append = out.append
    fields = query.fields
    for name, entry in items:
        if not query.selects_state(entry.state, entry.wanted):
            continue
        append(b",")
        if fields is not None:
            out.extend(render(name, entry, fields, usage))
            continue
        # The whole table's common case, without generators (a third of its cost).
        append(entry.key)
        text = entry.text
        if usage is None or not entry.spots:
            append(text)
            continue
        at = 0
        spots = iter(entry.spots)
        for brace, slot, pid in zip(spots, spots, spots, strict=True):
            assert brace is not None and slot is not None
            append(text[at:brace])
            append(usage(name, slot, pid))
            at = brace
        append(text[at:])
    if out:
        out[0] = b"{"
    else:
        append(b"{")
    append(b"}")
    return out


__all__ = ["Entry", "UsageOf", "join", "make_entry", "pieces", "render"]
