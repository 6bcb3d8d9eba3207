"""Idempotency keys: a call whose key already succeeded replays the stored result; a
concurrent duplicate waits for the first call instead of running twice.

Two stores with one interface: :class:`MemoryIdempotency` (one process) and
:class:`RedisIdempotency` (shared by replicas). Redis keys come from :class:`shared.keys.Keys`:

- ``{p}:wdone:{service}:{key}`` the stored successful result (TTL ``idempotency_ttl_s``);
- ``{p}:wlock:{service}:{key}`` the in-progress marker: ``SET NX`` with a :data:`LOCK_TTL_S`
  TTL that the running call renews every :data:`LOCK_RENEW_S`. The marker follows the
  worker's liveness: a killed worker stops renewing, its marker lapses within
  :data:`LOCK_TTL_S`, and a duplicate delivered to another replica then runs.

A renewal that finds the marker gone re-takes it when no other call holds it and no result
is stored (the worker stalled, nobody stepped in: nothing was lost). When another call holds
it, or a result is stored, the marker was lost: that is logged (``idempotency.lock_lost``)
and the running call is cancelled and answers ``UNAVAILABLE`` (retryable), so two runs do
not go on side by side; a retry with the same key waits for the other run and replays its
result. A renewal that cannot reach Redis is logged (``idempotency.renew_failed``) and tried
again at the next tick; the call keeps running, and the next renewal that gets through
decides as above.

Only successes are stored: a failed call releases its marker and the next attempt runs.
Reusing a key with *different* arguments is refused (``IDEMPOTENCY_CONFLICT``). A result over
``max_result_bytes`` is not stored (logged as ``idempotency.result_not_stored``), so a later
duplicate of that call runs again; the in-process store also keeps at most ``max_bytes`` of
results in all, dropping the least recently used. Both limits are ``WorkerSettings``
(``idempotency_max_result_bytes``, 8 MiB; ``idempotency_cache_bytes``, 64 MiB).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import time
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
    "LOCK_RENEW_S",
    "LOCK_TTL_S",
    "IdempotencyStore",
    "MemoryIdempotency",
    "RedisIdempotency",
    "args_digest",
    "run_once",
]

LOCK_TTL_S = 5.0
"""Seconds a Redis in-progress marker outlives its last renewal: how long a killed worker's
call blocks its duplicates. Long enough to ride out two missed renewals in a row."""
LOCK_RENEW_S = 1.5
"""Seconds between renewals of the marker by the running call (30 % of a shorter TTL)."""
_ENTRY_OVERHEAD_BYTES = 256
"""What one in-process entry costs beyond its key and value (dict slot, tuple, numbers), so
that many tiny results are bounded too."""

_log = get_logger("workers.kit.idempotency")
_CONTENT = TypeAdapter(list[ContentBlock])

# 1: renewed; 2: had lapsed and was free, so re-taken; 0: another call holds it or a result
# is stored (KEYS[2]), so it is lost.
_RENEW = """
local held = redis.call('get', KEYS[1])
if held == ARGV[1] then redis.call('pexpire', KEYS[1], ARGV[2]) return 1 end
if held == false and redis.call('exists', KEYS[2]) == 0 then
  redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
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

    @property
    def renew_every_s(self) -> float | None:
        """How often a running call renews its marker; ``None`` when markers never lapse."""

    async def get(self, key: str) -> str | None: ...
    async def claim(self, key: str) -> str | None:
        """Take the in-progress marker; a token when taken, ``None`` when another holds it."""

    async def renew(self, key: str, token: str) -> bool:
        """Keep the marker; ``False`` when it was lost to another call or a stored result."""

    async def release(self, key: str, token: str) -> None: ...
    async def put(self, key: str, value: str) -> None: ...
    async def wait_change(self, key: str, timeout: float) -> None:
        """Return when the marker may have gone, or after ``timeout``."""


