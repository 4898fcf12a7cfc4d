"""One connection to an etcd cluster, shared by the fleet's parts, as typed operations.

The protocol is aetcd's (asyncio over gRPC). This module is the only one that touches
it: it opens the channel itself (aetcd only knows one plaintext endpoint; etcd clusters
have several, often behind TLS), and turns every failure into :class:`EtcdUnavailableError`.
A failed call moves the session on to the next endpoint, so one member down costs one
failed call. The outage of the whole cluster is logged once, and its end once.

gRPC is imported here, so only in fleet mode: it costs about 20 MB of memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

# Before gRPC loads: it reads its fork setting then.
from taskforce.fleet.grpc_fork import FORK_ENV as FORK_ENV
from taskforce.fleet.grpc_fork import FORK_ENV_MARK as FORK_ENV_MARK
from taskforce.fleet.grpc_fork import FORK_ENV_OURS as FORK_ENV_OURS

# isort: split
import aetcd  # type: ignore[import-untyped]
import grpc  # type: ignore[import-untyped]
from aetcd import rpc

from taskforce.fleet.urls import Connection

log = logging.getLogger("taskforce.fleet")

T = TypeVar("T")


class EtcdUnavailableError(Exception):
    """etcd did not answer (in time), or the connection broke."""


@dataclass(frozen=True, slots=True)
class KV:
    key: bytes
    value: bytes
    mod_revision: int
    lease: int


@dataclass(frozen=True, slots=True)
class Event:
    deleted: bool
    kv: KV


class _Client(aetcd.Client):  # type: ignore[misc]
    """aetcd's client on a channel of our making: TLS, and leader-required metadata.

    `connect` mirrors aetcd 1.x's (the attributes it sets are what its methods use).
    """

    def __init__(self, target: str, connection: Connection, timeout: float) -> None:
        super().__init__(username=connection.user, password=connection.password, timeout=timeout)
        self._target = target
        self._tls = connection

    async def connect(self) -> None:
        if self._connected.is_set():
            return
        options = [
            # A proxy meant for the web must not carry cluster traffic.
            ("grpc.enable_http_proxy", 0),
            ("grpc.initial_reconnect_backoff_ms", 250),
            ("grpc.max_reconnect_backoff_ms", 2000),
        ]
        if self._tls.tls:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(self._tls.cacert),
                private_key=_read(self._tls.key),
                certificate_chain=_read(self._tls.cert),
            )
            self.channel = grpc.aio.secure_channel(self._target, credentials, options=options)
        else:
            self.channel = grpc.aio.insecure_channel(self._target, options=options)
        # A member cut off from the others must end our watches rather than go quiet.
        metadata: tuple[tuple[str, str], ...] = (("hasleader", "true"),)
        try:
            if self._username is not None:
                self.auth_stub = rpc.AuthStub(self.channel)
                reply = await self.auth_stub.Authenticate(
                    rpc.AuthenticateRequest(name=self._username, password=self._password),
                    timeout=self._timeout,
                )
                metadata += (("token", reply.token),)
        except BaseException:
            await self.channel.close()
            self._init_channel_attrs()
            raise
        self.metadata = metadata
        self.kvstub = rpc.KVStub(self.channel)
        self.clusterstub = rpc.ClusterStub(self.channel)
        self.leasestub = rpc.LeaseStub(self.channel)
        self.maintenancestub = rpc.MaintenanceStub(self.channel)
        self._watcher = aetcd.Watcher(
            rpc.WatchStub(self.channel), timeout=self._timeout, metadata=metadata
        )
        self._connected.set()


def _read(path: str | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as f:
        return f.read()


class Session:
    """Typed etcd operations over one connection, failing over between endpoints."""

    def __init__(self, connection: Connection, rpc_timeout: float = 2.0) -> None:
        self.connection = connection
        self.rpc_timeout = rpc_timeout
        self._index = 0
        self._client: _Client | None = None
        # Failed calls since the last success: a full round of endpoints is an outage.
        self._failures = 0
        self._outage = False
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def endpoint(self) -> str:
        host, port = self.connection.endpoints[self._index]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def outage(self) -> bool:
        return self._outage

    # ----- key-value ----------------------------------------------------------------------

    async def get(self, key: bytes) -> tuple[KV | None, int]:
        """The key (None if absent) and the store's revision."""
        client = await self._connected()
        reply = await self._call(
            client,
            lambda: client.kvstub.Range(
                rpc.RangeRequest(key=key), timeout=self.rpc_timeout, metadata=client.metadata
            ),
        )
        kv = _kv(reply.kvs[0]) if reply.kvs else None
        return kv, int(reply.header.revision)

    async def get_prefix(self, prefix: bytes) -> tuple[list[KV], int]:
        client = await self._connected()
        reply = await self._call(
            client,
            lambda: client.kvstub.Range(
                rpc.RangeRequest(key=prefix, range_end=_prefix_end(prefix)),
                timeout=self.rpc_timeout,
                metadata=client.metadata,
            ),
        )
        return [_kv(kv) for kv in reply.kvs], int(reply.header.revision)

    async def put(self, key: bytes, value: bytes, lease: int = 0) -> int:
        client = await self._connected()
        reply = await self._call(
            client,
            lambda: client.kvstub.Put(
                rpc.PutRequest(key=key, value=value, lease=lease),
                timeout=self.rpc_timeout,
                metadata=client.metadata,
            ),
        )
        return int(reply.header.revision)

    async def delete_if_older(self, key: bytes, revision: int) -> bool:
        """Delete the key if it was last written before `revision` (0: in any case)."""
        client = await self._connected()
        delete = rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key))
        older = rpc.Compare(
            key=key, result=rpc.Compare.LESS, target=rpc.Compare.MOD, mod_revision=revision
        )
        request = rpc.TxnRequest(compare=[older] if revision else [], success=[delete])
        reply = await self._call(
            client,
            lambda: client.kvstub.Txn(request, timeout=self.rpc_timeout, metadata=client.metadata),
        )
        return bool(reply.succeeded)

    async def create(self, key: bytes, value: bytes, lease: int) -> tuple[bool, KV | None, int]:
        """Put the key only if it does not exist: (created, the holder's kv, revision)."""
        client = await self._connected()
        absent = rpc.Compare(
            key=key, result=rpc.Compare.EQUAL, target=rpc.Compare.CREATE, create_revision=0
        )
        request = rpc.TxnRequest(
            compare=[absent],
            success=[rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value, lease=lease))],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=key))],
        )
        reply = await self._call(
            client,
            lambda: client.kvstub.Txn(request, timeout=self.rpc_timeout, metadata=client.metadata),
        )
        revision = int(reply.header.revision)
        if reply.succeeded:
            return True, None, revision
        kvs = reply.responses[0].response_range.kvs
        return False, (_kv(kvs[0]) if kvs else None), revision

    async def delete_if_lease(self, key: bytes, lease: int) -> bool:
        """Delete the key if it is still held under `lease`."""
        client = await self._connected()
        ours = rpc.Compare(key=key, result=rpc.Compare.EQUAL, target=rpc.Compare.LEASE, lease=lease)
        request = rpc.TxnRequest(
            compare=[ours],
            success=[rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key))],
        )
        reply = await self._call(
            client,
            lambda: client.kvstub.Txn(request, timeout=self.rpc_timeout, metadata=client.metadata),
        )
        return bool(reply.succeeded)

    # ----- leases -------------------------------------------------------------------------

    async def grant(self, ttl: int) -> tuple[int, int]:
        """A new lease: (its id, the TTL etcd granted)."""
        client = await self._connected()
        reply = await self._call(
            client,
            lambda: client.leasestub.LeaseGrant(
                rpc.LeaseGrantRequest(TTL=ttl), timeout=self.rpc_timeout, metadata=client.metadata
            ),
        )
        return int(reply.ID), int(reply.TTL)

    async def keepalive(self, lease: int) -> int:
        """Renew the lease; its TTL from now, 0 if it has expired."""
        client = await self._connected()

        async def renew() -> int:
            stream = client.leasestub.LeaseKeepAlive(
                iter([rpc.LeaseKeepAliveRequest(ID=lease)]),
                timeout=self.rpc_timeout,
                metadata=client.metadata,
            )
            async for reply in stream:
                return int(reply.TTL)
            return 0

        return int(await self._call(client, renew))

    async def revoke(self, lease: int) -> None:
        client = await self._connected()
        await self._call(
            client,
            lambda: client.leasestub.LeaseRevoke(
                rpc.LeaseRevokeRequest(ID=lease), timeout=self.rpc_timeout, metadata=client.metadata
            ),
        )

    # ----- watching -----------------------------------------------------------------------

    async def watch(
        self, key: bytes, start_revision: int, *, prefix: bool = False
    ) -> AsyncIterator[Event]:
        """Events on the key (or prefix) from `start_revision` on.

        Ends only by raising EtcdUnavailableError (connection lost, history compacted): the
        caller reads the key again and watches from there.
        """
        client = await self._connected()
        range_end = _prefix_end(key) if prefix else None
        watch = await self._call(
            client, lambda: client.watch(key, range_end=range_end, start_revision=start_revision)
        )
        try:
            iterator = watch.__aiter__()
            while True:
                try:
                    event = await self._call(client, iterator.__anext__)
                except StopAsyncIteration:
                    raise EtcdUnavailableError("the watch ended") from None
                yield Event(event.kind == aetcd.EventKind.DELETE, _kv(event.kv))
        finally:
            if client is self._client:
                try:
                    await asyncio.wait_for(watch.cancel(), self.rpc_timeout)
                except Exception:  # the stream is gone anyway
                    log.debug("cancelling a watch failed", exc_info=True)

    # ----- connection -----------------------------------------------------------------

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await _close(client)
        if self._closing:
            await asyncio.wait(self._closing, timeout=self.rpc_timeout)

    async def _connected(self) -> _Client:
        if self._client is None:
            host, port = self.connection.endpoints[self._index]
            target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            self._client = _Client(target, self.connection, self.rpc_timeout)
        client = self._client
        try:
            await asyncio.wait_for(client.connect(), self.rpc_timeout)
        except Exception as exc:
            self._failed(client, exc)
            raise EtcdUnavailableError(str(exc) or type(exc).__name__) from exc
        self._check_current(client)
        return client

    def _check_current(self, client: _Client) -> None:
        """Refuse a connection that another caller's failure has replaced meanwhile.

        Such a connection is being closed in the background (see _failed): its stubs are
        gone, or going, and aetcd would quietly open a fresh channel on it for a watch,
        which nobody would ever close. Another part of the fleet (the lease, the
        election...) may fail it between any two awaits of ours.
        """
        if client is not self._client or client.kvstub is None:
            raise EtcdUnavailableError("the connection was closed after a failure")

    async def _call(self, client: _Client, call: Callable[[], Awaitable[T]]) -> T:
        """`call()` on `client`, every failure of any kind turned into EtcdUnavailableError.

        The call is made here rather than by the caller, so that what making it raises (a
        connection closed meanwhile has no stubs: AttributeError) is a failed call too:
        an exception of any other type would end the loop that follows a key, silently,
        and the host would never hear of the key again.
        """
        try:
            self._check_current(client)
            result = await call()
        except (StopAsyncIteration, EtcdUnavailableError):
            raise
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # we are being cancelled, not the call
            # gRPC cancels calls on a channel that closes under them.
            self._failed(client, None)
            raise EtcdUnavailableError("the connection was closed") from None
        except Exception as exc:
            if _answered(exc):
                self._succeeded()  # etcd is there; it refused (an expired lease, say)
            else:
                self._failed(client, exc)
            raise EtcdUnavailableError(_describe(exc)) from exc
        self._succeeded()
        return result

    def _succeeded(self) -> None:
        self._failures = 0
        if self._outage:
            self._outage = False
            log.warning("etcd is reachable again (%s)", self.endpoint)

    def _failed(self, client: _Client, exc: BaseException | None) -> None:
        if client is not self._client:
            return  # an older connection, already given up
        self._failures += 1
        reason = _describe(exc) if exc is not None else "connection closed"
        count = len(self.connection.endpoints)
        if self._failures >= count and not self._outage:
            self._outage = True
            log.warning(
                "etcd is unreachable (%s: %s): running on the last configuration, "
                "retrying with backoff",
                self.endpoint,
                reason,
            )
        else:
            log.debug("etcd member %s failed (%s)", self.endpoint, reason)
        # The next call tries the next member, on a fresh channel (a broken one can take
        # gRPC's own backoff, up to minutes, to try again).
        self._client = None
        self._index = (self._index + 1) % count
        closing = asyncio.get_running_loop().create_task(_close(client))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)


async def _close(client: _Client) -> None:
    try:
        await client.close()
    except Exception:  # closing a broken channel may complain; it is closed all the same
        log.debug("closing an etcd channel failed", exc_info=True)


def _kv(kv: Any) -> KV:
    return KV(bytes(kv.key), bytes(kv.value), int(kv.mod_revision), int(kv.lease))


def _prefix_end(prefix: bytes) -> bytes:
    """The end of the key range that holds every key starting with `prefix`."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"  # every key


# Errors that mean no answer came (rather than a refusal from a member that works).
_NO_ANSWER = frozenset(
    {"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "UNKNOWN", "INTERNAL", "ABORTED"}
)


def _answered(exc: BaseException) -> bool:
    cause = exc if isinstance(exc, grpc.aio.AioRpcError) else exc.__cause__
    return isinstance(cause, grpc.aio.AioRpcError) and cause.code().name not in _NO_ANSWER


def _describe(exc: BaseException) -> str:
    if isinstance(exc.__cause__, grpc.aio.AioRpcError):
        exc = exc.__cause__
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
