"""The atomic scripts' contract: every outcome of each, on its Python twin and on its Lua.

The same calls with the same inputs (fixed timestamps) run on the twins (burner-redis) and on
the Lua, on burner-redis and on Redis: each outcome is asserted on each (ok, refused by status
-1, refused by fence -2, idempotent replay, queue full, dead letter, redrive ...), and the
answers and the data left behind must be the same.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from burner_redis import BurnerRedis

from shared import DISPATCH_GROUP, Keys
from shared.keys import STATUS_ORDER
from supervisor.store.codec import encode_fields
from supervisor.store.embedded import EmbeddedScripts
from supervisor.store.lua import register
from tests.supervisor.test_store_contract import make_job

Run = Callable[[str, list[str], list[str]], Awaitable[Any]]
T = "1700000000.5"  # fixed timestamps, so two engines' data compare equal
FOREVER = 10**8  # a TTL beyond this is the engine's stand-in for PERSIST


def answer(name: str, out: Any) -> Any:
    """A script's reply as text; ACQUIRE's record as a dict (a Lua list, a twin dict), or its
    refusal (-2)."""
    if isinstance(out, bytes):
        return out.decode()
    if name == "ACQUIRE" and not isinstance(out, int):
        return text_map(
            dict(zip(out[::2], out[1::2], strict=True)) if isinstance(out, list) else out
        )
    return [answer(name, o) for o in out] if isinstance(out, list) else out


def text_map(raw: dict[Any, Any]) -> dict[str, str]:
    return {answer("", k): answer("", v) for k, v in raw.items()}


def submit(
    k: Keys, job_id: str, idem: str | None = None, tenant: str = "", parent: str = ""
) -> tuple[str, list[str], list[str]]:
    """A SUBMIT with a queue limit of 2, a tenant's share of 1 when ``tenant``, and at most
    1 child per ``parent``."""
    job = make_job(id=job_id, key=idem, correlation_id="corr", created_at=float(T))
    fields = {**job.model_dump(mode="json"), "fingerprint": "f"}
    keys = [k.idempotency(idem or "-"), k.job(job_id), k.jobs, k.queue, k.queued, k.events(job_id)]
    keys += [k.by_status("queued"), k.ids, k.children(parent or "-")]
    args = [job_id, "1" if idem else "0", "60", "2", "echo", T, '{"status":"queued"}', "corr"]
    args += [tenant, "1", parent, "1", "60"]
    return "SUBMIT", keys, [*args, *encode_fields(fields)]


def transition(
    k: Keys,
    job_id: str,
    allowed: str,
    fence: str,
    *pairs: str,
    ttl: str = "0",
    dead: str = "",
    ack: str = "",
    usage: bool = False,
) -> tuple[str, list[str], list[str]]:
    """``usage``: the ledger's figures for tenant t1 and capability echo go with it."""
    done = '{"done":true}' if ttl != "0" else ""
    event = "status" if "status" in pairs[::2] else ""  # no event when the status stays
    ledger = "600 1 2 3500 40 7 t1 x|echo|" if usage else ""  # a prefix with a space in it
    args = [allowed, event, '{"s":1}', T, ttl, done, fence, dead, ack, ledger, *pairs]
    keys = [k.job(job_id), k.events(job_id), k.queued, k.dead, k.queue, *k.status_indexes()]
    return "TRANSITION", keys + ([k.usage("20260101")] if usage else []), args


def append(
    k: Keys, job_id: str, fence: str, *pairs: str, n: int = 1
) -> tuple[str, list[str], list[str]]:
    events = [x for i in range(n) for x in ("progress", f'{{"p":{i}}}', T)]
    return "APPEND", [k.job(job_id), k.events(job_id)], [fence, str(n), *events, *pairs]


def requeue(
    k: Keys, job_id: str, allowed: str, fence: str, entry: str = ""
) -> tuple[str, list[str], list[str]]:
    keys = [k.job(job_id), k.events(job_id), k.queued, k.queue, k.dead, *k.status_indexes()]
    return "REQUEUE", keys, [allowed, fence, entry, T, '{"status":"queued"}', "attempts", "0"]


