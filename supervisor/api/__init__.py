"""The supervisor's HTTP API (FastAPI): :data:`router`, assembled from the route modules.

Routes only translate HTTP to store/registry calls and back. Every error leaves as
``{"error": {"code", "message", "details"}}`` (:mod:`supervisor.api.errors`).

- :mod:`~supervisor.api.jobs` — ``/v1/jobs``: submit, list, get, events, cancel
- :mod:`~supervisor.api.workflows` — ``/v1/workflows``: submit a DAG of steps, read its steps
- :mod:`~supervisor.api.workers` — ``/v1/workers``, ``/v1/capabilities``
- :mod:`~supervisor.api.admin` — ``/v1/queues``, ``/v1/dead-letters``, redrive
- :mod:`~supervisor.api.probes` — ``/healthz``, ``/readyz``, ``/metrics``
- :mod:`~supervisor.api.deps` — services, correlation header, job id in paths
- :mod:`~supervisor.api.scopes` — the scope each ``/v1`` route needs; RFC 9728 metadata
- :mod:`~supervisor.api.auth` — principals from static tokens and JWTs; the audit log
- :mod:`~supervisor.api.jwks` — JWT verification against the issuer's cached key set
- :mod:`~supervisor.api.validation` — what a submitted job must satisfy
- :mod:`~supervisor.api.limits` — what the API accepts from a client (patterns, strict JSON)
- :mod:`~supervisor.api.errors` — how errors leave the API (the exception handlers)
- :mod:`~supervisor.api.openapi` — the bodies and errors ``/openapi.json`` declares
- :mod:`~supervisor.api.middleware` — correlation id and request body limit (pure ASGI)
- :mod:`~supervisor.api.guards` — ``Host``/``Origin`` allowlists and JSON-only bodies (pure ASGI)
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from supervisor.api import admin, jobs, probes, scopes, workers, workflows
from supervisor.api.deps import correlation_header
from supervisor.api.openapi import COMMON_ERRORS, V1_ERRORS

__all__ = ["router"]

router = APIRouter(dependencies=[Depends(correlation_header)], responses=COMMON_ERRORS)

v1 = APIRouter(prefix="/v1", dependencies=[Depends(scopes.authenticate)], responses=V1_ERRORS)
for routes in (jobs, workflows, workers, admin):
    v1.include_router(routes.router)

router.include_router(v1)
router.include_router(probes.router)
router.include_router(scopes.router)
