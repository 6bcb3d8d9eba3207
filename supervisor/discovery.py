"""Discovery: finding workers and probing them, to keep the :class:`Registry` current.

Workers come from the static ``FLEET_WORKERS`` list plus Redis self-registrations; each round
probes every one (``tools/list``, then ``get_capabilities`` where a worker speaks our
contract) and ``GET /health``.

Trust: every worker found passes :class:`supervisor.trust.WorkerTrust` first (the signature
of its registration, the URL allowlist); one that fails is never probed nor called, and only
the ones that pass are admitted to a credential.

Health: a worker that was up is marked down after ``down_after`` consecutive failed probes
(one failed probe is usually a blip), or at once when a call finds it unreachable.

    discovery = Discovery(registry, pool, store, static_urls=["http://127.0.0.1:8701/mcp"])
    await discovery.refresh()         # one probe round (the run() loop repeats it)
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from typing import Any

import httpx
from pydantic import ValidationError

from shared import (
    CAPABILITIES_TOOL,
    CapabilitiesReport,
    CapabilitySpec,
    Load,
    StoreUnavailable,
    WorkerCallError,
    get_logger,
    now,
)
from supervisor.dispatch.breaker import Breaker
from supervisor.registry import Registry, WorkerState, instance_name, schema_digest
from supervisor.trust import WorkerTrust
from supervisor.types import Registrations, WorkerCaller

__all__ = ["Discovery", "parse_worker_entry"]

log = get_logger("fleet.registry")

TASKS_REQUIRED = (
    "requires MCP tasks (execution.taskSupport: required), which the fleet does not drive"
)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:/-]+")
_CONNECT_FAILED = re.compile(r"Cannot connect to host (\S+) ssl:\S+ \[Connect call failed [^\]]*\]")


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


class Discovery:
    """Finds workers and probes them, one round every ``probe_interval_s`` (:meth:`run`)."""

    def __init__(
        self,
        registry: Registry,
        caller: WorkerCaller,
        store: Registrations,
        *,
        static_urls: list[str],
        probe_interval_s: float = 5.0,
        breaker_threshold: int = 5,
        breaker_reset_s: float = 10.0,
        probe_timeout_s: float = 5.0,
        foreign_concurrency: int = 16,
        down_after: int = 2,
        trust: WorkerTrust | None = None,
    ) -> None:
        self.registry = registry
        self.trust = trust or WorkerTrust()
        registry.refused = self.trust.views
        self.foreign_concurrency = foreign_concurrency
        self.caller = caller
        self.store = store
        self.static = dict(parse_worker_entry(e)[::-1] for e in static_urls)
        self.probe_interval_s = probe_interval_s
        self.probe_timeout_s = probe_timeout_s
        self.breaker_threshold = breaker_threshold
        self.breaker_reset_s = breaker_reset_s
        self.down_after = down_after
        self._http = httpx.AsyncClient(timeout=probe_timeout_s)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def refresh(self) -> None:
        """One round: find workers, probe each, and re-index the registry."""
        trust = self.trust
        trust.begin_round()
        found: dict[str, tuple[str | None, str]] = {}
        for url, service in self.static.items():
            if trust.refusal(url, source="static", name=service) is None:
                found[url] = (service, "static")
                trust.admit(url, service)
        workers = self.registry.workers
        try:
            for reg in await self.store.registrations():
                if reg.url in found:
                    continue
                if trust.refusal(reg.url, source="registered", name=reg.name, reg=reg) is None:
                    found[reg.url] = (None, "registered")
                    trust.admit(reg.url, reg.name)
            self.registry.registrations_error = None
        except Exception as exc:  # the store being down must not stop probing static workers
            # An outage is logged once by the store's health; each round only at DEBUG.
            outage = isinstance(exc, StoreUnavailable)
            (log.debug if outage else log.warning)("registry.registrations_failed", error=str(exc))
            self.registry.registrations_error = str(exc)
            trust.keep_refused()
            for url, state in workers.items():  # keep the last-known registrations
                if state.source == "registered":
                    found.setdefault(url, (state.fixed_service, "registered"))
        trust.end_round()
        for url, (service, source) in found.items():
            if url not in workers:
                workers[url] = WorkerState(
                    url=url,
                    name=instance_name(service or "?", url),
                    source=source,
                    breaker=Breaker(self.breaker_threshold, self.breaker_reset_s),
                    fixed_service=service,
                )
        for url in list(workers):
            if url not in found:  # its registration lapsed (or was refused): it is gone
                state = workers.pop(url)
                trust.revoke(url)
                log.warning("registry.worker_gone", worker=state.name, url=url)
                with contextlib.suppress(Exception):
                    await self.caller.drop(url)
        await asyncio.gather(*(self.probe(w) for w in list(workers.values())))
        self.registry.index()
        self.registry.probed.set()

    async def probe(self, worker: WorkerState) -> None:
        was = worker.healthy
        worker.probes += 1
        try:
            await self._probe_capabilities(worker)
            worker.health = await self._probe_health(worker)
            worker.set_healthy(worker.health == "healthy", now())
            worker.last_seen = now()
            worker.error = None
            worker.failures = 0
        except Exception as exc:  # one bad worker reply never stops discovery
            worker.failures += 1
            worker.error = probe_error(exc, worker.url)
            if not was or worker.failures >= self.down_after:
                worker.set_healthy(False, now())
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


def probe_error(exc: Exception, url: str) -> str:
    """A failed probe as one line for ``fleet workers``: the worker's error as the caller
    classified it (without the URL, which is shown beside it), or what was wrong with its
    answer."""
    if isinstance(exc, WorkerCallError):
        message = exc.message.removeprefix(f"worker {url} ")
        return _CONNECT_FAILED.sub(r"cannot connect to \1 (nothing listening there?)", message)
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"bad capabilities report: {where}: {first['msg']}"[:300]
    return f"{type(exc).__name__}: {exc}"[:300] if str(exc) else type(exc).__name__


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
