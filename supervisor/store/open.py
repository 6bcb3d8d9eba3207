"""A whole store: its parts assembled into :class:`Store`, and :func:`open_store` by URL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from shared import Keys, StoreUnavailable
from shared.redis_urls import is_cluster_url, redis_client, store_prefix
from supervisor.store.admission import Admission
from supervisor.store.events import EventLog
from supervisor.store.index import JobIndex
from supervisor.store.maintenance import Maintenance
from supervisor.store.queue import DispatchQueue
from supervisor.store.usage import UsageLedger

CLUSTER_SHARDS = 64
"""Shards on a Redis Cluster unless told otherwise: each a slot of its own, at random over
the masters. 64 spread them about evenly (the prefix ``fleet`` on 3 masters: 21, 22 and 21;
16 gave 4, 5 and 7), and cost a supervisor one pipelined read of 64 streams per take."""
START_WAIT_S = 1.0
"""How long the start waits for the store's first answer before serving without it."""


class Store(JobIndex, DispatchQueue, EventLog, Maintenance, Admission, UsageLedger):
    """Job store over a Redis-protocol client. Use :func:`open_store` to get one.

    Job records and their indexes (:class:`JobIndex` over :class:`JobRecords`), the
    dispatch queue, the event logs, the janitor and the per-tenant limits, over one
    :class:`StoreBase`.
    """


@asynccontextmanager
async def open_store(
    url: str,
    keys: Keys | None = None,
    *,
    retention_s: int = 7 * 86_400,
    idempotency_ttl_s: int = 86_400,
    max_connections: int = 256,
    watch_connections: int = 64,
    shards: int | None = None,
) -> AsyncIterator[Store]:
    """Open the store named by ``url`` (``memory://``, ``redis://...`` or
    ``redis+cluster://host:port,...``). On Redis, event watchers read through a pool of their
    own (``watch_connections``). On a cluster the keys' prefix is hash-tagged (see
    :mod:`shared.redis_urls`). ``shards``: how many shards new jobs go to (None: ``keys``'s
    own count, or :data:`CLUSTER_SHARDS` on a cluster; one process needs none, so
    ``memory://`` has one)."""
    keys = keys or Keys()
    if shards is None:
        shards = CLUSTER_SHARDS if is_cluster_url(url) and keys.shards == 1 else keys.shards
    keys = Keys(keys.prefix, 1 if url.startswith("memory://") else shards)
    client: Any
    watch: Any = None
    if is_cluster_url(url):
        keys = Keys(store_prefix(url, keys.prefix), keys.shards)
        client = _cluster(url, max_connections)
        watch = _cluster(url, watch_connections)
    elif url.startswith("memory://"):
        from burner_redis import BurnerRedis

        client = BurnerRedis()
    elif url.startswith(("redis://", "rediss://", "unix://")):
        # Blocking reads are capped at MAX_BLOCK_MS, well inside the socket timeout, so a
        # silent connection is detected and a long wait is a loop of short ones.
        # A blocking pool: at the cap a command waits for a free connection instead of
        # failing with "Too many connections" (the default pool's answer).
        # Two quick retries on a connection error: after a Redis restart every pooled
        # connection is dead, and the first command on each would otherwise fail although
        # Redis is back. (A command whose reply was lost may run twice: the scripts are safe
        # to repeat — submissions are keyed, transitions check the status and the fence.)
        # from_pool: the client owns the pool, so closing the store disconnects every pooled
        # connection (Redis(connection_pool=pool) would leave them open for the GC to find).
        client = aioredis.Redis.from_pool(_pool(url, max_connections))
        watch = aioredis.Redis.from_pool(_pool(url, watch_connections))
    else:
        raise ValueError(
            f"unsupported store URL {url!r}: use memory://, redis://host:port/db or "
            "redis+cluster://host:port,host:port"
        )
    store = Store(
        client,
        keys,
        retention_s=retention_s,
        idempotency_ttl_s=idempotency_ttl_s,
        watch_client=watch,
    )
    try:
        # Start anyway when the store is out: its health logs one warning, /readyz says 503
        # with the reason, requests get 503, and the loops retry with backoff until it answers
        # (intake creates the group then). A store that accepts connections but never answers
        # would hold the start for its timeouts and retries: it gets START_WAIT_S.
        try:
            async with asyncio.timeout(START_WAIT_S):
                await store.ensure_group()
        except StoreUnavailable:
            pass
        except TimeoutError:
            store.health.failed(f"no answer from the store within {START_WAIT_S} s at start")
        yield store
    finally:
        await store._tails.close()
        for each in (client, watch) if watch is not None else (client,):
            closer = getattr(each, "aclose", None) or each.close
            result = closer()
            if hasattr(result, "__await__"):
                await result


def _cluster(url: str, max_connections: int) -> Any:
    """A cluster client: ``max_connections`` per node; the same timeouts and quick retries as
    a single server's pool (it also follows MOVED/ASK and a failover's new master)."""
    return redis_client(
        url,
        max_connections=max_connections,
        socket_connect_timeout=5,
        socket_timeout=10,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
    )


def _pool(url: str, max_connections: int) -> aioredis.BlockingConnectionPool:
    return aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=10,
        socket_connect_timeout=5,
        socket_timeout=10,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
    )
