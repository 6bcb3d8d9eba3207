"""The text worker: statistics, keyword extraction, extractive summaries and chunking.
Tools: ``text_stats``, ``extract_keywords``, ``summarize``, ``chunk_text``
(see :mod:`workers.text.tools`).
"""

from __future__ import annotations

from workers.kit import Worker, WorkerSettings

__all__ = ["VERSION", "build"]

VERSION = "1.0.0"


def build(settings: WorkerSettings | None = None) -> Worker:
    """The text worker (default name ``text``)."""
    from workers.text.tools import tools

    return Worker(
        "text",
        tools=tools,
        settings=settings,
        version=VERSION,
        instructions="Text tools: statistics, keywords, extractive summaries, chunking.",
    )
