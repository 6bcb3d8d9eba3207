"""Child jobs over the real HTTP API, on memory:// and the real Redis: a job names its parent;
it takes the parent's tenant and correlation id one level deeper, is listed under it, and is
cancelled with it; depth and fan-out are limited."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest

from shared.protocol import META_JOB_ID, META_SUPERVISOR_URL
from tests.helpers import wait_until
from tests.supervisor.conftest import Fleet, start_fleet, store_of

pytestmark = pytest.mark.e2e

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture(params=["memory", "redis"])
async def fleet(request: pytest.FixtureRequest) -> AsyncIterator[Fleet]:
    async with AsyncExitStack() as stack:
        yield await start_fleet(stack, workers=1, max_depth=2, max_children=3, **store_of(request))


def error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err: dict[str, Any] = r.json()["error"]
    assert err["code"] == code, err
    return err


async def running(fleet: Fleet, job_id: str) -> None:
    async def started() -> bool:
        return (await fleet.api.get(f"/v1/jobs/{job_id}")).json()["status"] == "running"

    await wait_until(started, timeout=10, message=f"job {job_id} running")


async def test_a_child_is_listed_under_its_parent_and_shares_its_correlation(
    fleet: Fleet,
) -> None:
    parent = await fleet.submit("hold", idempotency_key="parent")
    await running(fleet, parent["id"])
    r = await fleet.api.post(
        "/v1/jobs",
        json={"capability": "noop", "parent_id": parent["id"]},
        headers={"traceparent": TRACEPARENT, "X-Correlation-ID": "another"},
    )
    assert r.status_code == 202, r.text
    child = r.json()
    assert child["parent_id"] == parent["id"] and child["depth"] == 1
    assert child["correlation_id"] == parent["correlation_id"]
    assert child["traceparent"] == TRACEPARENT
    done = await fleet.wait(child["id"])
    assert done["status"] == "succeeded"
    got = (await fleet.api.get(f"/v1/jobs/{parent['id']}")).json()
    assert got["children"] == [child["id"]]
    assert (await fleet.api.get(f"/v1/jobs/{child['id']}")).json()["children"] is None
    # the worker's call names the supervisor to delegate to, and the job
    call = next(c for c in fleet.seen["w1"].calls if c["tool"] == "hold")
    assert call["meta"][META_JOB_ID] == parent["id"]
    assert call["meta"][META_SUPERVISOR_URL].startswith("http")
    fleet.seen["w1"].release.set()
    assert (await fleet.wait(parent["id"]))["status"] == "succeeded"


async def test_parents_that_cannot_have_children(fleet: Fleet) -> None:
    missing = "0" * 32
    err = error(
        await fleet.api.post("/v1/jobs", json={"capability": "noop", "parent_id": missing}),
        404,
        "JOB_NOT_FOUND",
    )
    assert err["details"] == {"job_id": missing, "field": "parent_id"}
    ended = await fleet.wait((await fleet.submit("noop"))["id"])
    err = error(
        await fleet.api.post("/v1/jobs", json={"capability": "noop", "parent_id": ended["id"]}),
        409,
        "JOB_FINISHED",
    )
    assert err["details"]["parent_id"] == ended["id"]
    error(
        await fleet.api.post("/v1/jobs", json={"capability": "noop", "parent_id": "nothex"}),
        422,
        "VALIDATION_ERROR",
    )
    err = error(
        await fleet.api.post("/v1/jobs", json={"capability": "fleet:workflow"}),
        422,
        "UNKNOWN_CAPABILITY",
    )
    assert "POST /v1/workflows" in err["message"]


async def test_depth_and_fan_out_are_limited(fleet: Fleet) -> None:
    top = await fleet.submit("hold")
    await running(fleet, top["id"])
    kids = [
        await fleet.submit("hold", parent_id=top["id"], idempotency_key=f"k{i}") for i in (1, 2)
    ]
    assert {k["depth"] for k in kids} == {1}
    grandchild = await fleet.submit("hold", parent_id=kids[0]["id"])  # queued is enough
    assert grandchild["depth"] == 2
    err = error(
        await fleet.api.post(
            "/v1/jobs", json={"capability": "noop", "parent_id": grandchild["id"]}
        ),
        422,
        "DELEGATION_LIMIT",
    )
    assert err["details"] == {"limit": "depth", "max": 2, "parent_id": grandchild["id"]}
    await fleet.submit("noop", parent_id=top["id"])  # the third and last child
    replay = await fleet.submit("hold", parent_id=top["id"], idempotency_key="k1")
    assert replay["id"] == kids[0]["id"]  # a replay is not one more child
    err = error(
        await fleet.api.post("/v1/jobs", json={"capability": "noop", "parent_id": top["id"]}),
        422,
        "DELEGATION_LIMIT",
    )
    assert err["details"] == {"limit": "children", "max": 3, "parent_id": top["id"]}
    assert len((await fleet.api.get(f"/v1/jobs/{top['id']}")).json()["children"]) == 3
    r = await fleet.api.post(f"/v1/jobs/{top['id']}/cancel")
    assert r.status_code in (200, 202), r.text


async def test_cancelling_a_parent_cancels_its_whole_tree(fleet: Fleet) -> None:
    seen = fleet.seen["w1"]
    top = await fleet.submit("hold")
    await running(fleet, top["id"])
    child = await fleet.submit("hold", parent_id=top["id"])
    await running(fleet, child["id"])
    grandchild = await fleet.submit("hold", parent_id=child["id"])
    await running(fleet, grandchild["id"])
    queued = await fleet.submit("noop", parent_id=child["id"])  # may already have run
    r = await fleet.api.post(f"/v1/jobs/{top['id']}/cancel")
    assert r.status_code in (200, 202), r.text
    for job in (top, child, grandchild):
        assert (await fleet.wait(job["id"]))["status"] == "cancelled", job["id"]
    assert (await fleet.wait(queued["id"]))["status"] in ("cancelled", "succeeded")

    async def all_three_stopped() -> bool:  # confirmed on the worker: its calls were cancelled
        return seen.cancelled.count(top["correlation_id"]) == 3

    await wait_until(all_three_stopped, timeout=10, message="three calls cancelled on the worker")
