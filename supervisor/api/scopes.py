"""Which scope each ``/v1`` route needs, and the dependencies that enforce it.

Every ``/v1`` route declares its scope where it is defined::

    @router.get("/jobs", dependencies=[needs(JOBS_READ)])

:func:`authenticate` (on the whole ``/v1`` router) finds the caller and puts its
:class:`~supervisor.api.auth.Principal` on ``request.state.principal`` (its actor on
``request.state.actor``); ``needs`` then answers 403 ``INSUFFICIENT_SCOPE`` to a principal
without the scope. A ``/v1`` route that declares no scope needs ``admin`` (fail closed), and
``tests/supervisor/test_api_scopes.py`` fails for it.

Also here: ``GET /.well-known/oauth-protected-resource`` (RFC 9728), published when JWTs are
accepted.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Security, params
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes
from starlette.routing import BaseRoute

from shared.errors import InsufficientScope, NotFound
from supervisor.api.auth import ADMIN, WELL_KNOWN, Authenticator, audit, principal_of
from supervisor.api.openapi import errors

__all__ = ["authenticate", "needs", "required_scope", "router"]


_BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="A static API token (FLEET_API_TOKENS) or a JWT access token from the issuer "
    "named at /.well-known/oauth-protected-resource. The scopes are jobs:read, jobs:write and "
    "admin (which implies the others).",
)


async def _scoped(
    request: Request,
    security: SecurityScopes,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
) -> None:
    for scope in security.scopes:
        check(request, scope)


def needs(scope: str) -> Any:
    """``dependencies=[needs(JOBS_READ)]``: the route needs ``scope`` (or ``admin``); the
    operation's ``security`` in ``/openapi.json`` names it."""
    return Security(_scoped, scopes=[scope])


def required_scope(route: BaseRoute) -> str | None:
    """The scope a route declared with :func:`needs`, or None."""
    for dependency in getattr(route, "dependencies", ()) if isinstance(route, APIRoute) else ():
        if isinstance(dependency, params.Security) and dependency.dependency is _scoped:
            return dependency.scopes[0] if dependency.scopes else None
    return None


def check(request: Request, scope: str) -> None:
    principal = principal_of(request)
    if principal.allows(scope):
        return
    if scope == ADMIN:
        target = f"{request.method} {request.url.path[:200]}"
        audit(request, "route.access", target, "denied", required_scope=scope)
    auth: Authenticator = request.app.state.auth
    raise InsufficientScope(
        f"this route needs the scope {scope!r}; the token has "
        f"{' '.join(sorted(principal.scopes)) or 'none'}",
        scope=scope,
        resource_metadata=auth.resource_metadata,
    )


async def authenticate(request: Request) -> None:
    """Find the caller (401 without a valid credential) and keep it on ``request.state``."""
    auth: Authenticator = request.app.state.auth
    principal = await auth.authenticate(request.headers.get("authorization"))
    request.state.principal = principal
    request.state.actor = principal.actor
    route = request.scope.get("route")
    if route is not None and required_scope(route) is None:
        check(request, ADMIN)  # a route that forgot its scope is for admins only


router = APIRouter()


@router.get(
    WELL_KNOWN,
    responses=errors(NotFound),
    summary="OAuth protected-resource metadata (RFC 9728)",
)
async def resource_metadata(request: Request) -> dict[str, Any]:
    """Where to get a token for this API: its issuer and scopes. Only when JWTs are accepted
    (``FLEET_JWKS_URL``); otherwise 404."""
    auth: Authenticator = request.app.state.auth
    if auth.verifier is None:
        raise NotFound("this supervisor accepts no JWTs (FLEET_JWKS_URL is not set)")
    return auth.metadata()


@router.get(WELL_KNOWN + "/{path:path}", include_in_schema=False)
async def resource_metadata_at_path(request: Request) -> dict[str, Any]:
    """The same document for a public URL with a path (RFC 9728 §3.1)."""
    return await resource_metadata(request)
