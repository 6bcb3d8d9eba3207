"""structlog set-up shared by every program: JSON off a TTY, a readable console on one.

Correlation id, job id and trace ids live in :mod:`structlog.contextvars`; bind them with
:func:`bind` and every line logged in that context carries them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog

__all__ = ["bind", "configure_logging", "get_logger"]


def configure_logging(fmt: str = "auto", level: str = "INFO", *, stream: Any = None) -> None:
    """Configure structlog and the stdlib root logger once, at an entrypoint."""
    out = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not getattr(out, "isatty", lambda: False)())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=getattr(out, "isatty", lambda: False)())
    )
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    # Libraries' stdlib log records (uvicorn, FastMCP, httpx) go through the same renderer,
    # so a container's output is one JSON document per line, whoever logged it.
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
        )
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), handlers=[handler], force=True)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


@contextmanager
def bind(**values: Any) -> Iterator[None]:
    """Bind values into the log context for the duration of a block."""
    # bind/reset by token: structlog's bound_contextvars copies the whole context to save
    # what it overwrites, several times the cost on a per-call path.
    tokens = structlog.contextvars.bind_contextvars(
        **{k: v for k, v in values.items() if v is not None}
    )
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
