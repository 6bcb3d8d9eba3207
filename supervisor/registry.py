"""The directory of workers: who exists, what each serves, whether it is healthy, and what a
capability name means right now. :mod:`supervisor.discovery` fills it; calls mark workers down.

Identity:

- every instance has a unique, stable name, ``service@host:port`` (plus the path when it is
  not ``/mcp``), used by ``GET /v1/workers``, ``job.worker`` and pinning;
- a capability is (service, tool). Its public name is the bare tool name while one service
  offers it and ``service.tool`` when several do; the qualified name is always accepted.
  :meth:`Registry.resolve` turns a name into a :class:`Target` that also fixes the input
  schema's digest, so a job is only routed to a worker of that service with that schema.

    registry = Registry()             # filled by Discovery(registry, pool, store, ...)
    Registry([worker_state, ...])     # or handed its workers (tests)
    registry.resolve("noop")          # Target(service, tool, spec, digest)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from shared import CapabilitySpec, Load, UnknownCapability, get_logger, now
from supervisor.dispatch.breaker import Breaker

__all__ = ["Registry", "Target", "WorkerState", "instance_name", "schema_digest"]

log = get_logger("fleet.registry")


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
    down_since: float | None = None
    """When it was last seen going down (or first failed, if never up); None while healthy."""
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

    def set_healthy(self, healthy: bool, at: float) -> None:
        """Health and, when it is down, since when: ``fleet workers`` shows both."""
        self.healthy = healthy
        self.down_since = None if healthy else (self.down_since or at)

    @property
    def down_reason(self) -> str | None:
        """Why it is not healthy, for people: the probe's or the call's error."""
        if self.healthy:
            return None
        if self.error:
            return self.error
        if self.health == "degraded":
            return "its /health does not answer 200"
        return "not probed yet" if not self.probes else self.health

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
            "down_reason": self.down_reason,
            "down_since": self.down_since,
        }


def instance_name(service: str, url: str) -> str:
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    suffix = "" if path in ("", "/mcp") else path
    return f"{service}@{parts.netloc}{suffix}"


class Registry:
    """What workers exist, what they serve and whether they are healthy right now."""

    def __init__(self, workers: Iterable[WorkerState] = ()) -> None:
        self.workers: dict[str, WorkerState] = {w.url: w for w in workers}
        self.probed = asyncio.Event()
        """Set once the first discovery round has finished."""
        self.registrations_error: str | None = None
        """Why the last read of self-registrations failed (the store is down), or None."""
        self.refused: Callable[[], list[dict[str, Any]]] = list
        """The workers discovery refuses to call, with the reason (``supervisor.trust``)."""
        self.listeners: list[Callable[[], None]] = []
        """Called when the capability names change (the MCP face tells its hosts)."""
        self._names: dict[str, tuple[str, str]] = {}  # public or qualified name → (svc, tool)
        self._offered: dict[str, list[str]] = {}  # bare tool name → services offering it
        self.index()

    # -- names -------------------------------------------------------------------------------

    def index(self) -> None:
        """Recompute the capability names from the workers' capabilities."""
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
        changed = names != self._names
        self._names = names
        self._offered = {tool: sorted(services) for tool, services in offered.items()}
        if changed:
            for listener in self.listeners:
                listener()

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

    def unheard(self) -> list[WorkerState]:
        """Workers that are down and were never heard from: any of them might serve a name
        the catalog does not know."""
        return [w for w in self.workers.values() if not w.healthy and not w.capabilities]

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

    # -- health reported by calls -----------------------------------------------------------------

    def mark_down(self, url: str, reason: str) -> None:
        worker = self.workers.get(url)
        if worker is not None and worker.healthy:
            worker.set_healthy(False, now())
            worker.downs += 1
            worker.health = "down"
            worker.error = reason
            log.warning("registry.worker_down", worker=worker.name, reason=reason)
