"""Each scope enforced on each ``/v1`` route, for static tokens and JWTs alike, over HTTP.

The routes are the app's own (its ``/openapi.json``), so a new ``/v1`` route fails here until
:data:`SCOPES` says which scope it needs, and the route declares it (``needs(...)``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends

from shared import SupervisorSettings
from supervisor.api import scopes
from supervisor.api.auth import find_token
from supervisor.app import create_app
from tests.servers import serve_asgi
from tests.supervisor.issuer import ISSUER, Issuer

pytestmark = pytest.mark.e2e

RESOURCE = "https://fleet.test"

SCOPES = {
    ("POST", "/v1/jobs"): "jobs:write",
    ("GET", "/v1/jobs"): "jobs:read",
    ("GET", "/v1/jobs/{job_id}"): "jobs:read",
    ("GET", "/v1/jobs/{job_id}/events"): "jobs:read",
    ("POST", "/v1/jobs/{job_id}/cancel"): "jobs:write",
    ("POST", "/v1/workflows"): "jobs:write",
    ("GET", "/v1/workflows/{job_id}"): "jobs:read",
    ("GET", "/v1/workers"): "jobs:read",
    ("GET", "/v1/capabilities"): "jobs:read",
    ("GET", "/v1/queues"): "jobs:read",
    ("GET", "/v1/usage"): "jobs:read",
    ("GET", "/v1/dead-letters"): "admin",
    ("POST", "/v1/dead-letters/{job_id}/redrive"): "admin",
}
"""The scope each route needs: the README's table."""

DOCUMENT = create_app(SupervisorSettings()).openapi()
ROUTES = sorted(
    (method.upper(), path)
    for path, operations in DOCUMENT["paths"].items()
    if path.startswith("/v1/")
    for method in operations
)

# Who calls: static tokens (the legacy form has every scope) and JWT scope claims.
STATIC = {
    "reader": ("reader=r-tok:jobs:read", {"jobs:read"}),
    "writer": ("writer=w-tok:jobs:write", {"jobs:write"}),
    "both": ("both=rw-tok:jobs:read+jobs:write", {"jobs:read", "jobs:write"}),
    "admin": ("admin=a-tok:admin", {"admin"}),
    "legacy": ("legacy-tok", {"jobs:read", "jobs:write", "admin"}),
}
JWT_CLAIMS: dict[str, dict[str, Any]] = {
    "jwt-read": {"scope": "jobs:read openid"},
    "jwt-write": {"scope": None, "scp": ["jobs:write"]},  # no `scope` claim: `scp` only
    "jwt-admin": {"scope": "admin"},
    "jwt-none": {"scope": "profile email"},
}


@dataclass
class Api:
    http: httpx.AsyncClient
    tokens: dict[str, tuple[str, set[str]]]
    """Caller name → (bearer token, scopes)."""


@pytest.fixture(scope="module")
async def api() -> AsyncIterator[Api]:
    issuer = Issuer(audience=RESOURCE)
    async with issuer.serving():
        settings = SupervisorSettings(
            redis_url="memory://",
            workers="",
            api_tokens=",".join(entry for entry, _ in STATIC.values()),
            jwks_url=issuer.jwks_url,
            jwt_issuer=ISSUER,
            public_url=RESOURCE,
        )
        tokens = {
            name: (entry.split("=")[-1].split(":")[0], s) for name, (entry, s) in STATIC.items()
        }
        for name, claims in JWT_CLAIMS.items():
            granted = set((claims.get("scope") or "").split() + claims.get("scp", []))
            tokens[name] = (issuer.mint(**claims), granted & {"jobs:read", "jobs:write", "admin"})
        async with (
            serve_asgi(create_app(settings)) as base,
            httpx.AsyncClient(base_url=base, timeout=10) as http,
        ):
            yield Api(http, tokens)