async def every_outcome(run: Run, client: Any, k: Keys) -> list[Any]:
    """Drive each script through each of its outcomes, asserting them; return the answers."""
    answers: list[Any] = []

    async def check(call: tuple[str, list[str], list[str]], expected: Any) -> Any:
        out = answer(call[0], await run(*call))
        answers.append(out)
        assert out == expected or expected is ..., (call[0], call[2][:8], out)
        return out

    await client.xgroup_create(k.queue, DISPATCH_GROUP, id="0", mkstream=True)
    await check(submit(k, "a", idem="key-a", tenant="t1"), ["ok", ""])
    await check(submit(k, "a2", idem="key-a"), ["exists", "a"])  # idempotent replay
    await check(submit(k, "t", tenant="t1"), ["share", "1"])  # t1 holds its share
    await check(submit(k, "b"), ["ok", ""])
    await check(submit(k, "c"), ["full", "2"])  # the queue limit is 2
    assert (await check(("ACQUIRE", [k.job("a")], ["9-1", ""]), ...))["fence"] == "1"
    record = await check(("ACQUIRE", [k.job("a")], ["9-1", "1"]), ...)  # a reclaim: a
    assert record["fence"] == "2" and record["status"] == "queued"  # greater token
    await check(("ACQUIRE", [k.job("a")], ["9-1", ""]), -2)  # its fresh holder, too late
    await check(("ACQUIRE", [k.job("gone")], ["", ""]), {})
    await check(transition(k, "a", "queued", "1", "status", "running"), -2)  # stale fence
    await check(transition(k, "a", "running", "2", "status", "failed"), -1)  # status
    await check(transition(k, "a", "running", "1", "status", "failed"), -2)  # fence first
    await check(transition(k, "gone", "", "", "status", "running"), -1)
    await check(transition(k, "a", "queued,running", "2", "status", "running"), 2)
    await check(transition(k, "a", "", "", "worker", '"w1"'), 0)  # no event: seq 0
    await check(append(k, "a", "2", "progress", "1"), 3)
    await check(append(k, "a", "2", n=3), 6)  # three events in one step: the last seq
    await check(append(k, "a", "1"), -2)
    await check(append(k, "gone", ""), -1)
    [(_, deliveries)] = await client.xreadgroup(DISPATCH_GROUP, "c", {k.queue: ">"}, count=10)
    entry_a = answer("", deliveries[0][0])  # a's delivery, to be acknowledged by the redrive
    assert text_map(deliveries[0][1]) == {"job": "a"}
    stale = transition(k, "a", "running", "1", "status", "failed", ttl="120", usage=True)
    await check(stale, -2)  # refused: nothing counted
    assert not await client.exists(k.usage("20260101"))
    dead_end = transition(
        k, "a", "running", "2", "status", "failed", ttl="120", dead="1", usage=True
    )
    await check(dead_end, 8)  # its event and its done; dead-lettered; its usage counted
    assert 0 < await client.ttl(k.job("a")) <= 120 and await client.zrange(k.dead, 0, -1)
    ledger = text_map(await client.hgetall(k.usage("20260101")))
    assert ledger == {"t1 x|echo|jobs": "1", "t1 x|echo|attempts": "2",
                      "t1 x|echo|worker_us": "3500", "t1 x|echo|bytes_in": "40",
                      "t1 x|echo|bytes_out": "7"}  # fmt: skip
    assert 0 < await client.ttl(k.usage("20260101")) <= 600
    await check(append(k, "a", "2"), -1)  # nothing after done
    await check(requeue(k, "a", "failed", "1"), -2)
    await check(requeue(k, "a", "succeeded", "2"), -1)
    await check(requeue(k, "gone", "failed", ""), -1)
    await check(requeue(k, "a", "failed", "2", entry_a), 9)  # the redrive
    entry_b = answer("", deliveries[1][0])
    refused = transition(k, "b", "running", "", "status", "cancelled", ack=entry_b)
    await check(refused, -1)  # refused: the delivery stays
    assert entry_b in answer("", [i for i, _ in await client.xrange(k.queue)])
    ended = transition(k, "b", "queued", "", "status", "cancelled", ttl="-1", ack=entry_b)
    await check(ended, 3)  # the outcome and the end of its delivery in one step
    assert entry_b not in answer("", [i for i, _ in await client.xrange(k.queue)])
    pending = await client.xpending(k.queue, DISPATCH_GROUP)
    assert (pending["pending"] if isinstance(pending, dict) else pending[0]) == 0
    await check(submit(k, "k1", parent="a"), ["ok", ""])  # a's child, listed under it
    await check(submit(k, "k2", parent="a"), ["children", "1"])  # one child per parent here
    await check(submit(k, "k3", idem="key-a", parent="a"), ["exists", "a"])  # a replay first
    return answers


