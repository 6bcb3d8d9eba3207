"""Test helpers: wait on conditions with a deadline (never fixed sleeps); read event streams."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import httpx

from shared.sse import ServerSentEvent, SSEParser

T = TypeVar("T")


async def wait_until(
    predicate: Callable[[], Any | Awaitable[Any]],
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str = "condition",
) -> Any:
    """Poll ``predicate`` (sync or async) until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(interval)


def wait_until_sync(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, message: str = ""
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message or predicate}")
        time.sleep(interval)


async def aiter_sse(response: httpx.Response) -> AsyncIterator[ServerSentEvent]:
    """The events of a streamed ``text/event-stream`` response (``AsyncClient.stream``)."""
    parser = SSEParser()
    async for chunk in response.aiter_bytes():
        for event in parser.feed(chunk):
            yield event


def iter_sse(response: httpx.Response) -> Iterator[ServerSentEvent]:
    """The events of a streamed ``text/event-stream`` response (``Client.stream``)."""
    parser = SSEParser()
    for chunk in response.iter_bytes():
        yield from parser.feed(chunk)
