"""A worker whose one tool writes each execution to a ledger file (``LEDGER_PATH``): a line
when it starts and one when it ends, so a test reads how often each key ran and how many
ran at once. ``python -m tests.e2e.ledger_worker --port 8799``."""

from __future__ import annotations

import asyncio
import os
from typing import Annotated

from pydantic import Field

from workers.kit import Toolset, Worker, main

tools = Toolset()


def _write(kind: str, key: str) -> None:
    """One line per write, appended in one system call: lines never interleave."""
    fd = os.open(os.environ["LEDGER_PATH"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{kind} {key}\n".encode())
    finally:
        os.close(fd)


@tools.tool(idempotent=True, max_concurrency=64, estimated_duration_ms=10)
async def ledger(
    key: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^\S+$")],
    seconds: Annotated[float, Field(ge=0, le=60)] = 0,
) -> dict[str, str]:
    """Write "start KEY" to the ledger, wait `seconds`, write "end KEY"; returns {"key"}."""
    _write("start", key)
    await asyncio.sleep(seconds)
    _write("end", key)
    return {"key": key}


def read(path: str) -> list[tuple[str, str]]:
    """The ledger's lines, as (start|end, key)."""
    try:
        with open(path) as f:
            return [(kind, key) for kind, key in (line.split() for line in f if line.strip())]
    except FileNotFoundError:
        return []


if __name__ == "__main__":
    main(lambda settings: Worker("ledger", tools=tools, settings=settings), prog="ledger_worker")
