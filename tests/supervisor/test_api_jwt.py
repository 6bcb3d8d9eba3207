"""JWT access tokens on the real API over HTTP: tokens minted here with local key pairs, the
issuer's key set served by a real local HTTP server; refusals that say why, key rotation
without a restart, the RFC 9728 document, and the audit log of admin actions."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import jwt
import pytest
from fastmcp import Client
from pydantic import ValidationError
from structlog.testing import capture_logs

from shared import SupervisorSettings
from supervisor.api.auth import Authenticator
from supervisor.app import create_app
from tests.servers import serve_asgi
from tests.supervisor.conftest import start_fleet
from tests.supervisor.issuer import ISSUER, Clock, Issuer, Key, new_key

RESOURCE = "https://fleet.test"
METADATA = f"{RESOURCE}/.well-known/oauth-protected-resource"
OPS = "ops-secret-token"


@contextlib.asynccontextmanager
async def supervisor(
    issuer: Issuer, clock: Clock, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """A supervisor accepting ``issuer``'s JWTs (and one static admin token), over HTTP."""
    settings = SupervisorSettings(
        redis_url="memory://",
        workers="",
        api_tokens=f"ops={OPS}:admin",
        jwks_url=issuer.jwks_url,
        jwt_issuer=ISSUER,
        public_url=RESOURCE,
        **overrides,
    )
    app = create_app(settings, auth=Authenticator(settings, clock=clock))
    async with serve_asgi(app) as base, httpx.AsyncClient(base_url=base, timeout=10) as http:
        yield http


@pytest.fixture
async def issuer() -> AsyncIterator[Issuer]:
    async with Issuer(audience=RESOURCE).serving() as running:
        yield running


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def refused(response: httpx.Response, token: str, reason: str) -> dict[str, Any]:
    """A 401 ``INVALID_TOKEN`` for ``reason``, with the RFC 6750/9728 challenge and no echo
    of the token anywhere in the answer."""
    assert response.status_code == 401, (reason, response.text)
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == "INVALID_TOKEN", error
    assert error["details"]["reason"] == reason, error
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer error="invalid_token", error_description="'), challenge
    assert f'resource_metadata="{METADATA}"' in challenge
    assert token not in response.text and token not in str(response.headers)
    return error


async def test_a_valid_jwt_is_accepted(issuer: Issuer) -> None:
    async with supervisor(issuer, Clock()) as http:
        for key in (new_key("ES256"), new_key("EdDSA")):  # each algorithm of the default list
            issuer.keys.append(key)
            issuer.published.append(key)
        for key in issuer.keys:
            response = await http.get("/v1/jobs", headers=bearer(issuer.mint(key)))
            assert response.status_code == 200, (key.alg, response.text)
        # Within the leeway (30 s) an expired token still passes: clocks drift.
        assert (await http.get("/v1/jobs", headers=bearer(issuer.mint(ttl_s=-10)))).is_success


async def test_refused_jwts_say_what_failed(issuer: Issuer) -> None:
    impostor = Key(issuer.keys[0].kid, "RS256", new_key("RS256").private)  # same kid, other key
    at = int(time.time())
    cases = {  # reason: (token, what the message says)
        "expired": (issuer.mint(ttl_s=-120), "expired"),
        "wrong_audience": (issuer.mint(aud="https://other.test"), "audience"),
        "wrong_issuer": (issuer.mint(iss="https://evil.test"), "issuer"),
        "bad_signature": (issuer.mint(impostor), "signature"),
        "unknown_key": (issuer.mint(kid="no-such-key"), "no key with kid 'no-such-key'"),
        "not_yet_valid": (issuer.mint(nbf=at + 600), "not valid yet"),
        "missing_claim": (issuer.mint(exp=None), "lacks a required claim"),
    }
    none_alg = jwt.encode({"iss": ISSUER, "aud": RESOURCE, "exp": at + 60}, None, algorithm="none")
    hmac_alg = jwt.encode(
        {"iss": ISSUER, "aud": RESOURCE, "exp": at + 60},
        "a-secret-of-at-least-32-bytes-length",
        algorithm="HS256",
        headers={"kid": issuer.keys[0].kid},
    )
    async with supervisor(issuer, Clock()) as http:
        for reason, (token, says) in cases.items():
            error = refused(await http.get("/v1/jobs", headers=bearer(token)), token, reason)
            assert says in error["message"], error
        assert error["details"]["claim"] == "exp"  # the last case: which claim is missing
        for token in (none_alg, hmac_alg):  # never `none`, never HMAC with a key set
            refused(await http.get("/v1/jobs", headers=bearer(token)), token, "bad_algorithm")
        refused(await http.get("/v1/jobs", headers=bearer("a.b.c")), "a.b.c", "malformed")
        not_a_jwt = await http.get("/v1/jobs", headers=bearer("nope"))
        refused(not_a_jwt, "nope", "unknown_token")
        assert "nor a JWT" in not_a_jwt.json()["error"]["message"]


