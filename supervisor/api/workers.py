"""The worker routes: the workers this supervisor knows, and the capabilities they serve."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from supervisor.api.auth import JOBS_READ
from supervisor.api.deps import Svc
from supervisor.api.openapi import Catalog, WorkerList
from supervisor.api.scopes import needs

__all__ = ["router"]

router = APIRouter()


@router.get("/workers", response_model=WorkerList, dependencies=[needs(JOBS_READ)])
async def list_workers(svc: Svc) -> dict[str, Any]:
    return {
        "workers": [w.view(svc.pool.in_flight(w.url)) for w in svc.registry.workers.values()],
        "refused": svc.registry.refused(),
    }


@router.get("/capabilities", response_model=Catalog, dependencies=[needs(JOBS_READ)])
async def capabilities(svc: Svc) -> dict[str, Any]:
    return {"capabilities": svc.registry.catalog()}
