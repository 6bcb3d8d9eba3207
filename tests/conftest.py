"""Shared fixtures: the real Redis under a private key prefix, with a TTL-leak check."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

os.environ.setdefault("FASTMCP_CHECK_FOR_UPDATES", "off")
os.environ.setdefault("FASTMCP_SHOW_SERVER_BANNER", "false")

import pytest
import redis.asyncio as aioredis

REDIS_URL = os.environ.get("FLEET_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRE_REDIS = os.environ.get("FLEET_REQUIRE_REDIS") == "1"

# Keys that are permanent records by design (shared/keys.py); any other key must carry a TTL.
PERMANENT_SUFFIXES = (":jobs", ":queue", ":queued", ":dead")


async def _redis_available() -> bool:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        return bool(await client.ping())
    except Exception:
        return False
    finally:
        await client.aclose()


@pytest.fixture
async def redis_url() -> str:
    """The real Redis. Skipped when absent, unless CI demands it (FLEET_REQUIRE_REDIS=1)."""
    if not await _redis_available():
        if REQUIRE_REDIS:
            pytest.fail(f"Redis required at {REDIS_URL} but unreachable")
        pytest.skip(f"no Redis at {REDIS_URL}")
    return REDIS_URL


@pytest.fixture
async def key_prefix(redis_url: str) -> AsyncIterator[str]:
    """A private key prefix on the shared Redis; fails the test if a key leaks without a TTL.

    Keys of ``job:*`` records are exempt while the job is unfinished (they get their TTL at
    the end), so the check looks only at keys that should always have one.
    """
    prefix = f"fleet-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        leaked = []
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for key in keys:
            if key.endswith(PERMANENT_SUFFIXES) or ":job:" in key:
                continue
            if await client.ttl(key) == -1:
                leaked.append(key)
        if keys:
            await client.delete(*keys)
        assert not leaked, f"keys without TTL leaked: {leaked}"
    finally:
        await client.aclose()