class MemoryIdempotency:
    """In-process store, bounded in bytes (least recently used first out), with a TTL.

    Waiters are woken by an event; markers never lapse (they die with the process).

    >>> store = MemoryIdempotency(60, max_bytes=1 << 20, max_result_bytes=1 << 16)
    >>> store.bytes
    0
    """

    backend = "memory"
    renew_every_s = None

    def __init__(
        self,
        ttl_s: float,
        *,
        max_bytes: int,
        max_result_bytes: int,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self.max_result_bytes = max_result_bytes
        self.bytes = 0
        """What the stored results cost now, by the same measure as ``max_bytes``."""
        self._done: dict[str, str] = {}
        """Key -> ``"{expiry}|{result}"``, least recently used first. Strings only, so the
        garbage collector never walks it: a dict of tuples (or an OrderedDict) is walked at
        every full collection, and with the 100,000 results a busy worker keeps that made
        every call about 20 % dearer (measured: 0.99 → 1.23 ms of CPU a no-op call)."""
        self._locks: dict[str, tuple[str, asyncio.Event]] = {}

    def __len__(self) -> int:
        return len(self._done)

    async def get(self, key: str) -> str | None:
        item = self._done.pop(key, None)
        if item is None:
            return None
        expiry, _, value = item.partition("|")
        if float(expiry) < time.monotonic():
            self.bytes -= _size(key, value)
            return None
        self._done[key] = item  # the most recently used now
        return value

    async def claim(self, key: str) -> str | None:
        if key in self._locks:
            return None
        token = secrets.token_hex(8)
        self._locks[key] = (token, asyncio.Event())
        return token

    async def renew(self, key: str, token: str) -> bool:
        return True

    async def release(self, key: str, token: str) -> None:
        held = self._locks.get(key)
        if held is not None and held[0] == token:
            del self._locks[key]
            held[1].set()

    async def put(self, key: str, value: str) -> None:
        self._drop(key)
        size = _size(key, value)
        limit = min(self.max_bytes, self.max_result_bytes)
        if size > limit:
            _log.warning("idempotency.result_not_stored", bytes=size, limit_bytes=limit)
            return
        self._done[key] = f"{time.monotonic() + self.ttl_s!r}|{value}"
        self.bytes += size
        while self.bytes > self.max_bytes:
            self._drop(next(iter(self._done)))

    async def wait_change(self, key: str, timeout: float) -> None:
        held = self._locks.get(key)
        if held is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(held[1].wait(), timeout)

    def _drop(self, key: str) -> None:
        item = self._done.pop(key, None)
        if item is not None:
            self.bytes -= _size(key, item.partition("|")[2])


def _size(key: str, value: str) -> int:
    """What one stored result costs, by the measure of ``max_bytes``."""
    return len(key.encode()) + len(value.encode()) + _ENTRY_OVERHEAD_BYTES


class RedisIdempotency:
    """Shared store on Redis; the marker's TTL is renewed while the call runs.

    ``lock_ttl_s`` shorter than :data:`LOCK_TTL_S` (tests) renews at 30 % of the TTL.
    """

    backend = "redis"

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        service: str,
        *,
        ttl_s: int,
        max_result_bytes: int,
        lock_ttl_s: float = LOCK_TTL_S,
    ) -> None:
        self.client = client
        self.keys = keys
        self.service = service
        self.ttl_s = ttl_s
        self.lock_ttl_ms = max(1, int(lock_ttl_s * 1000))
        self.renew_every_s = min(LOCK_RENEW_S, lock_ttl_s * LOCK_RENEW_S / LOCK_TTL_S)
        self.max_result_bytes = max_result_bytes

    async def get(self, key: str) -> str | None:
        value = await self.client.get(self.keys.worker_done(self.service, key))
        return value.decode() if isinstance(value, bytes) else value

    async def claim(self, key: str) -> str | None:
        token = secrets.token_hex(8)
        lock = self.keys.worker_lock(self.service, key)
        taken = await self.client.set(lock, token, nx=True, px=self.lock_ttl_ms)
        return token if taken else None

    async def renew(self, key: str, token: str) -> bool:
        lock = self.keys.worker_lock(self.service, key)
        done = self.keys.worker_done(self.service, key)
        state = await self.client.eval(_RENEW, 2, lock, done, token, str(self.lock_ttl_ms))
        if state == 2:
            _log.warning("idempotency.lock_retaken", lock_ttl_ms=self.lock_ttl_ms)
        return bool(state)

    async def release(self, key: str, token: str) -> None:
        lock = self.keys.worker_lock(self.service, key)
        await self.client.eval(_RELEASE, 1, lock, token)

    async def put(self, key: str, value: str) -> None:
        size = len(value.encode())
        if size > self.max_result_bytes:
            _log.warning(
                "idempotency.result_not_stored", bytes=size, limit_bytes=self.max_result_bytes
            )
            return
        await self.client.set(self.keys.worker_done(self.service, key), value, ex=self.ttl_s)

    async def wait_change(self, key: str, timeout: float) -> None:
        # Polling is enough here: duplicates are rare and the wait is bounded by the caller.
        await asyncio.sleep(min(timeout, 0.05))


@contextlib.asynccontextmanager
async def _holding(store: IdempotencyStore, key: str, token: str) -> AsyncIterator[None]:
    """Renew the marker while the block runs; cancel the block if the marker is lost.

    The cancellation is told apart from the caller's as ``asyncio.timeout`` does it: by the
    task's cancel count, so a caller that cancels too still gets a plain cancellation.
    """
    every = store.renew_every_s
    owner = asyncio.current_task()
    if every is None or owner is None:
        yield
        return
    running, lost = True, False

    async def renew() -> None:
        nonlocal lost
        while True:
            await asyncio.sleep(every)
            try:
                held = await store.renew(key, token)
            except RedisError as exc:
                _log.warning("idempotency.renew_failed", error=str(exc))
                continue
            if not held:
                _log.error("idempotency.lock_lost", running=running)
                if running:
                    lost = True
                    owner.cancel()
                return

    task = asyncio.create_task(renew())
    try:
        yield
    except asyncio.CancelledError:
        running = False
        if lost and owner.uncancel() == 0:  # ours alone: say why, retryably
            raise _lock_lost() from None
        raise
    finally:
        if running:  # the block ended otherwise: it absorbed or converted our cancellation
            running = False
            if lost:
                owner.uncancel()
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
        async with _holding(store, key, token):
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


def _lock_lost() -> Exception:
    return tool_error(
        UNAVAILABLE,
        "this call lost its idempotency lock to a duplicate (the worker stalled or could not "
        "reach Redis for longer than the lock's TTL) and was stopped so both do not run",
        hint="Retry with the same idempotency key: the retry waits for the duplicate and "
        "replays its result.",
        retryable=True,
    )


def _unavailable() -> Exception:
    return tool_error(
        UNAVAILABLE,
        "the idempotency store (Redis) is unreachable",
        hint="Retry shortly, or call another replica.",
        retryable=True,
    )
