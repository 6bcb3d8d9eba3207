"""A worker that is down, over the API: why and since when (``/v1/workers``), and what a submit
answers — NO_HEALTHY_WORKER, UNKNOWN_CAPABILITY, or accepted to wait — with real processes."""

from __future__ import annotations

import time
from importlib.metadata import version

import httpx
import pytest

from shared.serving import free_port
from tests.helpers import wait_until_sync
from tests.processes import supervisor, worker

pytestmark = pytest.mark.e2e


def _workers(url: str) -> dict[str, dict[str, object]]:
    return {w["url"]: w for w in httpx.get(f"{url}/v1/workers").json()["workers"]}


def test_a_worker_never_heard_from_makes_an_unknown_name_no_healthy_worker() -> None:
    port = free_port()
    dead = f"http://127.0.0.1:{port}/mcp"
    with (
        worker("echo") as echo,
        supervisor(FLEET_WORKERS=f"{echo.url},{dead}", FLEET_PROBE_INTERVAL_S="0.3") as sup,
    ):
        wait_until_sync(lambda: _workers(sup.url)[echo.url]["healthy"], timeout=30)
        started = time.time()
        down = wait_until_sync(lambda: _workers(sup.url)[dead].get("down_reason"), timeout=30)
        assert down == f"unreachable: cannot connect to 127.0.0.1:{port} (nothing listening there?)"
        view = _workers(sup.url)[dead]
        assert view["healthy"] is False and view["health"] == "down"
        assert isinstance(view["down_since"], float) and view["down_since"] <= started + 5
        up = _workers(sup.url)[echo.url]
        assert up["down_reason"] is None and up["down_since"] is None

        answer = httpx.post(f"{sup.url}/v1/jobs", json={"capability": "zzz", "input": {}})
        assert answer.status_code == 503
        error = answer.json()["error"]
        assert error["code"] == "NO_HEALTHY_WORKER"
        assert error["message"].startswith(
            f"no healthy worker offers capability 'zzz' right now: worker {dead} is down "
            f"(unreachable: cannot connect to 127.0.0.1:{port}"
        )
        assert [w["url"] for w in error["details"]["workers"]] == [dead]
        # a name a healthy worker serves is not affected
        ok = httpx.post(f"{sup.url}/v1/jobs", json={"capability": "noop", "input": {}})
        assert ok.status_code == 202
        assert httpx.get(f"{sup.url}/healthz").json() == {
            "status": "ok",
            "version": version("mcp-fleet"),
        }


def test_a_known_capability_whose_worker_went_down_is_accepted_and_waits_for_it() -> None:
    port = free_port()
    with (
        worker("echo", port=port) as echo,
        supervisor(FLEET_WORKERS=echo.url, FLEET_PROBE_INTERVAL_S="0.3") as sup,
    ):
        wait_until_sync(lambda: _workers(sup.url)[echo.url]["healthy"], timeout=30)
        unknown = httpx.post(f"{sup.url}/v1/jobs", json={"capability": "zzz", "input": {}})
        assert unknown.status_code == 422
        assert unknown.json()["error"]["code"] == "UNKNOWN_CAPABILITY"
        echo.stop()
        reason = wait_until_sync(lambda: _workers(sup.url)[echo.url].get("down_reason"), timeout=30)
        assert "cannot connect to" in str(reason)
        # every worker was heard from: an unknown name is still UNKNOWN_CAPABILITY
        still = httpx.post(f"{sup.url}/v1/jobs", json={"capability": "zzz", "input": {}})
        assert still.json()["error"]["code"] == "UNKNOWN_CAPABILITY"
        queued = httpx.post(f"{sup.url}/v1/jobs", json={"capability": "noop", "input": {}})
        assert queued.status_code == 202 and queued.json()["status"] == "queued"
        job_id = queued.json()["id"]
        with worker("echo", port=port):
            done = httpx.get(f"{sup.url}/v1/jobs/{job_id}", params={"wait": 30}, timeout=40)
            assert done.json()["status"] == "succeeded"
            assert _workers(sup.url)[echo.url]["down_reason"] is None
