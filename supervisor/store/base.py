"""The store's client plumbing, shared by every part: commands, pipelines, scripts, wake-ups."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ClusterDownError, RedisClusterException, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared import Event, Job, Keys, StoreUnavailable
from shared.keys import shard_of
from supervisor.store import lua
from supervisor.store.batch import ScriptBatch
from supervisor.store.embedded import EmbeddedScripts
from supervisor.store.health import StoreHealth
from supervisor.store.signals import Signals
from supervisor.store.tails import Tails


def changed_message(job_id: str, ended: bool, origin: str, queued: bool = False) -> str:
    """A ``changed`` message: the job, whether the write may have ended it (``ended``) or
    queued it (``queued``: wakes the takers of a sharded store), and the writer (its own
    messages come back to it; it has woken its watchers already)."""
    return f"{job_id} {'ended' if ended else 'queued' if queued else '-'} {origin}"


QUEUEING = frozenset({"SUBMIT", "REQUEUE"})
"""The scripts that add to the dispatch queue."""

PING_TIMEOUT_S = 2.0
"""How long ``/readyz`` waits for the store (a kubelet's probe gives up after 1 s by default,
Docker's healthcheck after 30 s)."""
OUTAGE_ERRORS = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    ClusterDownError,
    RedisClusterException,  # e.g. "Redis Cluster cannot be connected": no node answers
)
"""What says the store is out (an error reply, such as ``WRONGTYPE``, is an answer)."""


RESERVED_CONNECTIONS = 4
"""Connections of a cluster node's pool kept out of the store's gate: the ``changed`` and
``cancel`` subscriptions hold theirs for good."""


def _pool_size(client: Any) -> int | None:
    """How many connections ``client`` opens at most (per node on a cluster), if it says."""
    if isinstance(client, RedisCluster):
        size = client.nodes_manager.connection_kwargs.get("max_connections")
    else:
        size = getattr(getattr(client, "connection_pool", None), "max_connections", None)
    return size if isinstance(size, int) else None


def parse_changed(message: str) -> tuple[str, str, str]:
    """The job, what the write may have done (``ended``, ``queued`` or ``-``), the writer."""
    job_id, _, rest = message.partition(" ")
    what, _, origin = rest.partition(" ")
    return job_id, what, origin


