"""The supervisor API's own defences over real HTTP: the ``Host``/``Origin`` allowlists (DNS
rebinding, CSRF) and JSON-only bodies. (Tokens: test_api_scopes.py, test_api_jwt.py.)"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from shared import HEADER_CORRELATION_ID, SupervisorSettings
from shared.serving import serving
from supervisor.app import create_app

pytestmark = pytest.mark.e2e


@contextlib.asynccontextmanager
async def supervisor(bind: str = "127.0.0.1", **settings: Any) -> AsyncIterator[str]:
    """A supervisor on a port-0 socket bound to ``bind``; yields ``http://bind:PORT``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((bind, 0))
    base: dict[str, Any] = {"redis_url": "memory://", "workers": "", "api_tokens": ""}
    app = create_app(SupervisorSettings(**{**base, **settings}))
    async with serving(app, sockets=[sock]):
        yield f"http://{bind}:{sock.getsockname()[1]}"


async def get(url: str, path: str = "/v1/jobs", **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as http:
        return await http.get(url + path, headers=headers)


def port_of(url: str) -> int:
    port = httpx.URL(url).port
    assert port is not None
    return port


async def test_loopback_names_pass_and_other_hosts_get_421() -> None:
    async with supervisor() as url:
        port = port_of(url)
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "localhost"):
            assert (await get(url, Host=host)).status_code == 200, host
        for host in (f"evil.example:{port}", "127.0.0.1.nip.io", f"localhost.evil:{port}"):
            for path in ("/v1/jobs", "/healthz", "/metrics", "/openapi.json"):
                response = await get(url, path, Host=host)
                assert response.status_code == 421, (host, path)
                assert response.headers["content-type"] == "application/json"
                assert response.headers[HEADER_CORRELATION_ID]
                error = response.json()["error"]
                assert error["code"] == "HOST_NOT_ALLOWED"
                assert error["details"] == {"field": "header.Host", "host": host}
                assert "FLEET_ALLOWED_HOSTS" in error["message"]


async def test_a_probe_by_the_pod_ip_passes_without_an_exemption() -> None:
    """A kubelet probes ``http://<pod IP>:<port>/readyz`` with the pod IP as ``Host``; that
    is the address its connection arrives on. 127.0.0.2 plays the pod IP here: it is not on
    the allowlist (the bind host setting is 127.0.0.1), only the connection's own address."""
    async with supervisor(bind="127.0.0.2") as url:
        port = port_of(url)
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await get(url, path, Host=f"127.0.0.2:{port}")).status_code == 200, path
        # Another address of the same machine, which this connection did not arrive on.
        assert (await get(url, "/readyz", Host=f"127.0.0.3:{port}")).status_code == 421
        assert (await get(url, "/readyz", Host=f"10.1.2.3:{port}")).status_code == 421


async def test_bind_host_and_configured_hosts_pass() -> None:
    async with supervisor(
        host="fleet.local", allowed_hosts="supervisor,*.svc.cluster.local"
    ) as url:
        for host in ("fleet.local:8700", "supervisor:8700", "fleet.ns.svc.cluster.local"):
            assert (await get(url, Host=host)).status_code == 200, host
        assert (await get(url, Host="other:8700")).status_code == 421
    async with supervisor(allowed_hosts="*") as url:  # behind a proxy that checks Host
        assert (await get(url, Host="anything.example")).status_code == 200


async def test_origin_is_optional_but_must_be_allowed_when_present() -> None:
    async with supervisor(allowed_origins="https://dash.example,http://ops:*") as url:
        port = port_of(url)
        for origin in (
            "http://localhost:3000",
            "http://[::1]:5173",
            f"http://127.0.0.1:{port}",
            "https://dash.example",
            "http://ops:9000",
        ):
            assert (await get(url, Origin=origin)).status_code == 200, origin
        for origin in ("http://evil.example", "https://dash.example.evil.com", "null"):
            response = await get(url, Origin=origin)
            assert response.status_code == 403, origin
            error = response.json()["error"]
            assert error["code"] == "ORIGIN_NOT_ALLOWED"
            assert error["details"] == {"field": "header.Origin", "origin": origin}


async def test_a_rebinding_page_is_refused_before_the_token_is_read() -> None:
    async with supervisor(api_tokens="s3cret") as url:
        assert (await get(url, Host="evil.example")).status_code == 421
        assert (await get(url, Origin="http://evil.example")).status_code == 403
        assert (await get(url)).status_code == 401
        assert (await get(url, Authorization="Bearer s3cret")).status_code == 200


async def test_bodies_must_be_declared_json() -> None:
    job = b'{"capability": "noop"}'
    async with supervisor() as url, httpx.AsyncClient(base_url=url, timeout=5) as http:
        for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
            headers = {"content-type": content_type} if content_type else {}
            response = await http.post("/v1/jobs", content=job, headers=headers)
            assert response.status_code == 415, content_type
            error = response.json()["error"]
            assert error["code"] == "UNSUPPORTED_MEDIA_TYPE"
            assert error["details"]["content_type"] == content_type
            if content_type:
                assert repr(content_type) in error["message"]
        # JSON gets past the guard (422: no worker serves "noop" here), any JSON spelling too.
        for content_type in (
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/fleet+json",
        ):
            headers = {"content-type": content_type}
            response = await http.post("/v1/jobs", content=job, headers=headers)
            assert response.json()["error"]["code"] == "UNKNOWN_CAPABILITY", content_type
        # No body, no type needed (cancel takes none); GETs are not concerned.
        cancel = await http.post(f"/v1/jobs/{'0' * 32}/cancel")
        assert cancel.json()["error"]["code"] == "JOB_NOT_FOUND"
        assert (await http.get("/v1/jobs", headers={"content-type": "text/plain"})).is_success


async def test_openapi_declares_the_guards_errors() -> None:
    async with supervisor() as url:
        spec = (await get(url, "/openapi.json")).json()
    responses = spec["paths"]["/v1/jobs"]["post"]["responses"]
    for status, code in (("421", "HOST_NOT_ALLOWED"), ("415", "UNSUPPORTED_MEDIA_TYPE")):
        assert code in responses[status]["description"]
    assert "ORIGIN_NOT_ALLOWED" in responses["403"]["description"]


async def test_the_conformance_rebinding_requests_against_the_api() -> None:
    """The two requests of the MCP conformance scenario ``dns-rebinding-protection``, sent to
    the supervisor's API. The scenario itself needs an MCP endpoint (it expects a 2xx answer
    to ``initialize``), which the supervisor does not have; its refusal half applies as is."""
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
    async with supervisor() as url, httpx.AsyncClient(base_url=url, timeout=5) as http:
        evil = "evil.example.com"
        headers = {"Host": evil, "Origin": f"http://{evil}"}
        refused = await http.post("/v1/jobs", json=initialize, headers=headers)
        assert refused.status_code == 421
        own = httpx.URL(url).netloc.decode()
        headers = {"Host": own, "Origin": f"http://{own}"}
        passed = await http.post("/v1/jobs", json=initialize, headers=headers)
        assert passed.json()["error"]["code"] == "VALIDATION_ERROR"  # reached the route
