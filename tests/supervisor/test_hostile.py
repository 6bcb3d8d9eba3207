"""A corpus of hostile requests against the real app, on both stores.

Each request must get a 2xx or a 4xx (never a 5xx, never an exception out of the app); every
4xx carries the error body; a refused request stores nothing (no job record, event log or
idempotency key, and the job list is unchanged); and afterwards every listed job still reads.
Where a case names a status and code, the answer must be exactly that.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastmcp import FastMCP

from shared import SupervisorSettings
from supervisor.app import create_app
from supervisor.store import Store
from tests.helpers import wait_until
from tests.servers import serve_asgi
from tests.supervisor.hostile_corpus import GROUPS, MAX_BODY, Case
from tests.supervisor.toolservers import Seen, contract_server


@dataclass
class Target:
    api: httpx.AsyncClient
    store: Store
    prefix: str
    job: str = ""
    """A finished job (``noop``, succeeded): the id that ``{job}`` in a case stands for."""


@pytest.fixture(params=["memory", "redis"])
async def target(request: pytest.FixtureRequest) -> AsyncIterator[Target]:
    """The real app over ``httpx.ASGITransport`` (lifespan and loops running), one worker."""
    if request.param == "memory":
        url, prefix = "memory://", "hostile"
    else:
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("key_prefix")
    async with AsyncExitStack() as stack:
        worker = contract_server("w1", Seen()).http_app(path="/mcp")
        worker_url = await stack.enter_async_context(serve_asgi(worker)) + "/mcp"
        settings = SupervisorSettings(
            redis_url=url,
            key_prefix=prefix,
            workers=worker_url,
            probe_interval_s=0.5,
            max_body_bytes=MAX_BODY,
        )
        app = create_app(settings)
        await stack.enter_async_context(app.router.lifespan_context(app))
        api = await stack.enter_async_context(
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://fleet", timeout=30
            )
        )

        async def healthy() -> bool:
            workers = (await api.get("/v1/workers")).json()["workers"]
            return bool(workers) and all(w["healthy"] for w in workers)

        await wait_until(healthy, timeout=20, message="worker healthy")
        t = Target(api, app.state.services.store, prefix)
        r = await api.post("/v1/jobs", json={"capability": "noop"}, params={"wait": 20})
        assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
        t.job = r.json()["id"]
        yield t


async def stored(t: Target) -> tuple[frozenset[str], tuple[str, ...]]:
    """What a request could have stored: job records, event logs, idempotency keys, the list."""
    keys = {
        k.decode() if isinstance(k, bytes) else str(k)
        async for k in t.store.client.scan_iter(match=f"{t.prefix}:*")
    }
    mine = frozenset(k for k in keys if ":job:" in k or ":idem:" in k or k.endswith(":dead"))
    r = await t.api.get("/v1/jobs", params={"limit": 500})
    assert r.status_code == 200, r.text
    return mine, tuple(j["id"] for j in r.json()["jobs"])


def _fill(t: Target) -> Callable[[str], str]:
    return lambda text: text.replace("{job}", t.job).replace("{JOB}", t.job.upper())


async def run_case(t: Target, case: Case) -> str | None:
    """Send one case; return what is wrong with the answer, or None."""
    fill = _fill(t)
    url = httpx.URL("http://fleet" + fill(case.path), query=fill(case.params).encode())
    before = await stored(t)
    try:
        r = await t.api.request(case.method, url, content=case.content, headers=case.headers)
    except Exception as exc:  # the app raised: as bad as a 5xx
        return f"raised {type(exc).__name__}: {exc}"[:300]
    if r.status_code >= 500:
        return f"{r.status_code}: {r.text[:200]}"
    if not r.headers.get("x-correlation-id"):
        return f"{r.status_code} without an X-Correlation-ID"
    if case.status is not None and r.status_code != case.status:
        return f"status {r.status_code}, wanted {case.status}: {r.text[:200]}"
    if r.status_code >= 400:
        if case.method != "HEAD":
            problem = _error_shape(r)
            if problem:
                return problem
            if case.code is not None and r.json()["error"]["code"] != case.code:
                return f"code {r.json()['error']['code']}, wanted {case.code}"
        after = await stored(t)
        if after != before:
            return f"refused ({r.status_code}) but stored: {sorted(after[0] - before[0])[:4]}"
    elif r.status_code in (200, 202) and case.method == "POST" and case.path == "/v1/jobs":
        # Accepted: it runs to an end (noop refuses stray input, which is an end too).
        done = await t.api.get(f"/v1/jobs/{r.json()['id']}", params={"wait": 20})
        if done.status_code != 200 or done.json()["status"] not in ("succeeded", "failed"):
            return f"accepted job did not end: {done.text[:200]}"
    return None


def _error_shape(r: httpx.Response) -> str | None:
    if not r.headers.get("content-type", "").startswith("application/json"):
        return f"error without JSON: {r.headers.get('content-type')} {r.text[:100]}"
    body = r.json()
    error = body.get("error") if isinstance(body, dict) else None
    if (
        not isinstance(error, dict)
        or set(body) != {"error"}
        or set(error) != {"code", "message", "details"}
        or not isinstance(error["code"], str)
        or not error["code"].isupper()
        or not isinstance(error["message"], str)
        or not error["message"]
        or not isinstance(error["details"], dict)
    ):
        return f"not the error body: {r.text[:200]}"
    return None


@pytest.mark.parametrize("group", list(GROUPS))
async def test_hostile_requests_get_4xx_and_store_nothing(target: Target, group: str) -> None:
    failures = []
    for case in GROUPS[group]:
        try:
            problem = await run_case(target, case)
        except Exception as exc:  # e.g. the job list no longer reads: this case poisoned it
            problem = f"{type(exc).__name__}: {exc}"[:300]
        if problem:
            failures.append(f"{case.name}: {problem}")
    # Whatever came before, every job on the list still reads (nothing poisoned the store).
    listed = (await target.api.get("/v1/jobs", params={"limit": 500})).json()["jobs"]
    for entry in listed:
        r = await target.api.get(f"/v1/jobs/{entry['id']}")
        if r.status_code != 200:
            failures.append(f"job {entry['id']} no longer reads: {r.status_code}")
    assert not failures, f"{len(failures)} of {len(GROUPS[group])} cases failed:\n" + "\n".join(
        failures
    )


async def test_streamed_body_over_the_limit_is_413(target: Target) -> None:
    """No Content-Length to refuse early: the limit is enforced while the body streams in."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"capability":"noop","input":{"x":"'
        for _ in range(8):
            yield b"x" * (MAX_BODY // 4)
        yield b'"}}'

    before = await stored(target)
    r = await target.api.post(
        "/v1/jobs", content=chunks(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413, r.text
    assert _error_shape(r) is None and r.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert await stored(target) == before


async def test_a_worker_s_broken_input_schema_is_no_5xx() -> None:
    """A worker advertising a schema jsonschema cannot run ({"type": 5}) does not turn every
    submission into a 500: the supervisor skips its own check and the worker checks input."""
    mcp = FastMCP("broken")

    @mcp.tool
    async def odd() -> dict[str, bool]:
        return {"ok": True}

    @mcp.tool
    def get_capabilities() -> dict[str, Any]:
        spec = {"input_schema": {"type": 5}, "idempotent": True, "max_concurrency": 2}
        return {
            "service_name": "broken",
            "capabilities": {"odd": spec},
            "load": {"in_flight": 0, "max_concurrency": 2},
        }

    async with AsyncExitStack() as stack:
        url = await stack.enter_async_context(serve_asgi(mcp.http_app(path="/mcp"))) + "/mcp"
        app = create_app(SupervisorSettings(workers=url, probe_interval_s=0.5))
        await stack.enter_async_context(app.router.lifespan_context(app))
        transport = httpx.ASGITransport(app=app)
        api = await stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url="http://fleet", timeout=30)
        )

        async def known() -> bool:
            return "odd" in (await api.get("/v1/capabilities")).json()["capabilities"]

        await wait_until(known, timeout=20, message="capability listed")
        r = await api.post("/v1/jobs", json={"capability": "odd"}, params={"wait": 20})
        assert r.status_code < 500, r.text
        assert r.status_code in (200, 202) or _error_shape(r) is None, r.text
