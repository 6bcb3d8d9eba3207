"""Worker discovery: the static ``FLEET_WORKERS`` list plus Redis self-registrations, probed
periodically through ``get_capabilities`` (or ``tools/list`` for servers that know nothing of
our contract) and ``GET /health``.

    registry = Registry(pool, store, static_urls=["http://127.0.0.1:8701/mcp"], ...)
    await registry.refresh()          # one probe round (the run() loop repeats it)
    registry.catalog()["noop"]        # spec + which workers serve it
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from shared import (
    CAPABILITIES_TOOL,
    CapabilitiesReport,
    CapabilitySpec,
    Load,
    WorkerCallError,
    WorkerDropped,
    WorkerTimeout,
    WorkerUnreachable,
    get_logger,
    now,
)
from supervisor.breaker import Breaker
from supervisor.pool import WorkerCaller
from supervisor.store import Store

__all__ = ["Registry", "WorkerState"]

log = get_logger("fleet.registry")


@dataclass
class WorkerState:
    url: str
    name: str
    source: str
    breaker: Breaker
    version: str = "?"
    capabilities: dict[str, CapabilitySpec] = field(default_factory=dict)
    features: list[str] = field(default_factory=list)
    healthy: bool = False
    health: str = "unknown"
    last_seen: float | None = None
    load: Load = field(default_factory=Load)
    foreign: bool = False
    error: str | None = None
    service: str = ""

    def answers_to(self, pin: str) -> bool:
        """A job's ``worker`` pin matches the instance name, the URL or the service name."""
        return pin in (self.name, self.url, self.service)

    def view(self, in_flight: int) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "version": self.version,
            "service": self.service,
            "source": self.source,
            "health": self.health,
            "healthy": self.healthy,
            "capabilities": sorted(self.capabilities),
            "in_flight": in_flight,
            "reported_load": self.load.model_dump(),
            "breaker": self.breaker.state.value,
            "last_seen": self.last_seen,
            "protocol": "tools/list" if self.foreign else "get_capabilities",
            "error": self.error,
        }


def _health_url(mcp_url: str) -> str:
    base = mcp_url.rstrip("/")
    if base.endswith("/mcp"):
        base = base[: -len("/mcp")]
    return base + "/health"