async def data(client: Any, k: Keys) -> dict[str, Any]:
    """Everything the scenario wrote, queue entry ids left out (they are clock-made)."""
    out: dict[str, Any] = {}
    for j in ("a", "a2", "b", "c", "t", "k1", "k2"):
        ttl = [await client.ttl(key) for key in (k.job(j), k.events(j))]
        out[j] = {
            "record": text_map(await client.hgetall(k.job(j))),
            "events": [[answer("", i), text_map(f)] for i, f in await client.xrange(k.events(j))],
            "ttl": [
                "forever" if t == -1 or t > FOREVER else "expires" if t > 0 else t for t in ttl
            ],
        }
    out["queue"] = [text_map(f) for _, f in await client.xrange(k.queue)]
    out["queued"] = text_map(await client.hgetall(k.queued))
    jobs = await client.zrange(k.jobs, 0, -1, withscores=True)
    out["jobs"] = [(answer("", member), float(score)) for member, score in jobs]
    out["dead"] = answer("", await client.zrange(k.dead, 0, -1))
    out["by_status"] = {
        key: answer("", await client.zrange(key, 0, -1)) for key in k.status_indexes()
    }
    out["idem"] = answer("", await client.get(k.idempotency("key-a")))
    out["children"] = answer("", await client.lrange(k.children("a"), 0, -1))
    out["children_ttl"] = await client.ttl(k.children("a")) > 0
    return out


def engines(
    lua_on: str, request: pytest.FixtureRequest
) -> tuple[Any, EmbeddedScripts, Any, Run, Keys]:
    """The twins on one engine, and the Lua on another (``memory``) or on Redis, with the
    keys they write under."""
    twin_client, k = BurnerRedis(), Keys("s")
    twins = EmbeddedScripts(twin_client)
    if lua_on == "memory":
        lua_client: Any = BurnerRedis()
    else:
        lua_client = aioredis.Redis.from_url(request.getfixturevalue("redis_url"))
        k = Keys(request.getfixturevalue("key_prefix"))
    scripts = register(lua_client)

    async def lua(name: str, keys: list[str], args: list[str]) -> Any:
        return await scripts[name](keys=keys, args=args)

    return twin_client, twins, lua_client, lua, k


@pytest.mark.parametrize("lua_on", ["memory", "redis"])
async def test_twins_answer_as_the_lua(lua_on: str, request: pytest.FixtureRequest) -> None:
    twin_client, twins, lua_client, lua, k = engines(lua_on, request)

    try:
        twin_answers = await every_outcome(twins.run, twin_client, k)
        lua_answers = await every_outcome(lua, lua_client, k)
        assert twin_answers == lua_answers
        twin_data, lua_data = await data(twin_client, k), await data(lua_client, k)
        assert twin_data == lua_data
        assert twin_data["a"]["ttl"] == ["forever", "forever"]  # the redrive lifted the TTL
        # a, queued again by the redrive, is its tenant's one queued job too; k1 is a's child
        assert twin_data["dead"] == [] and twin_data["queued"] == {"echo": "2", "echo@t1": "1"}
        assert twin_data["queue"] == [{"job": "a"}, {"job": "k1"}]  # a's first entry, b's: acked
        assert twin_data["children"] == ["k1"] and twin_data["children_ttl"]
        by_status = dict(zip(STATUS_ORDER, twin_data["by_status"].values(), strict=True))
        assert by_status == {
            "queued": ["a", "k1"], "running": [], "succeeded": [], "failed": [], "cancelled": ["b"]
        }  # fmt: skip
    finally:
        await twin_client.aclose()
        await lua_client.aclose()


