"""The foreign-server matrix: every kind of MCP server, driven end to end through the supervisor.

Each row runs two replicas of one server as real processes (the TypeScript reference server,
mcp 1.x and FastMCP 2.x servers in their own venvs, stateful and stateless, each protocol
revision, and our FastMCP 4.1 workers) behind a supervisor served over real HTTP, and checks:
the catalog, a call, progress relayed in order, a cancel that reaches the tool (seen on the
server's side), a tool error that fails the job with a clear code, and failover from a killed
replica. A peer that cannot be installed fails the test with the reason.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, AsyncExitStack, ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest

from shared import SupervisorSettings
from supervisor.app import create_app
from tests.helpers import aiter_sse, wait_until
from tests.peers import procs
from tests.peers.install import PeerUnavailable
from tests.processes import worker
from tests.servers import serve_asgi

pytestmark = pytest.mark.e2e


class Replica(Protocol):
    url: str

    def kill(self) -> None: ...


@dataclass
class Row:
    id: str
    start: Callable[[Path], AbstractContextManager[Replica]]
    protocol: str  # what GET /v1/workers reports, e.g. "2025-11-25 (legacy, session)"
    call: tuple[str, dict[str, Any], Any]  # tool, input, expected result
    progress: tuple[str, dict[str, Any], int]  # tool, input, number of progress events
    slow: Callable[[str], tuple[str, dict[str, Any]]]  # tag → tool, input (runs ~forever)
    fail: tuple[str, dict[str, Any], str]  # tool, input, expected code
    cancel_seen: Callable[[Path, str, Replica], Any] | None  # server-side evidence of a cancel
    extra: Callable[[httpx.AsyncClient, list[dict[str, Any]]], Awaitable[None]] | None = None


def _ledger(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _python_row(
    kind: str, *, stateless: bool = False, version: str | None = None, protocol: str
) -> Row:
    factory = procs.mcp1 if kind == "mcp1" else procs.fastmcp2
    name = f"{kind}-{'stateless' if stateless else 'stateful'}{'-' + version if version else ''}"

    def start(ledger: Path) -> AbstractContextManager[Replica]:
        return factory(ledger=ledger, stateless=stateless, only_version=version, name=kind)

    def cancel_seen(ledger: Path, tag: str, _: Replica) -> bool:
        return {"event": "cancelled", "tag": tag} in _ledger(ledger)

    # A stateless FastMCP 2.x server has no session for notifications/cancelled to find and
    # ignores a closed stream: the job ends cancelled here, but that tool runs to its end.
    # (A stateless mcp 1.x server does stop the tool when its stream closes.)
    unreachable_cancel = kind == "fastmcp2" and stateless

    return Row(
        id=name,
        start=start,
        protocol=protocol,
        # structuredContent as sent; FastMCP marks a wrapped primitive, so it is unwrapped
        call=("add", {"a": 2, "b": 40}, 42 if kind == "fastmcp2" else {"result": 42}),
        progress=("progress", {"steps": 4}, 4),
        slow=lambda tag: ("slow", {"seconds": 120, "tag": tag}),
        fail=("fail", {"message": "boom-42"}, "TOOL_ERROR"),
        cancel_seen=None if unreachable_cancel else cancel_seen,
    )


@contextlib.contextmanager
def _fleet_worker(_: Path) -> Iterator[Replica]:
    with worker("echo") as proc:
        yield proc


async def _fleet_worker_idle(_: Path, __: str, replica: Replica) -> bool:
    # The kit counts a tool as in flight until it returns; 0 means the sleep was cancelled.
    async with httpx.AsyncClient() as client:
        health = (await client.get(replica.url.replace("/mcp", "/health"))).json()
    return health["components"]["server"]["in_flight"] == 0


@contextlib.contextmanager
def _everything(_: Path) -> Iterator[Replica]:
    with procs.everything() as proc:
        yield proc


async def _everything_extra(api: httpx.AsyncClient, workers: list[dict[str, Any]]) -> None:
    # A tool that requires MCP tasks is left out of the catalog, with the reason shown.
    for w in workers:
        assert "requires MCP tasks" in w["excluded"]["simulate-research-query"], w
    catalog = (await api.get("/v1/capabilities")).json()["capabilities"]
    assert "simulate-research-query" not in catalog
    # Image and resource-link content survive into the job.
    image = await wait_job(api, await submit(api, "get-tiny-image", {}))
    assert image["status"] == "succeeded", image
    kinds = [block["type"] for block in image["content"]]
    assert "image" in kinds, image["content"]
    links = await wait_job(api, await submit(api, "get-resource-links", {"count": 2}))
    assert [b["type"] for b in links["content"]].count("resource_link") == 2, links["content"]


ROWS = [
    Row(
        id="everything-ts",
        start=_everything,
        protocol="2025-11-25 (legacy, session)",
        call=("echo", {"message": "hi"}, "Echo: hi"),
        progress=("trigger-long-running-operation", {"duration": 0.3, "steps": 3}, 3),
        slow=lambda tag: ("trigger-long-running-operation", {"duration": 120, "steps": 60}),
        fail=("get-resource-reference", {"resourceId": 0}, "TOOL_ERROR"),
        # Its long-running tool never looks at the abort signal that notifications/cancelled
        # fires, so nothing on its side can show the cancel; the Python peers show it.
        cancel_seen=None,
        extra=_everything_extra,
    ),
    Row(
        id="fastmcp4-modern",
        start=_fleet_worker,
        protocol="2026-07-28 (modern)",
        call=("echo", {"value": [1, "two"]}, {"value": [1, "two"]}),
        progress=("progress", {"steps": 5}, 5),
        slow=lambda tag: ("sleep", {"seconds": 120, "steps": 2}),
        fail=("fail", {"code": "NOPE"}, "NOPE"),
        cancel_seen=_fleet_worker_idle,
    ),
    _python_row("mcp1", protocol="2025-11-25 (legacy, session)"),
    _python_row("mcp1", stateless=True, protocol="2025-11-25 (legacy)"),
    _python_row("fastmcp2", protocol="2025-11-25 (legacy, session)"),
    _python_row("fastmcp2", stateless=True, protocol="2025-11-25 (legacy)"),
    _python_row("mcp1", version="2024-11-05", protocol="2024-11-05 (legacy, session)"),
    _python_row("mcp1", version="2025-03-26", protocol="2025-03-26 (legacy, session)"),
    _python_row("mcp1", version="2025-06-18", protocol="2025-06-18 (legacy, session)"),
]


@contextlib.asynccontextmanager
async def supervisor_for(urls: list[str]) -> AsyncIterator[httpx.AsyncClient]:
    settings = SupervisorSettings(
        workers=",".join(urls),
        probe_interval_s=0.5,
        backoff_initial_s=0.01,
        backoff_max_s=0.1,
        breaker_reset_s=1,
        default_timeout_s=30,
        _env_file=None,  # type: ignore[call-arg]
    )
    async with AsyncExitStack() as stack:
        base = await stack.enter_async_context(serve_asgi(create_app(settings)))
        api = await stack.enter_async_context(httpx.AsyncClient(base_url=base, timeout=60))

        async def all_healthy() -> bool:
            workers = (await api.get("/v1/workers")).json()["workers"]
            return len(workers) == len(urls) and all(w["healthy"] for w in workers)

        await wait_until(all_healthy, timeout=30, message="every replica healthy")
        yield api


async def submit(api: httpx.AsyncClient, capability: str, input: dict[str, Any]) -> str:
    r = await api.post("/v1/jobs", json={"capability": capability, "input": input})
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


async def wait_job(api: httpx.AsyncClient, job_id: str, timeout: float = 30) -> dict[str, Any]:
    r = await api.get(f"/v1/jobs/{job_id}", params={"wait": timeout})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def events(api: httpx.AsyncClient, job_id: str) -> list[dict[str, Any]]:
    out = []
    async with api.stream("GET", f"/v1/jobs/{job_id}/events") as r:
        async for event in aiter_sse(r):
            out.append({"type": event.event, **json.loads(event.data)})
            if event.event == "done":
                break
    return out


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
async def test_server_works_through_the_supervisor(row: Row, tmp_path: Path) -> None:
    ledgers = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    with ExitStack() as stack:
        try:
            replicas = [stack.enter_context(row.start(ledger)) for ledger in ledgers]
        except PeerUnavailable as exc:
            pytest.fail(str(exc))
        async with supervisor_for([r.url for r in replicas]) as api:
            await _check_row(row, api, replicas, ledgers)


async def _check_row(
    row: Row, api: httpx.AsyncClient, replicas: list[Any], ledgers: list[Path]
) -> None:
    # The catalog, and two replicas told apart.
    workers = (await api.get("/v1/workers")).json()["workers"]
    names = {w["name"] for w in workers}
    assert len(names) == 2, workers
    assert all(w["protocol"] == row.protocol for w in workers), workers
    catalog = (await api.get("/v1/capabilities")).json()["capabilities"]
    tool, args, expected = row.call
    assert tool in catalog, sorted(catalog)
    assert len(catalog[tool]["workers"]) == 2

    # A call.
    done = await wait_job(api, await submit(api, tool, args))
    assert done["status"] == "succeeded", done
    assert done["result"] == expected
    assert done["worker"] in names

    # Progress relayed in order.
    tool, args, count = row.progress
    job_id = await submit(api, tool, args)
    assert (await wait_job(api, job_id))["status"] == "succeeded"
    progress = [e["data"]["progress"] for e in await events(api, job_id) if e["type"] == "progress"]
    assert progress == sorted(progress) and len(progress) == count, progress

    # A tool error fails the job with a clear code.
    tool, args, code = row.fail
    failed = await wait_job(api, await submit(api, tool, args))
    assert failed["status"] == "failed" and failed["error"]["code"] == code, failed

    # Cancel reaches the tool.
    tool, args = row.slow("c1")
    job_id = await submit(api, tool, args)
    await wait_until(lambda: _is_running(api, job_id), timeout=20, message="the slow job to start")
    running = await wait_job(api, job_id, timeout=0)
    assert (await api.post(f"/v1/jobs/{job_id}/cancel")).status_code in (200, 202)
    assert (await wait_job(api, job_id))["status"] == "cancelled"
    if row.cancel_seen is not None:
        index = next(i for i, w in enumerate(workers) if w["name"] == running["worker"])
        replica = next(r for r in replicas if r.url == workers[index]["url"])
        ledger = ledgers[replicas.index(replica)]
        await wait_until(
            lambda: row.cancel_seen(ledger, "c1", replica),  # type: ignore[misc]
            timeout=15,
            message="the server to see the cancel",
        )

    if row.extra is not None:
        await row.extra(api, workers)

    # Failover: kill one replica; every job still succeeds, on the other one.
    victim, survivor = replicas
    victim.kill()
    tool, args, expected = row.call
    jobs = [await submit(api, tool, args) for _ in range(6)]
    results = [await wait_job(api, j) for j in jobs]
    assert all(r["status"] == "succeeded" and r["result"] == expected for r in results), results
    survivor_name = next(w["name"] for w in workers if w["url"] == survivor.url)
    assert {r["worker"] for r in results} == {survivor_name}


async def _is_running(api: httpx.AsyncClient, job_id: str) -> bool:
    job = (await api.get(f"/v1/jobs/{job_id}")).json()
    return bool(job["status"] == "running" and job.get("progress") is not None) or (
        job["status"] == "running" and job["attempts"] >= 1
    )


async def test_same_tool_name_on_two_services_is_two_capabilities() -> None:
    """The reference server's ``echo`` and our echo worker's ``echo`` are never confused."""
    with ExitStack() as stack:
        try:
            ts = stack.enter_context(procs.everything())
        except PeerUnavailable as exc:
            pytest.fail(str(exc))
        ours = stack.enter_context(worker("echo"))
        async with supervisor_for([f"everything={ts.url}", ours.url]) as api:
            catalog = (await api.get("/v1/capabilities")).json()["capabilities"]
            assert "echo" not in catalog
            assert catalog["everything.echo"]["service"] == "everything"
            assert catalog["echo.echo"]["service"] == "echo"
            assert "get-sum" in catalog  # offered once: the bare name stays
            bare = await api.post("/v1/jobs", json={"capability": "echo", "input": {}})
            assert bare.status_code == 422, bare.text
            assert set(bare.json()["error"]["details"]["choices"]) == {
                "everything.echo",
                "echo.echo",
            }
            # Each input is valid for one schema only: validation uses the named service's.
            wrong = await api.post(
                "/v1/jobs", json={"capability": "everything.echo", "input": {"value": 1}}
            )
            assert wrong.status_code == 422, wrong.text
            theirs = [await submit(api, "everything.echo", {"message": f"m{i}"}) for i in range(24)]
            mine = [await submit(api, "echo.echo", {"value": i}) for i in range(24)]
            for i, job_id in enumerate(theirs):
                done = await wait_job(api, job_id)
                assert done["status"] == "succeeded" and done["result"] == f"Echo: m{i}", done
                assert done["worker"].startswith("everything@")
            for i, job_id in enumerate(mine):
                done = await wait_job(api, job_id)
                assert done["status"] == "succeeded" and done["result"] == {"value": i}, done
                assert done["worker"].startswith("echo@")
