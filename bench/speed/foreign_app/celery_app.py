"""The Celery side of the comparison (runs in its own venv, never imports the project).

Two tasks: ``noop`` (nothing) and ``mcp_noop`` (calls the MCP tool ``noop`` at
``BENCH_MCP_URL`` through one FastMCP client per worker process, made on first use, after the
prefork fork). Broker and result backend: ``BENCH_REDIS_URL``.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from celery import Celery

app = Celery("bench", broker=os.environ["BENCH_REDIS_URL"], backend=os.environ["BENCH_REDIS_URL"])
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_expires=600,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

_client: Any = None
_loop: asyncio.AbstractEventLoop | None = None


def _mcp() -> tuple[asyncio.AbstractEventLoop, Any]:
    global _client, _loop
    if _client is None:
        from fastmcp import Client

        _loop = asyncio.new_event_loop()
        _client = Client(os.environ["BENCH_MCP_URL"])
        _loop.run_until_complete(_client.__aenter__())
    assert _loop is not None
    return _loop, _client


@app.task(name="noop")
def noop() -> dict[str, bool]:
    return {"ok": True}


@app.task(name="mcp_noop")
def mcp_noop() -> Any:
    loop, client = _mcp()
    result = loop.run_until_complete(client.call_tool("noop", {}))
    return result.structured_content
