"""Self-registration: heartbeat this worker's URL into Redis so supervisors find it.

``SET {p}:worker:{instance}`` = :class:`shared.models.WorkerRegistration` JSON with TTL
``ceil(3 × heartbeat_s)``, refreshed every ``heartbeat_s``; ``DEL`` on clean shutdown. The
instance id is ``{name}-{sha1(advertise_url)[:10]}``, so a restarted replica reuses its key.

With ``FLEET_REGISTRATION_SECRET`` every heartbeat is signed afresh (:mod:`shared.signing`),
valid for the key's TTL: a supervisor with the same secret ignores registrations without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import time
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from shared.keys import Keys
from shared.logs import get_logger
from shared.models import WorkerRegistration
from shared.signing import sign_registration
from workers.kit.health import RegistrationState

__all__ = ["instance_id", "registered"]

_log = get_logger("workers.kit.registration")


def instance_id(name: str, advertise_url: str) -> str:
    """>>> instance_id("data", "http://w1:8701/mcp")[:5]
    'data-'
    """
    return f"{name}-{hashlib.sha1(advertise_url.encode()).hexdigest()[:10]}"


@contextlib.asynccontextmanager
async def registered(
    client: aioredis.Redis,
    keys: Keys,
    *,
    name: str,
    url: str,
    version: str,
    heartbeat_s: float,
    state: RegistrationState,
    secret: str | None = None,
) -> AsyncIterator[str]:
    """Keep the registration alive for the duration of the block; yields the Redis key."""
    key = keys.worker(instance_id(name, url))
    registration = WorkerRegistration(name=name, url=url, version=version)
    ttl = max(1, math.ceil(3 * heartbeat_s))
    state.enabled = True

    def value() -> str:
        if secret is None:
            return registration.model_dump_json()
        signed = sign_registration(registration, secret, fleet=keys.prefix, ttl_s=ttl)
        return signed.model_dump_json()

    async def beat() -> None:
        # One warning when Redis stops taking the heartbeat and one info when it takes it
        # again, not one per beat (the worker's /health shows the state all along).
        failing = state.last_error is not None
        try:
            await client.set(key, value(), ex=ttl)
        except (RedisError, OSError) as exc:
            state.last_error = f"{type(exc).__name__}: {exc}"[:300]
            say = _log.debug if failing else _log.warning
            say("worker.registration_failed", key=key, error=state.last_error,
                retrying_every_s=heartbeat_s)  # fmt: skip
        else:
            state.last_ok, state.last_error = time.time(), None
            if failing:
                _log.info("worker.registration_restored", key=key)

    async def loop() -> None:
        while True:
            await asyncio.sleep(heartbeat_s)
            await beat()

    await beat()
    if state.last_error is None:  # else its warning said so; the heartbeat keeps trying
        _log.info("worker.registered", key=key, url=url, ttl_s=ttl, signed=secret is not None)
    task = asyncio.create_task(loop())
    try:
        yield key
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        try:
            await client.delete(key)
            _log.info("worker.deregistered", key=key)
        except (RedisError, OSError) as exc:
            _log.warning("worker.deregistration_failed", key=key, error=str(exc))
