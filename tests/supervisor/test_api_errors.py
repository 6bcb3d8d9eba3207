"""Every error status, reached with a bad request; nothing accepted is lost."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import httpx
import pytest

from shared import SupervisorSettings
from supervisor.server import InsecureBind, check_bind
from tests.supervisor.conftest import Fleet, start_fleet


@pytest.fixture
async def strict_fleet() -> AsyncIterator[Fleet]:
    async with AsyncExitStack() as stack:
        yield await start_fleet(
            stack, workers=1, api_tokens="tok-a,tok-b", queue_limit=2, max_body_bytes=4096
        )


def error(r: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["code"] == code, body
    assert body["message"]
    return dict(body)


AUTH = {"Authorization": "Bearer tok-a"}


async def test_auth_required(strict_fleet: Fleet) -> None:
    api = strict_fleet.api
    api.headers.pop("Authorization", None)
    r = await api.get("/v1/jobs")
    error(r, 401, "UNAUTHORIZED")
    assert r.headers["www-authenticate"] == "Bearer"
    e = error(
        await api.get("/v1/jobs", headers={"Authorization": "Bearer nope"}), 401, "INVALID_TOKEN"
    )
    assert e["details"] == {"reason": "unknown_token"}
    assert (await api.get("/v1/jobs", headers={"Authorization": "Bearer tok-b"})).status_code == 200
    assert (await api.get("/healthz")).status_code == 200  # probes stay open


async def test_bad_requests(strict_fleet: Fleet) -> None:
    api = strict_fleet.api
    api.headers.update(AUTH)
    error(
        await api.post(
            "/v1/jobs", content=b"{not json", headers={"content-type": "application/json"}
        ),
        400,
        "BAD_REQUEST",
    )
    error(await api.post("/v1/jobs", json=[1, 2]), 422, "VALIDATION_ERROR")
    e = error(
        await api.post("/v1/jobs", json={"capability": "noop", "inptu": {}}),
        422,
        "VALIDATION_ERROR",
    )
    assert e["details"]["field"] == "inptu"  # type: ignore[index]
    e = error(
        await api.post("/v1/jobs", json={"capability": "noop", "max_attempts": "lots"}),
        422,
        "VALIDATION_ERROR",
    )
    assert e["details"]["field"] == "max_attempts"  # type: ignore[index]
    e = error(await api.post("/v1/jobs", json={"capability": "nope"}), 422, "UNKNOWN_CAPABILITY")
    assert "noop" in e["details"]["known"]  # type: ignore[index]
    e = error(
        await api.post("/v1/jobs", json={"capability": "steps", "input": {"n": "x"}}),
        422,
        "INVALID_INPUT",
    )
    assert e["details"]["field"] == "input.n"  # type: ignore[index]
    e = error(
        await api.post("/v1/jobs", json={"capability": "steps", "input": {}}), 422, "INVALID_INPUT"
    )
    assert e["details"]["field"] == "input.n"  # type: ignore[index]
    e = error(
        await api.post("/v1/jobs", json={"capability": "noop", "worker": "ghost"}),
        422,
        "VALIDATION_ERROR",
    )
    error(await api.get("/v1/jobs/does-not-exist"), 404, "JOB_NOT_FOUND")
    error(await api.get("/v1/nowhere"), 404, "NOT_FOUND")
    error(await api.get("/v1/jobs", params={"limit": 0}), 422, "VALIDATION_ERROR")
    error(await api.get("/v1/jobs", params={"cursor": "abc"}), 422, "VALIDATION_ERROR")
    error(await api.post("/v1/dead-letters/nope/redrive"), 404, "JOB_NOT_FOUND")
    r = await api.post("/v1/jobs", json={"capability": "noop", "input": {"x": "a" * 5000}})
    error(r, 413, "PAYLOAD_TOO_LARGE")
    assert r.headers["x-correlation-id"]


async def test_queue_full_is_429_and_accepted_jobs_survive(strict_fleet: Fleet) -> None:
    api = strict_fleet.api
    api.headers.update(AUTH)
    held = []
    # 'hold' blocks on the worker: 8 fill its slots (max_concurrency 8), then 2 may queue.
    for _ in range(20):
        r = await api.post(
            "/v1/jobs", json={"capability": "hold", "worker": strict_fleet.worker_urls["w1"]}
        )
        if r.status_code == 429:
            assert int(r.headers["retry-after"]) >= 1
            assert r.json()["error"]["code"] == "QUEUE_FULL"
            break
        assert r.status_code == 202, r.text
        held.append(r.json()["id"])
    else:
        pytest.fail("admission control never refused")
    strict_fleet.seen["w1"].release.set()
    for job_id in held:
        done = (await api.get(f"/v1/jobs/{job_id}", params={"wait": 20})).json()
        assert done["status"] == "succeeded"


async def test_cancel_finished_is_409(strict_fleet: Fleet) -> None:
    api = strict_fleet.api
    api.headers.update(AUTH)
    job = (await api.post("/v1/jobs", json={"capability": "noop"})).json()
    assert (await api.get(f"/v1/jobs/{job['id']}", params={"wait": 10})).json()[
        "status"
    ] == "succeeded"
    error(await api.post(f"/v1/jobs/{job['id']}/cancel"), 409, "JOB_FINISHED")


async def test_wrong_method_is_405_naming_every_method_of_the_path(strict_fleet: Fleet) -> None:
    api = strict_fleet.api
    api.headers.update(AUTH)
    r = await api.put("/v1/jobs")
    error(r, 405, "METHOD_NOT_ALLOWED")
    assert r.headers["allow"] == "GET, POST"
    r = await api.delete(f"/v1/jobs/{'0' * 32}")
    assert r.headers["allow"] == "GET"
    assert (await api.post("/healthz")).headers["allow"] == "GET"


async def test_store_down_is_503() -> None:
    async with AsyncExitStack() as stack:
        fleet = await start_fleet(stack, workers=1, redis_url="redis://127.0.0.1:1/0")
        ready = await fleet.api.get("/readyz")
        assert ready.status_code == 503 and ready.json()["store"] == "unreachable"
        assert (await fleet.api.get("/healthz")).status_code == 200
        error(
            await fleet.api.post("/v1/jobs", json={"capability": "noop"}), 503, "STORE_UNAVAILABLE"
        )
        error(await fleet.api.get("/v1/jobs/" + "0" * 32), 503, "STORE_UNAVAILABLE")


def test_non_loopback_bind_needs_tokens() -> None:
    with pytest.raises(InsecureBind, match="FLEET_API_TOKENS"):
        check_bind(SupervisorSettings(host="0.0.0.0"))
    check_bind(SupervisorSettings(host="0.0.0.0", api_tokens="t"))
    check_bind(
        SupervisorSettings(host="0.0.0.0", jwks_url="https://i/jwks", jwt_issuer="https://i")
    )
    check_bind(SupervisorSettings(host="0.0.0.0", insecure=True))
    check_bind(SupervisorSettings(host="127.0.0.1"))