class Registry:
    """What workers exist, what they serve and whether they are healthy right now."""

    def __init__(
        self,
        caller: WorkerCaller,
        store: Store,
        *,
        static_urls: list[str],
        probe_interval_s: float = 5.0,
        breaker_threshold: int = 5,
        breaker_reset_s: float = 10.0,
        probe_timeout_s: float = 5.0,
        foreign_concurrency: int = 16,
    ) -> None:
        self.foreign_concurrency = foreign_concurrency
        self.caller = caller
        self.store = store
        self.static_urls = list(static_urls)
        self.probe_interval_s = probe_interval_s
        self.probe_timeout_s = probe_timeout_s
        self.breaker_threshold = breaker_threshold
        self.breaker_reset_s = breaker_reset_s
        self.workers: dict[str, WorkerState] = {}
        self.probed = asyncio.Event()
        self._changed = asyncio.Condition()
        self._http = httpx.AsyncClient(timeout=probe_timeout_s)

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- discovery -------------------------------------------------------------------------

    async def refresh(self) -> None:
        """One round: find workers, probe each, and tell waiters what changed."""
        found: dict[str, tuple[str, str]] = {url: (url, "static") for url in self.static_urls}
        try:
            for reg in await self.store.registrations():
                found.setdefault(reg.url, (reg.name, "registered"))
        except Exception as exc:  # the store being down must not stop probing static workers
            log.warning("registry.registrations_failed", error=str(exc))
        for url, (name, source) in found.items():
            if url not in self.workers:
                self.workers[url] = WorkerState(
                    url=url,
                    name=name,
                    source=source,
                    breaker=Breaker(self.breaker_threshold, self.breaker_reset_s),
                )
        for url in list(self.workers):
            if url not in found:  # its registration lapsed: it is gone
                state = self.workers.pop(url)
                log.warning("registry.worker_gone", worker=state.name, url=url)
        await asyncio.gather(*(self.probe(w) for w in list(self.workers.values())))
        self.probed.set()
        await self.notify()

    async def probe(self, worker: WorkerState) -> None:
        was = worker.healthy
        try:
            await self._probe_capabilities(worker)
            worker.health = await self._probe_health(worker)
            worker.healthy = worker.health == "healthy"
            worker.last_seen = now()
            worker.error = None
        except WorkerCallError as exc:
            worker.healthy = False
            worker.health = "down"
            worker.error = exc.message
        if was != worker.healthy:
            log.info("registry.health_changed", worker=worker.name, healthy=worker.healthy)

    async def _probe_capabilities(self, worker: WorkerState) -> None:
        if not worker.foreign:
            try:
                raw = await self.caller.call(
                    worker.url, CAPABILITIES_TOOL, {}, timeout=self.probe_timeout_s
                )
                report = CapabilitiesReport.model_validate(raw)
                worker.service = report.service_name
                if worker.source == "static":  # replicas share a service name: add the address
                    worker.name = f"{report.service_name}@{urlsplit(worker.url).netloc}"
                worker.version = report.version
                worker.capabilities = report.capabilities
                worker.features = report.supported_features
                worker.load = report.load
                return
            except (WorkerUnreachable, WorkerTimeout, WorkerDropped):
                raise
            except (WorkerCallError, ValueError) as exc:
                log.info("registry.no_capabilities_tool", url=worker.url, reason=str(exc)[:200])
                worker.foreign = True
        tools = await self.caller.list_tools(worker.url, timeout=self.probe_timeout_s)
        caps = {}
        for tool in tools:
            if tool.name == CAPABILITIES_TOOL:
                continue
            hints = tool.annotations
            caps[tool.name] = CapabilitySpec(
                description=tool.description or "",
                input_schema=dict(tool.input_schema or {}),
                output_schema=dict(tool.output_schema) if tool.output_schema else None,
                idempotent=bool(hints and hints.idempotent_hint),
                max_concurrency=self.foreign_concurrency,
            )
        worker.capabilities = caps
        worker.load = Load(in_flight=0, max_concurrency=self.foreign_concurrency)
        info = self.caller.server_info(worker.url)
        if info and worker.source == "static":
            worker.name, worker.version = info

    async def _probe_health(self, worker: WorkerState) -> str:
        try:
            response = await self._http.get(_health_url(worker.url))
        except httpx.HTTPError:
            return "healthy"  # MCP answered; a server without /health is judged by that
        if response.status_code == 404:
            return "healthy"
        return "healthy" if response.status_code == 200 else "degraded"

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            await self.refresh()
            await asyncio.sleep(max(0.0, self.probe_interval_s - (time.monotonic() - started)))

    # -- views and waiting -----------------------------------------------------------------

    def mark_down(self, url: str, reason: str) -> None:
        worker = self.workers.get(url)
        if worker is not None and worker.healthy:
            worker.healthy = False
            worker.health = "down"
            worker.error = reason
            log.warning("registry.worker_down", worker=worker.name, reason=reason)

    def spec(self, capability: str) -> CapabilitySpec | None:
        for worker in self.workers.values():
            if capability in worker.capabilities:
                return worker.capabilities[capability]
        return None

    def catalog(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for worker in self.workers.values():
            for name, spec in worker.capabilities.items():
                entry = out.setdefault(name, {**spec.model_dump(), "workers": []})
                entry["workers"].append(
                    {"name": worker.name, "url": worker.url, "healthy": worker.healthy}
                )
        return dict(sorted(out.items()))

    async def notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_change(self, timeout: float) -> None:
        """Wait until workers change or a call slot frees, at most ``timeout`` seconds."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)
