"""The probe routes, outside ``/v1`` and without a token: liveness, readiness, metrics."""

from __future__ import annotations

import functools
import importlib.metadata

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from supervisor.api.deps import Svc
from supervisor.api.openapi import Health, Readiness
from supervisor.metrics import BREAKER_VALUES

__all__ = ["router"]

router = APIRouter()


@functools.cache
def _version() -> str:
    try:
        return importlib.metadata.version("mcp-fleet")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return "unknown"


@router.get("/healthz", response_model=Health)
async def healthz() -> dict[str, str]:
    return {"status": "ok", "version": _version()}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={
        503: {
            "model": Readiness,
            "description": "The store is unreachable (``store_outage`` says since when and "
            "why), or a background loop is down (degraded).",
        }
    },
)
async def readyz(svc: Svc) -> JSONResponse:
    ok = await svc.store.ping()  # a try like any other: it ends an outage the moment it answers
    down = dict(svc.loops.down)
    status = "unavailable" if not ok else "degraded" if down else "ready"
    body: dict[str, object] = {"status": status, "store": "ok" if ok else "unreachable"}
    outage = svc.store.health.outage
    if not ok and outage is not None:
        body["store_outage"] = outage.as_json()
    body["loops"] = down
    return JSONResponse(body, status_code=200 if status == "ready" else 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(svc: Svc) -> Response:
    m = svc.metrics
    try:
        for capability, depth in (await svc.store.queue_depths()).items():
            m.queue_depth.labels(capability).set(depth)
    except Exception:  # metrics must render even when the store is down
        pass
    m.worker_healthy.clear()  # departed workers leave no series behind
    m.breaker_state.clear()
    for w in svc.registry.workers.values():
        m.worker_healthy.labels(w.name, w.url).set(1 if w.healthy else 0)
        m.breaker_state.labels(w.name, w.url).set(BREAKER_VALUES[w.breaker.state.value])
    return Response(m.render(), media_type="text/plain; version=0.0.4")