def test_every_route_has_a_scope_and_declares_it() -> None:
    assert ROUTES, "no /v1 route found"
    missing = [route for route in ROUTES if route not in SCOPES]
    assert not missing, f"routes without a scope in SCOPES (and the README's table): {missing}"
    assert sorted(SCOPES) == ROUTES, "SCOPES names a route the app does not have"
    for method, path in ROUTES:
        operation = DOCUMENT["paths"][path][method.lower()]
        assert operation["security"] == [{"bearer": [SCOPES[method, path]]}], (method, path)
        assert "INSUFFICIENT_SCOPE" in operation["responses"]["403"]["description"]
        assert "INVALID_TOKEN" in operation["responses"]["401"]["description"]
    assert DOCUMENT["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


async def call(http: httpx.AsyncClient, method: str, path: str, token: str) -> httpx.Response:
    url = path.replace("{job_id}", "0" * 32)
    body = {"json": {"capability": "noop"}} if (method, path) == ("POST", "/v1/jobs") else {}
    headers = {"Authorization": f"Bearer {token}"}
    return await http.request(method, url, headers=headers, **body)


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_each_scope_on_each_route(api: Api, method: str, path: str) -> None:
    needed = SCOPES.get((method, path))
    assert needed is not None, f"{method} {path} has no scope in SCOPES"
    for caller, (token, granted) in api.tokens.items():
        response = await call(api.http, method, path, token)
        if needed in granted or "admin" in granted:
            # Past authorization: the route itself answers (no such job, no such capability).
            assert response.status_code not in (401, 403), (caller, response.text)
            continue
        assert response.status_code == 403, (caller, response.text)
        error = response.json()["error"]
        assert error["code"] == "INSUFFICIENT_SCOPE", (caller, error)
        assert error["details"] == {"required_scope": needed}
        assert repr(needed) in error["message"]
        assert response.headers["www-authenticate"] == (
            f'Bearer error="insufficient_scope", scope="{needed}", '
            f'resource_metadata="{RESOURCE}/.well-known/oauth-protected-resource"'
        )


async def test_no_token_and_unknown_tokens_get_401_on_every_route(api: Api) -> None:
    for method, path in ROUTES:
        response = await api.http.request(method, path.replace("{job_id}", "0" * 32))
        assert response.status_code == 401, (method, path)
        assert response.json()["error"]["code"] == "UNAUTHORIZED"
        unknown = await call(api.http, method, path, "r-tok-")
        assert unknown.status_code == 401 and unknown.json()["error"]["code"] == "INVALID_TOKEN"


async def test_a_route_without_a_scope_is_for_admins_only() -> None:
    """Fail closed: a ``/v1`` route that forgot ``needs(...)`` asks for ``admin``."""
    settings = SupervisorSettings(workers="", api_tokens="r=r-tok:jobs:read,a=a-tok:admin")
    app = create_app(settings)
    forgot = APIRouter(prefix="/v1", dependencies=[Depends(scopes.authenticate)])

    @forgot.get("/forgotten")
    async def forgotten() -> dict[str, str]:
        return {"ok": "yes"}

    app.include_router(forgot)
    async with serve_asgi(app) as base, httpx.AsyncClient(base_url=base) as http:
        reader = await http.get("/v1/forgotten", headers={"Authorization": "Bearer r-tok"})
        assert reader.status_code == 403
        assert reader.json()["error"]["details"] == {"required_scope": "admin"}
        admin = await http.get("/v1/forgotten", headers={"Authorization": "Bearer a-tok"})
        assert admin.json() == {"ok": "yes"}


def test_static_tokens_are_compared_whole() -> None:
    entries = SupervisorSettings(api_tokens="alpha-token,b=beta-token:jobs:read").api_token_entries
    found = find_token("beta-token", entries)
    assert found is not None and found.name == "b" and found.scopes == {"jobs:read"}
    alpha = find_token("alpha-token", entries)
    assert alpha is not None and alpha.name == "token-1"
    for given in ("alpha", "alpha-token-", "ALPHA-TOKEN", "", "beta-token:jobs:read", "b"):
        assert find_token(given, entries) is None, given
    assert find_token("alpha-token", []) is None
