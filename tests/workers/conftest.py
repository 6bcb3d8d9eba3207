"""Fixtures for the worker tests: captured JSON logs, pre-bound sockets, HTTP workers."""

from __future__ import annotations

import io
import json
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import structlog

from shared.logs import configure_logging
from workers.kit import Worker


class LogLines:
    def __init__(self, buffer: io.StringIO) -> None:
        self.buffer = buffer

    def records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.buffer.getvalue().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def events(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("event") == name]


@pytest.fixture
def logs() -> Iterator[LogLines]:
    """structlog configured as in production (JSON), into a buffer; restored afterwards."""
    buffer = io.StringIO()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configure_logging("json", "DEBUG", stream=buffer)
    try:
        yield LogLines(buffer)
    finally:
        structlog.reset_defaults()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


@asynccontextmanager
async def served(worker: Worker) -> AsyncIterator[str]:
    """Serve ``worker`` over real HTTP on a port-0 socket; yields the MCP URL."""
    sock = bound_socket()
    try:
        async with worker.serving(sockets=[sock]) as url:
            yield url
    finally:
        sock.close()


def base_of(url: str) -> str:
    return url.removesuffix("/mcp")


async def get_json(url: str) -> tuple[int, Any]:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(url)
        return response.status_code, response.json()
