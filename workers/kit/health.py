"""``GET /health`` and ``GET /ready``.

``/health`` answers 200 ``{"status": "healthy", ...}`` or 503 ``{"status": "degraded", ...}``
with the state of each component the worker depends on; ``/ready`` answers 200 while the
worker takes calls and 503 once it drains. Neither needs the worker token.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from starlette.requests import Request
from starlette.responses import JSONResponse

from workers.kit.middleware import Runtime

__all__ = ["HealthMonitor", "RegistrationState"]

_PING_TIMEOUT_S = 1.0


@dataclass
class RegistrationState:
    enabled: bool = False
    last_ok: float | None = None
    last_error: str | None = None


class HealthMonitor:
    def __init__(self, runtime: Runtime, *, redis_configured: bool) -> None:
        self.rt = runtime
        self.redis_configured = redis_configured
        self.redis: aioredis.Redis | None = None
        self.registration = RegistrationState()

    async def components(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {
            "server": {
                "status": "draining" if self.rt.draining else "ok",
                "in_flight": self.rt.tracker.in_flight,
            },
            "idempotency": {"status": "ok", "backend": self.rt.idempotency.backend},
        }
        if self.redis_configured:
            out["redis"] = await self._check_redis()
            if out["redis"]["status"] != "ok":
                out["idempotency"]["status"] = "unavailable"
        reg = self.registration
        if reg.enabled:
            out["registration"] = {
                "status": "ok" if reg.last_error is None and reg.last_ok else "failing",
                "last_ok": reg.last_ok,
                "error": reg.last_error,
            }
        return out

    async def _check_redis(self) -> dict[str, Any]:
        if self.redis is None:
            return {"status": "down", "error": "not connected (worker not started)"}
        started = time.perf_counter()
        try:
            await asyncio.wait_for(self.redis.ping(), _PING_TIMEOUT_S)
        except Exception as exc:  # any failure to answer is "down"; the reason is reported
            return {"status": "down", "error": f"{type(exc).__name__}: {exc}"[:300]}
        return {"status": "ok", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}

    async def status(self) -> tuple[str, dict[str, dict[str, Any]]]:
        components = await self.components()
        bad = [
            name
            for name, c in components.items()
            if name != "server" and c.get("status") not in ("ok", "disabled")
        ]
        return ("degraded" if bad else "healthy"), components

    async def health_status(self) -> str:
        status, _ = await self.status()
        return "draining" if self.rt.draining else status

    async def health_endpoint(self, request: Request) -> JSONResponse:
        status, components = await self.status()
        return JSONResponse(
            {"status": status, "service": self.rt.service, "components": components},
            status_code=200 if status == "healthy" else 503,
        )

    async def ready_endpoint(self, request: Request) -> JSONResponse:
        ready = not self.rt.draining
        return JSONResponse(
            {"ready": ready, "in_flight": self.rt.tracker.in_flight},
            status_code=200 if ready else 503,
        )
