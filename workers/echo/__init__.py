"""The echo worker: the kit's minimal example, and the tools fleet tests, demo and bench use.

Tools: ``noop``, ``echo``, ``sleep``, ``fail``, ``progress`` (see :mod:`workers.echo.tools`).
"""

from __future__ import annotations

from workers.echo.tools import tools
from workers.kit import Worker, WorkerSettings

__all__ = ["VERSION", "build"]

VERSION = "1.0.0"


def build(settings: WorkerSettings | None = None) -> Worker:
    """The echo worker (default name ``echo``)."""
    return Worker(
        "echo",
        tools=tools,
        settings=settings,
        version=VERSION,
        instructions="Test and benchmark tools: noop, echo, sleep, fail, progress.",
    )
