"""Worker discovery: the static ``FLEET_WORKERS`` list plus Redis self-registrations, probed
periodically (``tools/list``, then ``get_capabilities`` where a worker speaks our contract)
and through ``GET /health``.

Identity:

- every instance has a unique, stable name, ``service@host:port`` (plus the path when it is
  not ``/mcp``), used by ``GET /v1/workers``, ``job.worker`` and pinning;
- a capability is (service, tool). Its public name is the bare tool name while one service
  offers it and ``service.tool`` when several do; the qualified name is always accepted.
  :meth:`Registry.resolve` turns a name into a :class:`Target` that also fixes the input
  schema's digest, so a job is only routed to a worker of that service with that schema.

Health: a worker that was up is marked down after ``down_after`` consecutive failed probes
(one failed probe is usually a blip), or at once when a call finds it unreachable.

    registry = Registry(pool, store, static_urls=["http://127.0.0.1:8701/mcp"], ...)
    await registry.refresh()          # one probe round (the run() loop repeats it)
    registry.resolve("noop")          # Target(service, tool, spec, digest)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
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
    UnknownCapability,
    WorkerCallError,
    get_logger,
    now,
)
from supervisor.dispatch.breaker import Breaker
from supervisor.pool import WorkerCaller
from supervisor.store import Store

__all__ = ["Registry", "Target", "WorkerState", "schema_digest"]

log = get_logger("fleet.registry")

TASKS_REQUIRED = (
    "requires MCP tasks (execution.taskSupport: required), which the fleet does not drive"
)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:/-]+")


def schema_digest(schema: dict[str, Any]) -> str:
    """A short, stable digest of an input schema."""
    canonical = json.dumps(schema, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Target:
    """What a job was validated against: the service, its tool and that tool's schema."""

    name: str
    service: str
    tool: str
    spec: CapabilitySpec
    digest: str


@dataclass
class WorkerState:
    url: str
    name: str
    source: str
    breaker: Breaker
    service: str = ""
    version: str = "?"
    capabilities: dict[str, CapabilitySpec] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)
    features: list[str] = field(default_factory=list)
    healthy: bool = False
    health: str = "unknown"
    last_seen: float | None = None
    load: Load = field(default_factory=Load)
    foreign: bool = False
    protocol: str = "?"
    error: str | None = None
    failures: int = 0
    downs: int = 0  # times it went from healthy to down: a flap counter
    probes: int = 0
    fixed_service: str | None = None

    def answers_to(self, pin: str) -> bool:
        """A job's ``worker`` pin matches the instance name, the URL or the service name."""
        return pin in (self.name, self.url, self.service)

    def serves(self, service: str, tool: str, digest: str | None) -> bool:
        return (
            self.service == service
            and tool in self.capabilities
            and (digest is None or self.digests.get(tool) == digest)
        )

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
            "excluded": dict(self.excluded),
            "in_flight": in_flight,
            "reported_load": self.load.model_dump(),
            "breaker": self.breaker.state.value,
            "last_seen": self.last_seen,
            "contract": "tools/list" if self.foreign else "get_capabilities",
            "protocol": self.protocol,
            "error": self.error,
            "consecutive_failures": self.failures,
            "downs": self.downs,
            "probes": self.probes,
        }


def instance_name(service: str, url: str) -> str:
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    suffix = "" if path in ("", "/mcp") else path
    return f"{service}@{parts.netloc}{suffix}"


