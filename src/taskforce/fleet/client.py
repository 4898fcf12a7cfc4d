"""One-shot reads and writes of the fleet's keys, for the command line (`taskforce fleet
status` and `push`): each opens a session, tries the members of the cluster in turn, and
closes it. OSError when no member answers."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from taskforce.fleet.urls import Connection, EtcdUrl

if TYPE_CHECKING:
    from taskforce.fleet.session import Session

T = TypeVar("T")


async def put_key(url: EtcdUrl, data: bytes) -> None:
    """Put `data` at the URL's key."""

    async def put(session: Session) -> None:
        await session.put(url.key.encode(), data)

    await with_any_member(url.connection, put)


async def read_statuses(connection: Connection, prefix: str) -> dict[str, Any]:
    """host -> its published status (the hosts alive now)."""

    async def read(session: Session) -> dict[str, Any]:
        kvs, _ = await session.get_prefix(f"{prefix}status/".encode())
        hosts: dict[str, Any] = {}
        for kv in kvs:
            name = kv.key.decode("utf-8", "replace").rsplit("/", 1)[-1]
            try:
                hosts[name] = json.loads(kv.value)
            except ValueError:
                hosts[name] = {"error": "unreadable status"}
        return hosts

    return await with_any_member(connection, read)


async def with_any_member(
    connection: Connection, call: Callable[[Session], Awaitable[T]], rpc_timeout: float = 2.0
) -> T:
    """`call` with a session of its own, tried on each member of the cluster until one
    answers."""
    # Imported here: the etcd client (gRPC) is loaded only by the commands that use it.
    from taskforce.fleet.session import EtcdUnavailableError, Session

    session = Session(connection, rpc_timeout)
    try:
        for attempt in range(len(connection.endpoints)):
            try:
                return await call(session)
            except EtcdUnavailableError as exc:
                if attempt + 1 == len(connection.endpoints):
                    raise OSError(str(exc)) from None
        raise OSError("no etcd endpoint")  # a connection always has one
    finally:
        await session.close()