async def test_a_rotated_key_is_used_without_restart_and_fetches_are_rate_limited(
    issuer: Issuer,
) -> None:
    clock = Clock()
    async with supervisor(issuer, clock, jwks_refresh_min_s=30, jwks_cache_s=300) as http:
        old = issuer.keys[0]
        assert (await http.get("/v1/jobs", headers=bearer(issuer.mint()))).is_success
        assert issuer.hits == 1
        new = new_key("ES256")
        token = issuer.mint(new)
        refused(await http.get("/v1/jobs", headers=bearer(token)), token, "unknown_key")
        assert issuer.hits == 1  # the set was fetched less than 30 s ago
        issuer.published.append(new)  # the issuer rotates
        refused(await http.get("/v1/jobs", headers=bearer(token)), token, "unknown_key")
        clock.now += 31
        assert (await http.get("/v1/jobs", headers=bearer(token))).is_success
        assert issuer.hits == 2  # an unknown kid fetched the set once more, and found it
        for _ in range(20):  # made-up kids cannot make the supervisor fetch again and again
            made_up = issuer.mint(new, kid=uuid.uuid4().hex)
            refused(await http.get("/v1/jobs", headers=bearer(made_up)), made_up, "unknown_key")
        assert issuer.hits == 2
        # The old key leaves the set; once the cache is old the set is fetched and it is gone.
        issuer.published.remove(old)
        assert (await http.get("/v1/jobs", headers=bearer(issuer.mint(old)))).is_success
        clock.now += 301
        gone = issuer.mint(old)
        refused(await http.get("/v1/jobs", headers=bearer(gone)), gone, "unknown_key")
        assert issuer.hits == 3
        assert (await http.get("/v1/jobs", headers=bearer(token))).is_success


async def test_an_unreachable_key_set(issuer: Issuer) -> None:
    clock = Clock()
    issuer.down = True
    async with supervisor(issuer, clock) as http:
        for _ in range(3):
            response = await http.get("/v1/jobs", headers=bearer(issuer.mint()))
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "JWKS_UNAVAILABLE"
        assert issuer.hits == 1  # no fetch per request while it is down
        assert (await http.get("/v1/jobs", headers=bearer(OPS))).is_success  # static still work
        issuer.down = False
        clock.now += 31
        assert (await http.get("/v1/jobs", headers=bearer(issuer.mint()))).is_success
        issuer.down = True  # down again: the cached set stays in use past its age
        clock.now += 400
        assert (await http.get("/v1/jobs", headers=bearer(issuer.mint()))).is_success
        assert issuer.hits == 3


async def test_protected_resource_metadata(issuer: Issuer) -> None:
    async with supervisor(issuer, Clock()) as http:
        response = await http.get("/.well-known/oauth-protected-resource")
        assert response.status_code == 200
        assert response.json() == {
            "resource": RESOURCE,
            "authorization_servers": [ISSUER],
            "scopes_supported": ["jobs:read", "jobs:write", "admin"],
            "bearer_methods_supported": ["header"],
            "resource_name": "mcp-fleet supervisor",
        }
        anonymous = await http.get("/v1/jobs")
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["code"] == "UNAUTHORIZED"
        assert anonymous.headers["www-authenticate"] == f'Bearer resource_metadata="{METADATA}"'
    # Without a JWT issuer there is no document and the challenge is plain.
    settings = SupervisorSettings(redis_url="memory://", workers="", api_tokens="t")
    async with serve_asgi(create_app(settings)) as base, httpx.AsyncClient(base_url=base) as http:
        missing = await http.get("/.well-known/oauth-protected-resource")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"
        assert (await http.get("/v1/jobs")).headers["www-authenticate"] == "Bearer"