def parse_worker_entry(entry: str) -> tuple[str | None, str]:
    """``service=URL`` or ``URL`` → (service or None, URL)."""
    name, sep, url = entry.partition("=")
    if sep and "://" not in name:
        return name.strip() or None, url.strip()
    return None, entry.strip()


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
        down_after: int = 2,
    ) -> None:
        self.foreign_concurrency = foreign_concurrency
        self.caller = caller
        self.store = store
        self.static = dict(parse_worker_entry(e)[::-1] for e in static_urls)
        self.probe_interval_s = probe_interval_s
        self.probe_timeout_s = probe_timeout_s
        self.breaker_threshold = breaker_threshold
        self.breaker_reset_s = breaker_reset_s
        self.down_after = down_after
        self.workers: dict[str, WorkerState] = {}
        self.probed = asyncio.Event()
        self._changed = asyncio.Condition()
        self._http = httpx.AsyncClient(timeout=probe_timeout_s)
        self.registrations_error: str | None = None
        """Why the last read of self-registrations failed (the store is down), or None."""
        self._names: dict[str, tuple[str, str]] = {}  # public or qualified name → (svc, tool)
        self._offered: dict[str, list[str]] = {}  # bare tool name → services offering it

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- discovery -------------------------------------------------------------------------

    async def refresh(self) -> None:
        """One round: find workers, probe each, and tell waiters what changed."""
        found: dict[str, tuple[str | None, str]] = {
            url: (service, "static") for url, service in self.static.items()
        }
        try:
            for reg in await self.store.registrations():
                found.setdefault(reg.url, (None, "registered"))
            self.registrations_error = None
        except Exception as exc:  # the store being down must not stop probing static workers
            log.warning("registry.registrations_failed", error=str(exc))
            self.registrations_error = str(exc)
            for url, state in self.workers.items():  # keep the last-known registrations
                if state.source == "registered":
                    found.setdefault(url, (state.fixed_service, "registered"))
        for url, (service, source) in found.items():
            if url not in self.workers:
                self.workers[url] = WorkerState(
                    url=url,
                    name=instance_name(service or "?", url),
                    source=source,
                    breaker=Breaker(self.breaker_threshold, self.breaker_reset_s),
                    fixed_service=service,
                )
        for url in list(self.workers):
            if url not in found:  # its registration lapsed: it is gone
                state = self.workers.pop(url)
                log.warning("registry.worker_gone", worker=state.name, url=url)
                with contextlib.suppress(Exception):
                    await self.caller.drop(url)
        await asyncio.gather(*(self.probe(w) for w in list(self.workers.values())))
        self._index()
        self.probed.set()
        await self.notify()

    async def probe(self, worker: WorkerState) -> None:
        was = worker.healthy
        worker.probes += 1
        try:
            await self._probe_capabilities(worker)
            worker.health = await self._probe_health(worker)
            worker.healthy = worker.health == "healthy"
            worker.last_seen = now()
            worker.error = None
            worker.failures = 0
        except Exception as exc:  # one bad worker reply never stops discovery
            worker.failures += 1
            worker.error = exc.message if isinstance(exc, WorkerCallError) else repr(exc)
            if not was or worker.failures >= self.down_after:
                worker.healthy = False
                worker.health = "down"
            else:
                log.info("registry.probe_failed", worker=worker.name, failures=worker.failures)
        if was and not worker.healthy:
            worker.downs += 1
        if not was and worker.healthy:
            worker.breaker.success()  # a probe that passes is a call that passed: close it
        if was != worker.healthy:
            log.info(
                "registry.health_changed",
                worker=worker.name,
                healthy=worker.healthy,
                error=worker.error,
            )

    async def _probe_capabilities(self, worker: WorkerState) -> None:
        info = await self.caller.connect(worker.url)
        worker.protocol = f"{info.protocol} ({info.dialect}{', session' if info.stateful else ''})"
        tools = await self.caller.list_tools(worker.url, timeout=self.probe_timeout_s)
        by_name = {str(t["name"]): t for t in tools}
        excluded = {
            name: TASKS_REQUIRED
            for name, tool in by_name.items()
            if ((tool.get("execution") or {}).get("taskSupport")) == "required"
        }
        if CAPABILITIES_TOOL in by_name:
            result = await self.caller.call(
                worker.url, CAPABILITIES_TOOL, {}, timeout=self.probe_timeout_s
            )
            report = CapabilitiesReport.model_validate(result.value)
            service, version = report.service_name, report.version
            caps = dict(report.capabilities)
            worker.features = report.supported_features
            worker.load = report.load
            worker.foreign = False
        else:
            service, version = info.name, info.version
            caps = {name: _spec(tool, self.foreign_concurrency) for name, tool in by_name.items()}
            worker.features = []
            worker.load = Load(in_flight=0, max_concurrency=self.foreign_concurrency)
            worker.foreign = True
        for name in excluded:
            caps.pop(name, None)
        worker.service = _UNSAFE.sub("-", worker.fixed_service or service) or "?"
        worker.name = instance_name(worker.service, worker.url)
        worker.version = version
        worker.capabilities = caps
        worker.digests = {name: schema_digest(spec.input_schema) for name, spec in caps.items()}
        worker.excluded = excluded

    async def _probe_health(self, worker: WorkerState) -> str:
        try:
            response = await self._http.get(_health_url(worker.url))
        except httpx.HTTPError:
            return "healthy"  # MCP answered; a server without /health is judged by that
        if response.status_code in (404, 405, 421):  # no /health (or not for this Host)
            return "healthy"
        return "healthy" if response.status_code == 200 else "degraded"

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            await self.refresh()
            await asyncio.sleep(max(0.0, self.probe_interval_s - (time.monotonic() - started)))

    # -- names -------------------------------------------------------------------------------

    def _index(self) -> None:
        offered: dict[str, set[str]] = {}
        for worker in self.workers.values():
            for tool in worker.capabilities:
                offered.setdefault(tool, set()).add(worker.service)
        names: dict[str, tuple[str, str]] = {}
        for tool, services in offered.items():
            for service in services:
                names[f"{service}.{tool}"] = (service, tool)
        for tool, services in offered.items():
            if len(services) == 1:
                names[tool] = (next(iter(services)), tool)
        self._names = names
        self._offered = {tool: sorted(services) for tool, services in offered.items()}

    def public_name(self, service: str, tool: str) -> str:
        return tool if len(self._offered.get(tool, ())) == 1 else f"{service}.{tool}"

    def resolve(self, name: str) -> Target:
        """The (service, tool, schema) a capability name means right now."""
        found = self._names.get(name)
        if found is None:
            services = self._offered.get(name)
            if services and len(services) > 1:
                choices = [f"{s}.{name}" for s in services]
                raise UnknownCapability(
                    f"{name!r} is offered by {len(services)} services; name one: "
                    + ", ".join(choices),
                    details={"field": "capability", "choices": choices},
                )
            raise UnknownCapability(
                f"no worker offers capability {name!r}",
                details={"field": "capability", "known": sorted(self.catalog())},
            )
        service, tool = found
        workers = [
            w for w in self.workers.values() if w.service == service and tool in w.capabilities
        ]
        if not workers:  # the catalog is being re-probed: the name will be back
            raise UnknownCapability(
                f"no worker offers capability {name!r} right now", details={"field": "capability"}
            )
        best = next((w for w in workers if w.healthy), workers[0])
        spec = best.capabilities[tool]
        return Target(self.public_name(service, tool), service, tool, spec, best.digests[tool])

    def spec(self, capability: str) -> CapabilitySpec | None:
        try:
            return self.resolve(capability).spec
        except UnknownCapability:
            return None

    def catalog(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for worker in self.workers.values():
            for tool, spec in worker.capabilities.items():
                name = self.public_name(worker.service, tool)
                entry = out.setdefault(
                    name,
                    {
                        **spec.model_dump(),
                        "service": worker.service,
                        "tool": tool,
                        "qualified_name": f"{worker.service}.{tool}",
                        "workers": [],
                    },
                )
                entry["workers"].append(
                    {
                        "name": worker.name,
                        "url": worker.url,
                        "healthy": worker.healthy,
                        "schema_digest": worker.digests.get(tool),
                    }
                )
        return dict(sorted(out.items()))

    # -- views and waiting -----------------------------------------------------------------

    def mark_down(self, url: str, reason: str) -> None:
        worker = self.workers.get(url)
        if worker is not None and worker.healthy:
            worker.healthy = False
            worker.downs += 1
            worker.health = "down"
            worker.error = reason
            log.warning("registry.worker_down", worker=worker.name, reason=reason)

    async def notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_change(self, timeout: float) -> None:
        """Wait until workers change or a call slot frees, at most ``timeout`` seconds."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)


def _spec(tool: dict[str, Any], concurrency: int) -> CapabilitySpec:
    hints = tool.get("annotations") or {}
    output = tool.get("outputSchema")
    return CapabilitySpec(
        description=str(tool.get("description") or ""),
        input_schema=dict(tool.get("inputSchema") or {}),
        output_schema=dict(output) if isinstance(output, dict) else None,
        idempotent=bool(isinstance(hints, dict) and hints.get("idempotentHint")),
        max_concurrency=concurrency,
    )