def start(
    k: Keys, job_id: str, entry: str = "", reclaimed: str = ""
) -> tuple[str, list[str], list[str]]:
    """ACQUIRE with START: the lease, the read and the start on worker w1, at time T."""
    keys = [k.job(job_id), k.events(job_id), k.queued, *k.status_indexes()]
    return "ACQUIRE", keys, [entry, reclaimed, '"w1"', T]


def started(out: Any) -> Any:
    """ACQUIRE-with-START's reply: (started, seq, the record), a refusal (-2), or {} (gone)."""
    if isinstance(out, int) or not out:
        return out if isinstance(out, int) else {}
    return (out[0], out[1], text_map(dict(zip(out[2::2], out[3::2], strict=True))))


async def start_outcomes(run: Run, client: Any, k: Keys) -> list[Any]:
    """ACQUIRE's START through each of its outcomes, asserting them; return the answers."""
    answers: list[Any] = []

    async def check(call: tuple[str, list[str], list[str]]) -> Any:
        out = started(await run(*call))
        answers.append(out)
        return out

    await run(*submit(k, "s1", tenant="t1"))
    await run(*submit(k, "s2"))
    go, seq, record = await check(start(k, "s1", entry="5-1"))
    assert (go, seq) == (1, 2)  # started: its status event follows its queued one
    assert record["status"] == "running" and record["fence"] == "1"
    assert (record["attempts"], record["worker"], record["started_at"]) == ("1", '"w1"', T)
    go, seq, record = await check(start(k, "s1", entry="5-1"))  # running already: no start
    assert (go, seq, record["fence"], record["attempts"]) == (0, 0, "2", "1")
    await client.hset(k.job("s2"), "cancel", "1")
    go, _, record = await check(start(k, "s2", entry="6-1"))  # a cancel was asked: no start
    assert (go, record["status"], record["fence"]) == (0, "queued", "1")
    await client.hset(k.job("s2"), "cancel", "")  # a cleared flag does not hold it back
    go, _, record = await check(start(k, "s2", entry="6-1", reclaimed="1"))  # a reclaim: never
    assert (go, record["status"], record["claimed"]) == (0, "queued", "6-1")
    assert await check(start(k, "s2", entry="6-1")) == -2  # its fresh holder, too late
    assert await check(start(k, "gone")) == {}
    go, seq, record = await check(start(k, "s2", entry="7-1"))  # a new delivery starts it
    assert (go, seq, record["status"], record["attempts"]) == (1, 2, "running", "1")
    return answers


@pytest.mark.parametrize("lua_on", ["memory", "redis"])
async def test_acquire_start_twin_answers_as_the_lua(
    lua_on: str, request: pytest.FixtureRequest
) -> None:
    """The same START outcomes on the twin and on the Lua, leaving the same data: the
    record, the status event (its data as the dispatcher's TRANSITION writes it), the queued
    counts (the tenant's too) and the status indexes."""
    twin_client, twins, lua_client, lua, k = engines(lua_on, request)

    async def written(client: Any) -> dict[str, Any]:
        out: dict[str, Any] = {
            j: {
                "record": text_map(await client.hgetall(k.job(j))),
                "events": [text_map(f) for _, f in await client.xrange(k.events(j))],
            }
            for j in ("s1", "s2")
        }
        out["queued"] = text_map(await client.hgetall(k.queued))
        out["by_status"] = [answer("", await client.zrange(i, 0, -1)) for i in k.status_indexes()]
        return out

    try:
        assert await start_outcomes(twins.run, twin_client, k) == await start_outcomes(
            lua, lua_client, k
        )
        twin_data, lua_data = await written(twin_client), await written(lua_client)
        assert twin_data == lua_data
        assert twin_data["queued"] == {"echo": "0", "echo@t1": "0"}
        assert twin_data["by_status"] == [[], ["s1", "s2"], [], [], []]
        status = twin_data["s1"]["events"][1]
        assert status == {"t": "status", "d": '{"status":"running","attempt":1,"worker":"w1"}',
                          "ts": T, "c": "corr"}  # fmt: skip
    finally:
        await twin_client.aclose()
        await lua_client.aclose()
