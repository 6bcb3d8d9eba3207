"""``get_capabilities``: built from the registered tools, never written by hand.

The static part (descriptions and schemas as ``tools/list`` shows them, plus the kit's
metadata) is computed once; health and load are filled in live on every call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastmcp import FastMCP

from shared.models import CapabilitiesReport, CapabilitySpec
from shared.protocol import CAPABILITIES_TOOL
from workers.kit.concurrency import LoadTracker
from workers.kit.toolset import ToolSpec

__all__ = ["CAPABILITIES_DESCRIPTION", "SUPPORTED_FEATURES", "CapabilityCatalog"]

SUPPORTED_FEATURES = (
    "progress",
    "cancellation",
    "idempotency-key",
    "correlation-id",
    "trace-context",
    "busy-rejection",
    "structured-errors",
)

CAPABILITIES_DESCRIPTION = (
    "Describe this worker: call it first to learn which tools it offers, their input and "
    "output JSON schemas, expected duration, whether they are idempotent (safe to retry) and "
    "their concurrency limit, plus the worker's health and current load. Takes no arguments."
)


class CapabilityCatalog:
    def __init__(
        self,
        server: FastMCP[Any],
        *,
        service: str,
        version: str,
        specs: Sequence[ToolSpec],
        tracker: LoadTracker,
        health_status: Callable[[], Awaitable[str]],
        features: Sequence[str] = (),
    ) -> None:
        self.server = server
        self.service = service
        self.version = version
        self.specs = {s.name: s for s in specs}
        self.tracker = tracker
        self.health_status = health_status
        self.features = [*SUPPORTED_FEATURES, *features]
        self._static: dict[str, CapabilitySpec] | None = None

    async def _capabilities(self) -> dict[str, CapabilitySpec]:
        if self._static is None:
            out: dict[str, CapabilitySpec] = {}
            # list_tools with middleware gives the same (dereferenced) schemas as tools/list.
            for tool in await self.server.list_tools():
                spec = self.specs.get(tool.name)
                if tool.name == CAPABILITIES_TOOL or spec is None:
                    continue
                out[tool.name] = CapabilitySpec(
                    description=tool.description or "",
                    input_schema=tool.parameters,
                    output_schema=tool.output_schema,
                    estimated_duration_ms=spec.estimated_duration_ms,
                    idempotent=spec.idempotent,
                    max_concurrency=self.tracker.slots[tool.name].limit,
                )
            self._static = out
        return self._static

    async def report(self) -> CapabilitiesReport:
        report = CapabilitiesReport(
            service_name=self.service,
            version=self.version,
            capabilities=await self._capabilities(),
            supported_features=list(self.features),
            health_status=await self.health_status(),
            load=self.tracker.load(),
        )
        # An extra field (the model allows them): per-tool load, for finer routing.
        setattr(report, "tool_load", {k: v.model_dump() for k, v in self.tracker.by_tool().items()})  # noqa: B010
        return report