class StoreBase:
    """A Redis-protocol client (Redis or burner-redis), its keys and the atomic scripts."""

    def __init__(
        self,
        client: Any,
        keys: Keys,
        *,
        retention_s: int,
        idempotency_ttl_s: int,
        twins: bool | None = None,
        watch_client: Any = None,
    ):
        """``twins``: run the scripts' Python twins rather than their Lua (the default on the
        embedded engine, where they are faster; see :mod:`supervisor.store.embedded`). Only
        there: the twins are atomic within one process."""
        self._r = client
        self._watch_r = watch_client if watch_client is not None else client
        """What watchers read by (event logs for SSE): a pool apart from dispatch's on Redis,
        so a crowd of watchers cannot make jobs wait for a connection."""
        size = _pool_size(watch_client)
        self._watch_gate = asyncio.Semaphore(size) if size is not None else None
        """Watchers beyond the pool's size wait here, in turn, rather than in redis-py's
        pool: under a crowd (2,000 streams opened at once) its waiters lost wake-ups on
        Python 3.11 and gave up after its 10 s timeout, ending streams mid-response."""
        size = _pool_size(client) if isinstance(client, RedisCluster) else None
        self._gate: asyncio.Semaphore | contextlib.nullcontext[None] = (
            asyncio.Semaphore(max(1, size - RESERVED_CONNECTIONS))
            if size is not None
            else contextlib.nullcontext()
        )
        """On a cluster, commands beyond the pool's size wait here: redis-py's cluster client
        does not wait for a free connection, it fails (``MaxConnectionsError``), so a burst of
        500 submissions answered 503. (A single server's pool waits by itself.)"""
        if keys.shards > 1 and self.embedded_client(client):  # one process needs no shards
            keys = Keys(keys.prefix)
        self.keys = keys
        self._sharded = keys.shards > 1
        self._next_shard = 0
        self._dirty: set[int] = set()
        """Shards a job was queued in since the take last read them (a sharded store)."""
        self._full_pass_at = 0.0
        """When the take next reads every shard's queue (a sharded store)."""
        self._estimates: dict[tuple[str, str | None], list[float]] = {}
        """(capability, capability@tenant) → [read at, queued, the tenant's queued]: a
        sharded store's last reading of its queue counts, plus the submissions made here since
        (:meth:`~supervisor.store.jobs.JobRecords._over_limit`)."""
        self._estimate_reads: dict[tuple[str, str | None], asyncio.Lock] = {}
        """One reading of the counts at a time per (capability, capability@tenant)."""
        self.retention_s = retention_s
        self.idempotency_ttl_s = idempotency_ttl_s
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.embedded = self.embedded_client(client)
        self.health = StoreHealth()
        """Up, or since when and why not: one warning per outage, not per try."""
        self._signals = Signals()
        self._tails = Tails(self._read_events, self._signals)
        twins = self.embedded if twins is None else twins
        if twins and not self.embedded:
            raise ValueError("the scripts' Python twins run on the embedded engine only")
        self._twins = EmbeddedScripts(client) if twins else None
        self._queue_grew = asyncio.Event()
        """Set by a write that queued a job, on the engine: its takers wait on this rather than
        on the engine's blocking read, which wakes late (p50 0.47 ms, p90 2.1 ms measured).
        On a sharded store, also by other replicas' ``changed`` messages that say ``queued``
        (no blocking read spans shards)."""
        self._scripts: dict[str, Any] = {} if twins else lua.register(client)
        self._waking: dict[str, Any] = {}
        self._batch: ScriptBatch | None = None
        if not twins and not self.embedded:
            self._waking = lua.register(client, wake=True)
        if not twins and isinstance(client, aioredis.Redis):  # a cluster: no batches (below)
            self._batch = ScriptBatch(client)

    def _queued(self, job_id: str | None) -> None:
        """A job was queued (here, or by another replica): wake the takers, and on a sharded
        store have them read its shard."""
        if self._sharded and job_id is not None:
            self._dirty.add(shard_of(job_id))
        self._queue_grew.set()

    @staticmethod
    def embedded_client(client: Any) -> bool:
        return not isinstance(client, aioredis.Redis | RedisCluster)

    @property
    def client(self) -> Any:
        return self._r

    def _failed(self, exc: BaseException) -> StoreUnavailable:
        """The error to raise for ``exc``, told to :attr:`health` when it is an outage."""
        if isinstance(exc, OUTAGE_ERRORS):
            self.health.failed(exc)
        return StoreUnavailable(f"store unavailable: {exc}")

    def _answered(self) -> None:
        if self.health.outage is not None:
            self.health.answered()

    def _pipeline(self) -> Any:
        """A pipeline of plain commands (no MULTI on Redis; the engine has no such option)."""
        return self._r.pipeline() if self.embedded else self._r.pipeline(transaction=False)

    async def _run_pipeline(self, fill: Callable[[Any], object]) -> list[Any]:
        """Queue commands with ``fill(pipe)`` and run them; the pipeline is always released
        (a failed one on Redis would otherwise keep its connection until collected)."""
        pipe = self._pipeline()
        fill(pipe)
        try:
            async with self._gate:
                out = list(await pipe.execute())
        except (RedisError, OSError) as exc:
            raise self._failed(exc) from exc
        finally:
            reset = getattr(pipe, "reset", None)
            if reset is not None:
                await reset()
        self._answered()
        return out

    async def _call(self, method: str, *args: Any, _watch: bool = False, **kwargs: Any) -> Any:
        """One command (``_watch``: on the watchers' connections)."""
        if not _watch:
            async with self._gate:
                return await self._call_on(self._r, method, *args, **kwargs)
        if self._watch_gate is None:
            return await self._call_on(self._watch_r, method, *args, **kwargs)
        async with self._watch_gate:
            return await self._call_on(self._watch_r, method, *args, **kwargs)

    async def _call_on(self, client: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            out = await getattr(client, method)(*args, **kwargs)
        except (RedisError, OSError) as exc:
            raise self._failed(exc) from exc
        self._answered()
        return out

    async def _script(
        self,
        name: str,
        keys: list[str],
        args: list[str],
        *,
        job_id: str | None = None,
        ends: bool = False,
        ended: Job | None = None,
    ) -> Any:
        """Run one of the atomic scripts: EVALSHA, or its Python twin on the engine; then
        wake whoever watches ``job_id`` (here directly, elsewhere through ``changed``); ``ends``:
        the write may end the job, so whoever waits for its end wakes too, and is handed
        ``ended`` (the job as written) when the script wrote (answered a seq, not a refusal)."""
        try:
            if self._twins is not None:
                out = await self._twins.run(name, keys, args)
            elif self._batch is not None and job_id is None:  # no one to wake: a lease
                out = await self._batch.run(self._scripts[name], keys, args)
            elif job_id is None or self.embedded:  # the engine has no other replicas to wake
                async with self._gate:
                    out = await self._scripts[name](keys=keys, args=args)
            else:  # script and wake-up in one round trip
                async with self._gate:
                    out = await self._script_and_wake(name, keys, args, job_id, ends)
        except (RedisError, OSError) as exc:
            raise self._failed(exc) from exc
        self._answered()
        if (self.embedded or self._sharded) and name in QUEUEING:
            self._queued(job_id)
        if job_id is not None:
            wrote = ended is not None and isinstance(out, int) and out >= 0
            self._signals.notify(job_id, ended=ends, job=ended if wrote else None)
        return out

    async def _script_and_wake(
        self, name: str, keys: list[str], args: list[str], job_id: str, ends: bool
    ) -> Any:
        """The script and the wake-up of other replicas' watchers in one command: its
        :func:`~supervisor.store.lua.waking` form publishes on the ``changed`` channel itself.
        Sent with the other writes of this turn of the event loop (:mod:`.batch`), as plain
        EVALSHAs: redis-py's ``Script`` asks ``SCRIPT EXISTS`` before every pipelined
        execution."""
        message = changed_message(job_id, ends, self.consumer, queued=name in QUEUEING)
        extra = [self.keys.changed_channel, message]
        if self._batch is None:  # a cluster: one EVALSHA (its pipelines split by node)
            return await self._waking[name](keys=keys, args=[*args, *extra])
        return await self._batch.run(self._waking[name], keys, [*args, *extra])

    async def _read_events(self, job_id: str, after: int, count: int) -> list[Event]:
        raise NotImplementedError  # the event log's (supervisor.store.events)

    async def ping(self, timeout_s: float = PING_TIMEOUT_S) -> bool:
        """Whether the store answers within ``timeout_s`` (a probe must not hang on a store
        that accepts connections and never answers)."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._call("exists", self.keys.queue)  # shard 0's
            return True
        except StoreUnavailable:
            return False
        except TimeoutError:
            self.health.failed(f"no answer from the store within {timeout_s} s")
            return False
