"""Who is calling: the :class:`Principal` a bearer token stands for, the :class:`Authenticator`
that finds it (static tokens, then JWTs), and :func:`audit`, the log of what principals did.

A static token (``FLEET_API_TOKENS``, ``[name=]token[:scope+scope]``) is compared with
``hmac.compare_digest`` against every configured token; anything else shaped like a JWT is
verified by :class:`supervisor.api.jwks.JwtVerifier`. A JWT's scopes are its ``scope`` claim
(space-separated, RFC 8693/9068) or ``scp`` (a list); ``admin`` implies every other scope.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from starlette.requests import Request

from shared import FleetError, SupervisorSettings, get_logger
from shared.errors import InvalidToken, Unauthorized
from shared.settings import SCOPES, TENANT_PATTERN, ApiToken

if TYPE_CHECKING:  # imported when JWTs are configured: PyJWT brings cryptography: 9 MB of RSS
    from supervisor.api.jwks import JwtVerifier

__all__ = [
    "ADMIN",
    "JOBS_READ",
    "JOBS_WRITE",
    "WELL_KNOWN",
    "Authenticator",
    "Principal",
    "audit",
    "audited",
    "find_token",
    "metadata_url",
    "principal_of",
    "scopes_of",
]

JOBS_READ, JOBS_WRITE, ADMIN = SCOPES
WELL_KNOWN = "/.well-known/oauth-protected-resource"

audit_log = get_logger("fleet.audit")


@dataclass(frozen=True)
class Principal:
    """The caller: ``actor`` (a JWT's ``sub``, a static token's name) and its scopes."""

    actor: str
    scopes: frozenset[str]
    via: Literal["token", "jwt", "none"]
    """How it authenticated: a static token, a JWT, or not at all (auth is off)."""
    tenant: str | None = None
    """The tenant it acts for (``FLEET_TOKEN_TENANTS``, or the JWT's tenant claim); None:
    no tenant, it sees every job."""

    def allows(self, scope: str) -> bool:
        return ADMIN in self.scopes or scope in self.scopes

    @property
    def scoped_to(self) -> str | None:
        """The only tenant whose jobs it may see, or None when it sees all (``admin``, or no
        tenant)."""
        return None if ADMIN in self.scopes else self.tenant

    def sees(self, tenant: str | None) -> bool:
        """Whether it may see a job of ``tenant``."""
        return self.scoped_to is None or self.scoped_to == tenant

    @property
    def limited_as(self) -> str:
        """Whose budget its submissions count against: its tenant's, else its own."""
        return tenant_budget(self.tenant) if self.tenant else f"actor:{self.actor}"


def tenant_budget(tenant: str) -> str:
    """The name a tenant's limits are kept under in the store."""
    return f"tenant:{tenant}"


ANONYMOUS = Principal("anonymous", frozenset(SCOPES), "none")
"""Everyone, when the supervisor has neither API tokens nor a JWT issuer."""


def find_token(given: str, tokens: Sequence[ApiToken]) -> ApiToken | None:
    """The entry whose secret is ``given``, in time that does not depend on where the first
    differing character is (``hmac.compare_digest``, every token compared)."""
    raw = given.encode()
    found = None
    for token in tokens:
        if hmac.compare_digest(raw, token.secret.encode()):
            found = token
    return found


def scopes_of(claims: dict[str, Any]) -> frozenset[str]:
    """The known scopes of a JWT's ``scope`` (space-separated) or ``scp`` (list) claim.

    >>> sorted(scopes_of({"scope": "jobs:read openid"})), sorted(scopes_of({"scp": ["admin"]}))
    (['jobs:read'], ['admin'])
    """
    granted: set[str] = set()
    for claim in (claims.get("scope"), claims.get("scp")):
        if isinstance(claim, str):
            granted.update(claim.split())
        elif isinstance(claim, list):
            granted.update(s for s in claim if isinstance(s, str))
    return frozenset(granted & set(SCOPES))


def metadata_url(resource: str) -> str:
    """The URL of ``resource``'s RFC 9728 document: the well-known path goes between the
    origin and the resource's own path.

    >>> metadata_url("https://fleet.example"), metadata_url("https://x.example/fleet")
    ('https://fleet.example/.well-known/oauth-protected-resource', \
'https://x.example/.well-known/oauth-protected-resource/fleet')
    """
    scheme, _, rest = resource.partition("://")
    host, slash, path = rest.partition("/")
    return f"{scheme}://{host}{WELL_KNOWN}{slash}{path}".rstrip("/")


class Authenticator:
    """Turns an ``Authorization`` header into a :class:`Principal`, or refuses it (401)."""

    def __init__(
        self,
        settings: SupervisorSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tokens = settings.api_token_entries
        self.token_tenants = settings.token_tenants
        self.tenant_claim = settings.jwt_tenant_claim
        self.enabled = settings.auth_enabled
        self.resource = settings.resource_url
        self.issuer = settings.jwt_issuer
        self.verifier: JwtVerifier | None = None
        if settings.jwks_url and settings.jwt_issuer:
            from supervisor.api.jwks import JwtVerifier  # only then: see the imports above

            self.verifier = JwtVerifier(
                jwks_url=settings.jwks_url,
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience or self.resource,
                algorithms=settings.jwt_algorithms,
                leeway_s=settings.jwt_leeway_s,
                cache_s=settings.jwks_cache_s,
                refresh_min_s=settings.jwks_refresh_min_s,
                clock=clock,
            )
        self.resource_metadata = metadata_url(self.resource) if self.verifier else None

    async def aclose(self) -> None:
        if self.verifier is not None:
            await self.verifier.aclose()

    async def authenticate(self, authorization: str | None) -> Principal:
        if not self.enabled:
            return ANONYMOUS
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized(
                "missing bearer token: send 'Authorization: Bearer <token>'",
                resource_metadata=self.resource_metadata,
            )
        static = find_token(token, self.tokens)
        if static is not None:
            tenant = self.token_tenants.get(static.name)
            return Principal(static.name, static.scopes, "token", tenant)
        if self.verifier is not None and token.count(".") == 2:
            try:
                claims = await self.verifier.verify(token)
            except InvalidToken as exc:
                exc.resource_metadata = self.resource_metadata
                raise
            actor = claims.get("sub") or claims.get("client_id") or "unknown"
            tenant = self._tenant_of(claims)
            return Principal(str(actor)[:200], scopes_of(claims), "jwt", tenant)
        raise InvalidToken(
            "the bearer token is not one of the API tokens"
            + (" nor a JWT" if self.verifier is not None else ""),
            details={"reason": "unknown_token"},
            resource_metadata=self.resource_metadata,
        )

    def _tenant_of(self, claims: dict[str, Any]) -> str | None:
        """The JWT's tenant claim; one that is not a tenant's name refuses the token (a
        caller whose tenant cannot be told must not see every job)."""
        tenant = claims.get(self.tenant_claim)
        if tenant is None:
            return None
        if not isinstance(tenant, str) or not TENANT_PATTERN.fullmatch(tenant):
            raise InvalidToken(
                f"the JWT's {self.tenant_claim!r} claim is not a tenant name (1-64 letters, "
                "digits, '.', '_' or '-')",
                details={"reason": "bad_tenant"},
                resource_metadata=self.resource_metadata,
            )
        return tenant

    def metadata(self) -> dict[str, Any]:
        """The RFC 9728 protected-resource metadata document."""
        return {
            "resource": self.resource,
            "authorization_servers": [self.issuer],
            "scopes_supported": list(SCOPES),
            "bearer_methods_supported": ["header"],
            "resource_name": "mcp-fleet supervisor",
        }


def principal_of(request: Request) -> Principal:
    """The request's principal (``request.state.principal``), set once it authenticated."""
    principal: Principal = getattr(request.state, "principal", ANONYMOUS)
    return principal


def audit(request: Request, action: str, target: str, outcome: str, **fields: Any) -> None:
    """One structured ``audit`` log line: who (``actor``, ``via``) did what to what, and how
    it ended (``ok``, ``denied``, or the error code). Never a credential."""
    who = principal_of(request)
    if who.tenant is not None:
        fields["tenant"] = who.tenant
    audit_log.info(
        "audit",
        actor=who.actor,
        via=who.via,
        action=action,
        target=target,
        outcome=outcome,
        **fields,
    )


@contextmanager
def audited(request: Request, action: str, target: str) -> Iterator[None]:
    """Audit the block: ``ok`` when it ends, the error's code when it raises one."""
    try:
        yield
    except FleetError as exc:
        audit(request, action, target, exc.code)
        raise
    except BaseException:
        audit(request, action, target, "error")
        raise
    audit(request, action, target, "ok")
