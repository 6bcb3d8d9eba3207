"""Idempotency keys: a call whose key already succeeded replays the stored result; a
concurrent duplicate waits for the first call instead of running twice.

Two stores with one interface: :class:`MemoryIdempotency` (one process) and
:class:`RedisIdempotency` (shared by replicas). Redis keys come from :class:`shared.keys.Keys`:

- ``{p}:wdone:{service}:{key}`` the stored successful result (TTL ``idempotency_ttl_s``);
- ``{p}:wlock:{service}:{key}`` the in-progress marker (``SET NX`` with a TTL that the
  running call renews, so a crashed worker's marker lapses and a duplicate may run).

Only successes are stored: a failed call releases its marker and the next attempt runs.
Reusing a key with *different* arguments is refused (``IDEMPOTENCY_CONFLICT``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import redis.asyncio as aioredis
from fastmcp.tools.base import ToolResult
from mcp_types import ContentBlock
from pydantic import TypeAdapter
from redis.exceptions import RedisError

from shared.keys import Keys
from shared.logs import get_logger
from workers.kit.errors import IDEMPOTENCY_CONFLICT, UNAVAILABLE, tool_error

__all__ = [
    "IdempotencyStore",
    "MemoryIdempotency",
    "RedisIdempotency",
    "args_digest",
    "run_once",
]

_log = get_logger("workers.kit.idempotency")
_CONTENT = TypeAdapter(list[ContentBlock])

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


def args_digest(tool: str, arguments: dict[str, Any]) -> str:
    raw = json.dumps([tool, arguments], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


def encode_result(result: ToolResult, digest: str) -> str:
    return json.dumps(
        {
            "digest": digest,
            "content": _CONTENT.dump_python(result.content, mode="json", by_alias=True),
            "structured": result.structured_content,
        }
    )


def decode_result(raw: str) -> tuple[str, ToolResult]:
    data = json.loads(raw)
    content = _CONTENT.validate_python(data["content"])
    return data["digest"], ToolResult(content=content, structured_content=data["structured"])


class IdempotencyStore(Protocol):
    backend: str

    async def get(self, key: str) -> str | None: ...
    async def claim(self, key: str) -> str | None:
        """Take the in-progress marker; a token when taken, ``None`` when another holds it."""

    async def renew(self, key: str, token: str) -> None: ...
    async def release(self, key: str, token: str) -> None: ...
    async def put(self, key: str, value: str) -> None: ...
    async def wait_change(self, key: str, timeout: float) -> None:
        """Return when the marker may have gone, or after ``timeout``."""


class MemoryIdempotency:
    """In-process store: bounded, with TTL; waiters are woken by an event."""

    backend = "memory"

    def __init__(self, ttl_s: float, *, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._done: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._locks: dict[str, tuple[str, asyncio.Event]] = {}

    async def get(self, key: str) -> str | None:
        item = self._done.get(key)
        if item is None:
            return None
        if item[0] < time.monotonic():
            del self._done[key]
            return None
        return item[1]

    async def claim(self, key: str) -> str | None:
        if key in self._locks:
            return None
        token = secrets.token_hex(8)
        self._locks[key] = (token, asyncio.Event())
        return token

    async def renew(self, key: str, token: str) -> None:
        return None

    async def release(self, key: str, token: str) -> None:
        held = self._locks.get(key)
        if held is not None and held[0] == token:
            del self._locks[key]
            held[1].set()

    async def put(self, key: str, value: str) -> None:
        self._done[key] = (time.monotonic() + self.ttl_s, value)
        self._done.move_to_end(key)
        while len(self._done) > self.max_entries:
            self._done.popitem(last=False)

    async def wait_change(self, key: str, timeout: float) -> None:
        held = self._locks.get(key)
        if held is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(held[1].wait(), timeout)


class RedisIdempotency:
    """Shared store on Redis; the marker's TTL is renewed while the call runs."""

    backend = "redis"

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        service: str,
        *,
        ttl_s: int,
        lock_ttl_s: float = 60.0,
    ) -> None:
        self.client = client
        self.keys = keys
        self.service = service
        self.ttl_s = ttl_s
        self.lock_ttl_ms = int(lock_ttl_s * 1000)

    async def get(self, key: str) -> str | None:
        value = await self.client.get(self.keys.worker_done(self.service, key))
        return value.decode() if isinstance(value, bytes) else value

    async def claim(self, key: str) -> str | None:
        token = secrets.token_hex(8)
        lock = self.keys.worker_lock(self.service, key)
        taken = await self.client.set(lock, token, nx=True, px=self.lock_ttl_ms)
        return token if taken else None

    async def renew(self, key: str, token: str) -> None:
        lock = self.keys.worker_lock(self.service, key)
        await self.client.eval(_RENEW, 1, lock, token, str(self.lock_ttl_ms))  # type: ignore[misc]  # redis stubs type eval as sync|async

    async def release(self, key: str, token: str) -> None:
        lock = self.keys.worker_lock(self.service, key)
        await self.client.eval(_RELEASE, 1, lock, token)  # type: ignore[misc]  # as above

    async def put(self, key: str, value: str) -> None:
        await self.client.set(self.keys.worker_done(self.service, key), value, ex=self.ttl_s)

    async def wait_change(self, key: str, timeout: float) -> None:
        # Polling is enough here: duplicates are rare and the wait is bounded by the caller.
        await asyncio.sleep(min(timeout, 0.05))

    @property
    def renew_every_s(self) -> float:
        return self.lock_ttl_ms / 3000


@contextlib.asynccontextmanager
async def _renewing(store: IdempotencyStore, key: str, token: str) -> AsyncIterator[None]:
    every = getattr(store, "renew_every_s", None)
    if every is None:
        yield
        return

    async def loop() -> None:
        while True:
            await asyncio.sleep(every)
            with contextlib.suppress(RedisError):
                await store.renew(key, token)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def run_once(
    store: IdempotencyStore,
    key: str,
    digest: str,
    run: Callable[[], Awaitable[ToolResult]],
) -> tuple[ToolResult, bool]:
    """Run ``run`` at most once per ``key``; returns ``(result, replayed)``."""
    try:
        token = None
        while token is None:
            stored = await store.get(key)
            if stored is not None:
                return _replay(stored, digest), True
            token = await store.claim(key)
            if token is None:
                await store.wait_change(key, 1.0)
            elif (stored := await store.get(key)) is not None:
                # The first call finished between our get and claim.
                await store.release(key, token)
                return _replay(stored, digest), True
    except RedisError as exc:
        raise _unavailable() from exc
    try:
        async with _renewing(store, key, token):
            result = await run()
        try:
            await store.put(key, encode_result(result, digest))
        except RedisError as exc:
            # The work is done: hand back its result; only a later duplicate may re-run it.
            _log.warning("idempotency.store_failed", error=str(exc))
        return result, False
    finally:
        with contextlib.suppress(RedisError):
            await asyncio.shield(store.release(key, token))


def _replay(stored: str, digest: str) -> ToolResult:
    stored_digest, result = decode_result(stored)
    if stored_digest != digest:
        raise tool_error(
            IDEMPOTENCY_CONFLICT,
            "this idempotency key was already used with different arguments",
            field="_meta.idempotency_key",
            hint="Use a new idempotency key for a different request.",
        )
    return result


def _unavailable() -> Exception:
    return tool_error(
        UNAVAILABLE,
        "the idempotency store (Redis) is unreachable",
        hint="Retry shortly, or call another replica.",
        retryable=True,
    )
