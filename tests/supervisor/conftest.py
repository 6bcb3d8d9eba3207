"""A whole fleet in the test process: tool servers and the supervisor, all over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from shared import Keys, SupervisorSettings
from supervisor.app import create_app
from supervisor.store import Store, open_store
from tests.helpers import wait_until
from tests.servers import serve_asgi
from tests.supervisor.toolservers import Seen, contract_server, foreign_server


@dataclass
class Fleet:
    url: str
    api: httpx.AsyncClient
    settings: SupervisorSettings
    seen: dict[str, Seen] = field(default_factory=dict)
    worker_urls: dict[str, str] = field(default_factory=dict)
    app: Any = None

    @property
    def services(self) -> Any:
        return self.app.state.services

    async def submit(
        self, capability: str, input: dict[str, Any] | None = None, **kw: Any
    ) -> dict[str, Any]:
        r = await self.api.post(
            "/v1/jobs", json={"capability": capability, "input": input or {}, **kw}
        )
        assert r.status_code in (200, 202), r.text
        return dict(r.json())

    async def wait(self, job_id: str, timeout: float = 20) -> dict[str, Any]:
        r = await self.api.get(f"/v1/jobs/{job_id}", params={"wait": timeout})
        assert r.status_code == 200, r.text
        return dict(r.json())


async def start_fleet(
    stack: AsyncExitStack,
    *,
    redis_url: str = "memory://",
    prefix: str = "fleet",
    workers: int = 2,
    foreign: bool = False,
    **overrides: Any,
) -> Fleet:
    seen: dict[str, Seen] = {}
    urls: dict[str, str] = {}
    for i in range(workers):
        name = f"w{i + 1}"
        seen[name] = Seen()
        app = contract_server(name, seen[name]).http_app(path="/mcp")
        base = await stack.enter_async_context(serve_asgi(app))
        urls[name] = base + "/mcp"
    if foreign:
        seen["foreign"] = Seen()
        app = foreign_server(seen["foreign"]).http_app(path="/mcp")
        urls["foreign"] = await stack.enter_async_context(serve_asgi(app)) + "/mcp"
    settings = SupervisorSettings(
        redis_url=redis_url,
        key_prefix=prefix,
        workers=",".join(urls.values()),
        probe_interval_s=0.5,
        lease_s=3,
        backoff_initial_s=0.01,
        backoff_max_s=0.1,
        breaker_reset_s=1,
        **overrides,
    )
    app = create_app(settings)
    base = await stack.enter_async_context(serve_asgi(app))
    headers = {"Authorization": f"Bearer {settings.tokens[0]}"} if settings.tokens else {}
    api = await stack.enter_async_context(
        httpx.AsyncClient(base_url=base, timeout=30, headers=headers)
    )
    fleet = Fleet(base, api, settings, seen, urls, app)

    async def all_healthy() -> bool:
        body = (await api.get("/v1/workers")).json()
        return len(body["workers"]) == len(urls) and all(w["healthy"] for w in body["workers"])

    await wait_until(all_healthy, timeout=20, message="workers healthy")
    return fleet


def store_of(request: pytest.FixtureRequest, name: str | None = None) -> dict[str, Any]:
    """:func:`start_fleet`'s store arguments for ``name`` (``memory``/``redis``; by default
    the parametrized fixture's ``request.param``)."""
    if (name or request.param) != "redis":
        return {}
    return {
        "redis_url": request.getfixturevalue("redis_url"),
        "prefix": request.getfixturevalue("key_prefix"),
    }


@pytest.fixture
async def fleet() -> AsyncIterator[Fleet]:
    async with AsyncExitStack() as stack:
        yield await start_fleet(stack, foreign=True)


@pytest.fixture(params=["memory", "redis"])
async def any_fleet(request: pytest.FixtureRequest) -> AsyncIterator[Fleet]:
    async with AsyncExitStack() as stack:
        if request.param == "memory":
            yield await start_fleet(stack)
        else:
            url = request.getfixturevalue("redis_url")
            prefix = request.getfixturevalue("key_prefix")
            yield await start_fleet(stack, redis_url=url, prefix=prefix)


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """A store on ``memory://`` and on the real Redis (a module may define its own)."""
    if request.param == "memory":
        async with open_store("memory://", Keys("t")) as s:
            yield s
    else:
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("key_prefix")
        async with open_store(url, Keys(prefix), retention_s=120) as s:
            yield s