def test_settings_of_the_resource_server() -> None:
    derived = SupervisorSettings(host="0.0.0.0", port=9000)
    assert derived.resource_url == "http://127.0.0.1:9000"
    assert SupervisorSettings(host="::1", port=1).resource_url == "http://[::1]:1"
    assert SupervisorSettings(public_url="https://f.example/").resource_url == "https://f.example"
    assert not derived.auth_enabled
    jwt_only = SupervisorSettings(jwks_url="http://i/jwks", jwt_issuer="http://i", host="::")
    assert jwt_only.auth_enabled  # the bind rule counts a JWT issuer as auth
    for algorithms in ("none", "RS256,HS256", ""):
        with pytest.raises(ValidationError, match="jwt_algorithms"):
            SupervisorSettings(jwt_algorithms=algorithms)
    with pytest.raises(ValidationError, match="FLEET_JWKS_URL and FLEET_JWT_ISSUER"):
        SupervisorSettings(jwks_url="http://i/jwks")
    for entry, says in (
        ("a,s3cret:jobs:raed", "entry 2"),
        ("x=:admin", "entry 1"),
        ("s3cret==", "cannot contain"),
    ):
        with pytest.raises(ValidationError, match=says) as caught:
            SupervisorSettings(api_tokens=entry)
        assert "s3cret" not in str(caught.value).replace(entry, "")


async def test_admin_actions_are_audited_without_credentials(issuer: Issuer) -> None:
    async with AsyncExitStack() as stack:
        fleet = await start_fleet(
            stack,
            workers=1,
            api_tokens=f"ops={OPS}:admin,app=app-secret:jobs:read+jobs:write",
            jwks_url=issuer.jwks_url,
            jwt_issuer=ISSUER,
            public_url=RESOURCE,
        )
        failed = await fleet.submit("fail", {"code": "NOPE"}, max_attempts=1)
        assert (await fleet.wait(failed["id"]))["status"] == "failed"
        held = await fleet.submit("hold")
        admin_jwt = issuer.mint(sub="bob", scope="admin openid")
        api = fleet.api
        with capture_logs() as logs:
            denied = await api.post(
                f"/v1/dead-letters/{failed['id']}/redrive", headers=bearer("app-secret")
            )
            assert denied.status_code == 403
            assert denied.json()["error"]["details"] == {"required_scope": "admin"}
            assert (await api.get("/v1/dead-letters", headers=bearer(admin_jwt))).is_success
            redriven = await api.post(
                f"/v1/dead-letters/{failed['id']}/redrive", headers=bearer(admin_jwt)
            )
            assert redriven.status_code == 202
            cancelled = await api.post(
                f"/v1/jobs/{held['id']}/cancel", headers=bearer("app-secret")
            )
            assert cancelled.status_code in (200, 202)
            missing = await api.post(f"/v1/jobs/{'0' * 32}/cancel", headers=bearer(admin_jwt))
            assert missing.status_code == 404
        audit = [
            {k: e[k] for k in ("actor", "via", "action", "target", "outcome")}
            for e in logs
            if e["event"] == "audit"
        ]
        assert audit == [
            {
                "actor": "app",
                "via": "token",
                "action": "route.access",
                "target": f"POST /v1/dead-letters/{failed['id']}/redrive",
                "outcome": "denied",
            },
            {"actor": "bob", "via": "jwt", "action": "dead_letters.list", "target": "*",
             "outcome": "ok"},
            {"actor": "bob", "via": "jwt", "action": "dead_letter.redrive",
             "target": failed["id"], "outcome": "ok"},
            {"actor": "app", "via": "token", "action": "job.cancel", "target": held["id"],
             "outcome": "ok"},
            {"actor": "bob", "via": "jwt", "action": "job.cancel", "target": "0" * 32,
             "outcome": "JOB_NOT_FOUND"},
        ]  # fmt: skip
        everything = json.dumps(logs, default=str)
        for secret in (OPS, "app-secret", admin_jwt):
            assert secret not in everything


async def test_the_mcp_face_takes_the_same_jwts(issuer: Issuer) -> None:
    """``/mcp`` authenticates like ``/v1``: a valid JWT with ``jobs:read`` lists the tools;
    an expired one gets the same 401 ``INVALID_TOKEN`` before any MCP is spoken."""
    async with supervisor(issuer, Clock()) as http:
        url = str(http.base_url).rstrip("/") + "/mcp"
        async with Client(url, auth=issuer.mint(scope="jobs:read")) as client:
            assert "fleet_job" in {t.name for t in await client.list_tools()}
        expired = issuer.mint(ttl_s=-600)
        answer = await http.post(
            "/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}},
            headers={**bearer(expired), "Accept": "application/json, text/event-stream"},
        )
        refused(answer, expired, "expired")
