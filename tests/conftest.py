"""Shared fixtures: the real Redis under a private key prefix, with a TTL-leak check."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

os.environ.setdefault("FASTMCP_CHECK_FOR_UPDATES", "off")
os.environ.setdefault("FASTMCP_SHOW_SERVER_BANNER", "false")

import pytest
import redis

from shared.keys import STATUS_ORDER

REDIS_URL = os.environ.get("FLEET_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRE_REDIS = os.environ.get("FLEET_REQUIRE_REDIS") == "1"

# Keys that are permanent records by design (shared/keys.py); any other key must carry a TTL.
PERMANENT_SUFFIXES = (
    ":jobs",
    ":queue",
    ":queued",
    ":dead",
    ":by_status_built",
    ":ids",
    ":ids:built",
)
PERMANENT_SUFFIXES += tuple(f":jobs:{status}" for status in STATUS_ORDER)  # status indexes


def _redis_available() -> bool:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


@pytest.fixture
def redis_url() -> str:
    """The real Redis. Skipped when absent, unless CI demands it (FLEET_REQUIRE_REDIS=1)."""
    if not _redis_available():
        if REQUIRE_REDIS:
            pytest.fail(f"Redis required at {REDIS_URL} but unreachable")
        pytest.skip(f"no Redis at {REDIS_URL}")
    return REDIS_URL


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    """A private key prefix on the shared Redis; fails the test if a key leaks without a TTL.

    Job records (``:job:``) are exempt: an unfinished job is a permanent record until it
    ends, when it gets its retention TTL (the store contract tests check that TTL).
    """
    prefix = f"fleet-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        keys = list(client.scan_iter(match=f"{prefix}[:.]*", count=1000))  # shards: prefix.N
        leaked = [
            key
            for key in keys
            if not key.endswith(PERMANENT_SUFFIXES) and ":job:" not in key and client.ttl(key) == -1
        ]
        if keys:
            client.delete(*keys)
        assert not leaked, f"keys without TTL leaked: {leaked}"
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[str]:
    """A real 3-master Redis Cluster on loopback for the whole session (started on first
    use): its ``redis+cluster://`` URL. Fails with the reason when it cannot be started."""
    from bench.cluster import RedisClusterProcs

    with RedisClusterProcs(masters=3) as cluster:
        yield cluster.url


@pytest.fixture
def cluster_prefix(redis_cluster: str) -> Iterator[str]:
    """A private key prefix on the session's cluster; its keys are deleted afterwards (on
    every master: the shards' keys, ``{prefix.N}:…``, spread over them)."""
    import redis.cluster

    from shared.redis_urls import cluster_nodes

    prefix = f"fleet-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    (host, port), *_ = cluster_nodes(redis_cluster)[0]
    client = redis.cluster.RedisCluster(host=host, port=port)
    try:
        keys = list(client.scan_iter(match="{" + prefix + "[}.]*", count=1000))
        for key in keys:
            client.delete(key)
    finally:
        client.close()


@pytest.fixture
def spans() -> Iterator[Any]:
    """Tracing on, into an in-memory exporter, for one test; the process is untraced again
    after it (tests that pass trace ids in assert on them as sent)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.util._once import Once

    from shared import configure_tracing

    exporter = InMemorySpanExporter()
    configure_tracing("fleet-test", exporter=exporter)
    yield exporter
    # OpenTelemetry sets its global provider once per process: put the no-op one back (the
    # fleet's own tracers follow the global provider: shared.telemetry.tracer).
    trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]
    trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]
