"""DNS-rebinding protection (``Host``/``Origin`` allowlists) and HTTP keep-alive, over HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from shared.settings import SupervisorSettings, WorkerSettings
from tests.workers.conftest import base_of, served
from workers import echo
from workers.kit import parse_settings
from workers.kit.hosts import allowed_hosts
from workers.kit.server import KEEP_ALIVE_S

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "host-test", "version": "0"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}
PROBE_S: float = SupervisorSettings.model_fields["probe_interval_s"].default


def settings(**kw: Any) -> WorkerSettings:
    base: dict[str, Any] = {"redis_url": None, "advertise_url": None, "worker_token": None}
    return WorkerSettings(**{**base, **kw})


# -- settings and the allowlist ---------------------------------------------------------------


def test_allowlists_read_comma_separated_env_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_ALLOWED_HOSTS", " worker-data, *.internal ,")
    monkeypatch.setenv("FLEET_ALLOWED_ORIGINS", "https://dash.example")
    env = WorkerSettings()
    assert env.allowed_hosts == ["worker-data", "*.internal"]
    assert env.allowed_origins == ["https://dash.example"]
    flags = parse_settings(["--allowed-hosts", "a,b", "--allowed-origins", "http://x:*"], prog="t")
    assert flags.allowed_hosts == ["a", "b"]  # flags override the environment
    assert flags.allowed_origins == ["http://x:*"]
    monkeypatch.delenv("FLEET_ALLOWED_HOSTS")
    assert WorkerSettings().allowed_hosts == []


def test_allowed_hosts_add_bind_and_advertised_hosts_but_not_wildcards() -> None:
    loopback = ["127.0.0.1", "::1", "localhost"]
    assert allowed_hosts([]) == loopback
    assert allowed_hosts([], bind_host="0.0.0.0") == loopback
    assert allowed_hosts([], bind_host="::") == loopback
    assert allowed_hosts([], bind_host="[fd00::5]") == sorted([*loopback, "fd00::5"])
    assert allowed_hosts(
        ["Worker-Data"], advertise_url="http://10.0.0.7:8701/mcp", bind_host="w.local"
    ) == sorted([*loopback, "10.0.0.7", "w.local", "worker-data"])


def test_keep_alive_outlasts_the_supervisors_probe_period() -> None:
    assert PROBE_S < KEEP_ALIVE_S


# -- over HTTP --------------------------------------------------------------------------------


async def _post(url: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as http:
        return await http.post(url, json=INITIALIZE, headers={**MCP_HEADERS, **headers})


def _port(url: str) -> int:
    port = httpx.URL(url).port
    assert port is not None
    return port


@pytest.mark.e2e
async def test_loopback_names_pass_and_other_hosts_get_421_with_a_json_error() -> None:
    async with served(echo.build(settings())) as url:
        port = _port(url)
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "localhost"):
            response = await _post(url, Host=host)
            assert response.status_code == 200, (host, response.text)
        for host in (f"evil.example:{port}", "127.0.0.1.nip.io", f"localhost.evil.example:{port}"):
            response = await _post(url, Host=host)
            assert response.status_code == 421, host
            assert response.headers["content-type"] == "application/json"
            error = response.json()["error"]
            assert error["code"] == "HOST_NOT_ALLOWED" and error["field"] == "Host"
            assert "FLEET_ALLOWED_HOSTS" in error["hint"] and error["retryable"] is False
        async with httpx.AsyncClient(timeout=5) as http:
            # Probes are guarded too: health checks use loopback, supervisors the worker's URL.
            assert (await http.get(base_of(url) + "/health")).status_code == 200
            bad = {"Host": "evil.example"}
            refused = await http.get(base_of(url) + "/health", headers=bad)
            assert refused.status_code == 421
            assert refused.json()["error"]["code"] == "HOST_NOT_ALLOWED"


@pytest.mark.e2e
async def test_configured_advertised_and_bind_hosts_pass() -> None:
    worker = echo.build(
        settings(
            host="worker.local",  # the bind host (the socket itself is on 127.0.0.1)
            allowed_hosts=["worker-data", "*.svc.cluster.local"],
            advertise_url="http://10.9.8.7:8701/mcp",
        )
    )
    async with served(worker) as url:
        port = _port(url)
        for host in ("worker-data:8701", "echo.fleet.svc.cluster.local", "10.9.8.7:8701"):
            assert (await _post(url, Host=host)).status_code == 200, host
        assert (await _post(url, Host=f"worker.local:{port}")).status_code == 200
        assert (await _post(url, Host="worker-text:8701")).status_code == 421


@pytest.mark.e2e
async def test_origin_is_optional_but_must_be_allowed_when_present() -> None:
    worker = echo.build(settings(allowed_origins=["https://dash.example", "http://ops:*"]))
    async with served(worker) as url:
        port = _port(url)
        assert (await _post(url)).status_code == 200  # programs send no Origin
        for origin in (
            "http://localhost:6274",  # a page on this machine (e.g. the MCP Inspector)
            "http://[::1]:3000",
            f"http://127.0.0.1:{port}",  # same origin
            "https://dash.example",
            "http://ops:9000",
        ):
            assert (await _post(url, Origin=origin)).status_code == 200, origin
        for origin in ("http://evil.example", "https://dash.example.evil.com", "null"):
            response = await _post(url, Origin=origin)
            assert response.status_code == 403, origin
            error = response.json()["error"]
            assert error["code"] == "ORIGIN_NOT_ALLOWED" and error["field"] == "Origin"


@pytest.mark.e2e
async def test_host_check_runs_before_the_worker_token() -> None:
    async with served(echo.build(settings(worker_token="s3cret"))) as url:
        assert (await _post(url, Host="evil.example")).status_code == 421
        assert (await _post(url)).status_code == 401
        ok = await _post(url, Authorization="Bearer s3cret")
        assert ok.status_code == 200


@pytest.mark.e2e
async def test_an_idle_connection_survives_a_probe_period() -> None:
    """The worker must not close an idle keep-alive connection before a prober reuses it."""
    limits = httpx.Limits(keepalive_expiry=PROBE_S * 4)
    async with (
        served(echo.build(settings())) as url,
        httpx.AsyncClient(timeout=5, limits=limits) as http,
    ):
        first = await http.get(base_of(url) + "/health")
        before = _client_addr(first)
        # Not synchronisation: the idle time is what is under test (uvicorn's default 5 s
        # keep-alive would close the connection during it).
        await asyncio.sleep(PROBE_S + 0.5)
        second = await http.get(base_of(url) + "/health")
        after = _client_addr(second)
    assert first.status_code == second.status_code == 200
    assert before == after, "the worker closed the idle connection; the prober reconnected"


def _client_addr(response: httpx.Response) -> Any:
    return response.extensions["network_stream"].get_extra_info("client_addr")
