"""The data worker: validate records against a JSON Schema, transform them with declarative
rules, and profile a dataset. Tools: ``validate_records``, ``transform_records``,
``profile_dataset`` (see :mod:`workers.data.tools`).
"""

from __future__ import annotations

from workers.kit import Worker, WorkerSettings

__all__ = ["VERSION", "build"]

VERSION = "1.0.0"


def build(settings: WorkerSettings | None = None) -> Worker:
    """The data worker (default name ``data``)."""
    from workers.data.tools import tools

    return Worker(
        "data",
        tools=tools,
        settings=settings,
        version=VERSION,
        instructions="Record-level data tools: validate against JSON Schema, transform, profile.",
    )
