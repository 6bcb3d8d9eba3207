"""Short ids over the real HTTP API and the MCP face, on memory:// and the real Redis: any
unique prefix of at least 6 hex digits names a job wherever an id is taken; an ambiguous one
answers 409 with the candidates; another tenant's jobs are never candidates."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from fastmcp import Client

from shared.sse import SSEParser
from supervisor.api import submission
from tests.supervisor.conftest import Fleet, start_fleet, store_of

pytestmark = pytest.mark.e2e

TOKENS = "acme=a-tok:jobs:read+jobs:write,globex=g-tok:jobs:read+jobs:write"


@pytest.fixture(params=["memory", "redis"])
async def fleet(request: pytest.FixtureRequest) -> AsyncIterator[Fleet]:
    async with AsyncExitStack() as stack:
        yield await start_fleet(stack, **store_of(request))


@pytest.fixture
def minted(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The next job ids the API mints, in order (so that two share a prefix)."""
    queue: list[str] = []
    fresh = submission.new_job_id
    monkeypatch.setattr(submission, "new_job_id", lambda: queue.pop(0) if queue else fresh())
    yield queue


def error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err: dict[str, Any] = r.json()["error"]
    assert err["code"] == code, err
    return err


async def test_any_unique_prefix_names_the_job_everywhere(fleet: Fleet) -> None:
    job = await fleet.submit("noop")
    done = await fleet.wait(job["id"][:12])  # what the CLI prints
    assert done["id"] == job["id"] and done["status"] == "succeeded"
    for prefix in (job["id"][:6], job["id"][:31], job["id"][:9].upper()):
        r = await fleet.api.get(f"/v1/jobs/{prefix}")
        assert r.status_code == 200 and r.json()["id"] == job["id"], (prefix, r.text)
    async with fleet.api.stream("GET", f"/v1/jobs/{job['id'][:8]}/events") as r:
        assert r.status_code == 200
        parser, types = SSEParser(), []
        async for chunk in r.aiter_bytes():
            types += [sse.event for sse in parser.feed(chunk)]
    assert types[0] == "status" and types[-1] == "done"
    err = error(await fleet.api.post(f"/v1/jobs/{job['id'][:10]}/cancel"), 409, "JOB_FINISHED")
    assert err["details"]["job_id"] == job["id"]  # answered with the whole id


async def test_an_ambiguous_prefix_lists_its_candidates(fleet: Fleet, minted: list[str]) -> None:
    minted += ["5ab1e0" + "1" * 26, "5ab1e0" + "2" * 26]
    first = await fleet.submit("noop")
    second = await fleet.submit("noop")
    assert [first["id"], second["id"]] == ["5ab1e0" + "1" * 26, "5ab1e0" + "2" * 26]
    err = error(await fleet.api.get("/v1/jobs/5ab1e0"), 409, "AMBIGUOUS_JOB_ID")
    assert "2 jobs start with '5ab1e0'" in err["message"]
    candidates = err["details"]["candidates"]
    assert [c["id"] for c in candidates] == [first["id"], second["id"]]
    assert {c["capability"] for c in candidates} == {"noop"}
    error(await fleet.api.post("/v1/jobs/5ab1e0/cancel"), 409, "AMBIGUOUS_JOB_ID")
    assert (await fleet.wait("5ab1e02"))["id"] == second["id"]  # one more digit decides


async def test_shapes_that_name_no_job(fleet: Fleet) -> None:
    job = await fleet.submit("noop")
    err = error(await fleet.api.get(f"/v1/jobs/{job['id'][:5]}"), 404, "JOB_NOT_FOUND")
    assert "at least 6 hex digits" in err["message"]
    err = error(await fleet.api.get("/v1/jobs/000000000000"), 404, "JOB_NOT_FOUND")
    assert err["message"] == "no job with id '000000000000' or starting with it"
    error(await fleet.api.get("/v1/jobs/zzzzzzzz"), 404, "JOB_NOT_FOUND")
    error(await fleet.api.get(f"/v1/jobs/{job['id']}0"), 404, "JOB_NOT_FOUND")  # too long


async def test_another_tenants_jobs_are_not_candidates(minted: list[str]) -> None:
    async with AsyncExitStack() as stack:
        fleet = await start_fleet(stack, api_tokens=TOKENS, token_tenants="acme=acme,globex=globex")
        acme, globex = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=fleet.url, headers={"Authorization": f"Bearer {t}"})
            )
            for t in ("a-tok", "g-tok")
        ]
        minted += ["7e4a47" + "a" * 26, "7e4a47" + "b" * 26]
        mine = (await acme.post("/v1/jobs", json={"capability": "noop", "input": {}})).json()
        theirs = (await globex.post("/v1/jobs", json={"capability": "noop", "input": {}})).json()
        r = await acme.get("/v1/jobs/7e4a47")  # two jobs start so; acme sees one: not ambiguous
        assert r.status_code == 200 and r.json()["id"] == mine["id"], r.text
        r = await globex.get("/v1/jobs/7e4a47a")  # acme's alone: not there for globex
        error(r, 404, "JOB_NOT_FOUND")
        assert (await globex.get("/v1/jobs/7e4a47")).json()["id"] == theirs["id"]


async def test_the_mcp_face_takes_short_ids(fleet: Fleet) -> None:
    job = await fleet.submit("noop")
    await fleet.wait(job["id"])
    async with Client(fleet.url + "/mcp") as mcp:
        result = await mcp.call_tool("fleet_job", {"job_id": job["id"][:12]})
        assert result.structured_content is not None
        assert result.structured_content["id"] == job["id"]
        record = await mcp.read_resource(f"fleet://jobs/{job['id'][:8]}")
        assert job["id"] in str(record[0])
