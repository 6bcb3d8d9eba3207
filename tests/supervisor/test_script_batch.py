"""Script calls made in one turn of the event loop go to Redis in one pipeline, each with its
own answer (supervisor/store/batch.py), on the real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from shared.serving import free_port
from supervisor.store.batch import ScriptBatch
from tests.processes import own_redis

COUNT = "local n = redis.call('incr', KEYS[1]) redis.call('expire', KEYS[1], 60) return n"
FAIL = "return redis.error_reply('NOPE ' .. ARGV[1])"


class Counted(aioredis.Redis):
    """The real client, counting how writes leave it: pipelines and lone EVALSHAs."""

    pipelines = 0
    lone = 0

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        self.pipelines += 1
        return super().pipeline(*args, **kwargs)

    async def evalsha(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.lone += 1
        return await super().evalsha(*args, **kwargs)


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Counted]:
    r = Counted.from_url(redis_url)
    try:
        yield r
    finally:
        await r.aclose()


async def test_calls_of_one_turn_share_one_pipeline(client: Counted, key_prefix: str) -> None:
    batch = ScriptBatch(client)
    count = client.register_script(COUNT)
    # Loaded first: on a Redis that never ran it (a fresh CI machine) the first pipeline
    # answers NOSCRIPT and the batch sends it again, loaded (its own test, below).
    await client.script_load(COUNT)
    keys = [f"{key_prefix}:n{i % 2}" for i in range(6)]
    answers = await asyncio.gather(*(batch.run(count, [k], []) for k in keys))
    assert answers == [1, 1, 2, 2, 3, 3]  # in order, each its own answer
    assert (client.pipelines, client.lone) == (1, 0)
    assert await batch.run(count, [keys[0]], []) == 4  # alone: a plain EVALSHA
    assert (client.pipelines, client.lone) == (1, 1)


async def test_a_script_error_is_that_calls_alone(client: Counted, key_prefix: str) -> None:
    batch = ScriptBatch(client)
    count, fail = client.register_script(COUNT), client.register_script(FAIL)
    key = f"{key_prefix}:n"
    answers = await asyncio.gather(
        batch.run(count, [key], []), batch.run(fail, [], ["x"]), batch.run(count, [key], []),
        return_exceptions=True,
    )  # fmt: skip
    assert answers[0] == 1 and answers[2] == 2, answers
    assert isinstance(answers[1], ResponseError) and "NOPE x" in str(answers[1])


async def test_after_a_script_flush_each_call_runs_once() -> None:
    port = free_port()
    with own_redis(port):  # flushed: not the shared Redis, whose scripts others use
        client = aioredis.Redis(port=port)
        try:
            batch = ScriptBatch(client)
            count = client.register_script(COUNT)
            await client.script_flush()  # as a restarted Redis: the scripts are gone
            runs = await asyncio.gather(*(batch.run(count, ["n"], []) for _ in range(4)))
            assert runs == [1, 2, 3, 4]
            await client.script_flush()
            assert await batch.run(count, ["n"], []) == 5  # alone, too
        finally:
            await client.aclose()


async def test_a_lost_connection_fails_every_call() -> None:
    r = aioredis.Redis(port=free_port(), socket_connect_timeout=1)  # nothing listens there
    try:
        batch = ScriptBatch(r)
        count = r.register_script(COUNT)
        answers = await asyncio.gather(
            *(batch.run(count, ["k"], []) for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(a, RedisConnectionError | OSError) for a in answers)
    finally:
        await r.aclose()


async def test_a_cancelled_caller_leaves_the_others_answered(
    client: Counted, key_prefix: str
) -> None:
    batch = ScriptBatch(client)
    count = client.register_script(COUNT)
    key = f"{key_prefix}:n"
    first = asyncio.ensure_future(batch.run(count, [key], []))
    second = asyncio.ensure_future(batch.run(count, [key], []))
    await asyncio.sleep(0)  # both joined the turn's batch; its send is under way
    first.cancel()
    assert await second == 2  # the cancelled one's write was sent all the same
    assert first.cancelled()
