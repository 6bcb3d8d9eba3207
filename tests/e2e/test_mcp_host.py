"""MCP hosts that know nothing of the fleet, against a real supervisor process's ``/mcp``: the
Inspector's CLI (TypeScript), a FastMCP host with the tasks extension (its own venv), and
FastMCP clients of both protocol eras that lose their worker mid-call.

A peer that cannot be installed fails the test with the reason (never a skip).
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from supervisor.mcp.results import META_KEY
from tests.helpers import wait_until_sync
from tests.peers.install import PeerUnavailable, fastmcp_tasks_python, inspector_argv
from tests.processes import Proc, supervisor, worker

pytestmark = pytest.mark.e2e

TOKEN = "host-token"
FAST = {
    "FLEET_PROBE_INTERVAL_S": "0.5",
    "FLEET_BACKOFF_INITIAL_S": "0.05",
    "FLEET_BACKOFF_MAX_S": "0.2",
    "FLEET_API_TOKENS": TOKEN,
}
TASKS_CLIENT = Path(__file__).parents[1] / "peers" / "clients" / "tasks_client.py"


@pytest.fixture(scope="module")
def fleet() -> Iterator[tuple[Proc, list[Proc]]]:
    with _fleet() as procs:
        yield procs


@contextmanager
def _fleet() -> Iterator[tuple[Proc, list[Proc]]]:
    """A supervisor process with two echo workers (processes), all over HTTP."""
    with worker() as w1, worker() as w2:
        env = {**FAST, "FLEET_WORKERS": f"{w1.url},{w2.url}"}
        with supervisor(**env) as sup:
            with _api(sup) as api:
                wait_until_sync(lambda: _healthy(api) == 2, timeout=20, message="2 workers")
            yield sup, [w1, w2]


def _api(sup: Proc) -> httpx.Client:
    return httpx.Client(base_url=sup.url, timeout=30, headers={"Authorization": f"Bearer {TOKEN}"})


def _healthy(api: httpx.Client) -> int:
    return len([w for w in api.get("/v1/workers").json()["workers"] if w["healthy"]])


def _peer(get: Any) -> Any:
    try:
        return get()
    except PeerUnavailable as exc:
        pytest.fail(f"a foreign MCP host is unavailable: {exc}", pytrace=False)


def test_the_inspector_lists_the_catalog_and_calls_a_worker_tool(
    fleet: tuple[Proc, list[Proc]],
) -> None:
    sup, _ = fleet
    argv, cwd = _peer(inspector_argv)
    url = sup.url + "/mcp"
    auth = ["--header", f"Authorization: Bearer {TOKEN}"]
    listed = subprocess.run(
        [*argv, url, *auth, "--method", "tools/list"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr[-2000:]
    names = {t["name"] for t in json.loads(listed.stdout)["tools"]}
    assert {"echo", "sleep", "noop", "progress", "fleet_submit", "fleet_job"} <= names
    called = subprocess.run(
        [*argv, url, *auth, "--method", "tools/call", "--tool-name", "echo",
         "--tool-arg", "value=from the inspector"],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert called.returncode == 0, called.stderr[-2000:]
    result = json.loads(called.stdout)
    assert result["structuredContent"] == {"value": "from the inspector"}
    assert result["isError"] is False
    job_id = result["_meta"][META_KEY]["id"]
    with _api(sup) as api:
        assert api.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded"
    refused = subprocess.run(
        [*argv, url, "--method", "tools/list"], cwd=cwd, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert refused.returncode != 0  # no token: 401 before any MCP


def test_a_host_with_the_tasks_extension_creates_gets_and_cancels(
    fleet: tuple[Proc, list[Proc]],
) -> None:
    sup, _ = fleet
    python = _peer(fastmcp_tasks_python)
    done = subprocess.run(
        [str(python), str(TASKS_CLIENT), sup.url + "/mcp", TOKEN],
        capture_output=True, text=True, timeout=180,
        env={"FASTMCP_SHOW_SERVER_BANNER": "false", "FASTMCP_CHECK_FOR_UPDATES": "off",
             "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["echo_created_status"] == "working"
    assert seen["echo_status"] == "completed"
    assert seen["echo_result"] == {"value": "as a task"}
    assert seen["sleep_working_status"] == "working"
    assert "slept" in seen["sleep_status_message"]  # the worker's latest progress message
    assert seen["sleep_final_status"] == "cancelled"
    assert seen["plain_call_result"] == {"value": "transparent"}
    with _api(sup) as api:  # a task is a job
        echo = api.get(f"/v1/jobs/{seen['echo_task_id']}").json()
        assert echo["status"] == "succeeded" and echo["result"] == {"value": "as a task"}
        slept = api.get(f"/v1/jobs/{seen['sleep_task_id']}").json()
        assert slept["status"] == "cancelled"


@pytest.mark.parametrize("mode", ["modern", "legacy"])
async def test_a_call_survives_its_worker_dying_mid_call(mode: str) -> None:
    with _fleet() as (sup, workers):
        await _call_through_a_worker_crash(sup, workers, mode)


async def _call_through_a_worker_crash(sup: Proc, workers: list[Proc], mode: str) -> None:
    progressed = threading.Event()
    steps: list[float] = []

    async def progress(p: float, total: float | None, message: str | None) -> None:
        steps.append(p)
        progressed.set()

    transport = StreamableHttpTransport(
        sup.url + "/mcp", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    client = Client(transport, mode="legacy") if mode == "legacy" else Client(transport)
    killed: dict[str, Any] = {}

    def kill_the_worker_running_it() -> None:
        with _api(sup) as api:
            running = wait_until_sync(
                lambda: (
                    progressed.is_set()
                    and api.get(
                        "/v1/jobs", params={"status": "running", "capability": "sleep"}
                    ).json()["jobs"]
                ),
                timeout=20,
                message="the call's job running with progress",
            )
            job = running[0]
            victim = next(w for w in workers if job["worker"].split("@")[1] in w.url)
            killed["job"], killed["worker"] = job["id"], job["worker"]
            victim.kill()

    killer = threading.Thread(target=kill_the_worker_running_it)
    async with client:
        killer.start()
        result = await client.call_tool(
            "sleep", {"seconds": 2, "steps": 20}, progress_handler=progress, timeout=60
        )
    killer.join(30)
    meta = (result.meta or {})[META_KEY]
    assert meta["id"] == killed["job"]
    assert meta["status"] == "succeeded" and meta["attempts"] == 2
    assert meta["worker"] != killed["worker"]
    assert steps, "progress reached the host"
