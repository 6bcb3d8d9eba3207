"""Declaring tools: a :class:`Toolset` collects functions and the kit metadata for each.

A toolset is a plain, import-time list of definitions (like a router); nothing runs until a
:class:`~workers.kit.Worker` is built from it at the entrypoint, with its settings.

>>> tools = Toolset()
>>> @tools.tool(idempotent=True, estimated_duration_ms=1)
... async def ping() -> dict[str, bool]:
...     '''Check the worker answers. Needs nothing; returns {"ok": true}.'''
...     return {"ok": True}
>>> [spec.name for spec in tools]
['ping']
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["ToolSpec", "Toolset"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """One tool and what the kit needs to know about it beyond its signature."""

    fn: Callable[..., Any]
    name: str
    description: str | None = None
    idempotent: bool = False
    """Running it twice with the same input is harmless: a supervisor may retry it freely."""
    read_only: bool = False
    """It changes nothing outside itself (MCP ``readOnlyHint``)."""
    estimated_duration_ms: int | None = None
    max_concurrency: int | None = None
    """Calls of this tool run at once; ``None`` uses the worker's ``max_concurrency``."""


class Toolset:
    """An ordered collection of tool definitions."""

    def __init__(self) -> None:
        self._specs: dict[str, ToolSpec] = {}

    def tool(
        self,
        *,
        name: str | None = None,
        description: str | None = None,
        idempotent: bool = False,
        read_only: bool = False,
        estimated_duration_ms: int | None = None,
        max_concurrency: int | None = None,
    ) -> Callable[[F], F]:
        """Register an async function as a tool. Its docstring is the description."""

        def register(fn: F) -> F:
            spec = ToolSpec(
                fn=fn,
                name=name or fn.__name__,
                description=description or _describe(fn),
                idempotent=idempotent,
                read_only=read_only,
                estimated_duration_ms=estimated_duration_ms,
                max_concurrency=max_concurrency,
            )
            if spec.name in self._specs:
                raise ValueError(f"tool {spec.name!r} is declared twice")
            if max_concurrency is not None and max_concurrency < 1:
                raise ValueError("max_concurrency must be at least 1")
            self._specs[spec.name] = spec
            return fn

        return register

    def __iter__(self) -> Iterator[ToolSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)


def _describe(fn: Callable[..., Any]) -> str | None:
    """The docstring as one paragraph per blank-line block (hard wraps joined)."""
    doc = inspect.getdoc(fn)
    if not doc:
        return None
    return "\n\n".join(re.sub(r"\s*\n\s*", " ", p).strip() for p in doc.split("\n\n"))
