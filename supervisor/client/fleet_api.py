"""The raw layer of the client: the API's answers as the dicts it sent, errors translated.

:class:`~supervisor.client.AsyncFleetClient` builds its typed calls on this one; the CLI's
``--json`` prints these bodies verbatim.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from shared.names import HEADER_CORRELATION_ID
from shared.sse import SSEParser

__all__ = ["ApiError", "FleetApi", "Unreachable"]

_RECONNECT_DEADLINE_S = 60.0
"""How long a watcher keeps reconnecting to a supervisor that stopped answering."""


class ApiError(Exception):
    """The supervisor answered with an error body ``{"error": {code, message, details}}``."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    @property
    def field(self) -> str | None:
        field = self.details.get("field")
        return str(field) if field else None

    def one_line(self) -> str:
        line = f"{self.code}: {self.message}"
        named = self.field and (
            self.message.startswith(self.field) or f" {self.field}: " in self.message
        )  # the message says it already ("step 'a': after[0]: no step named 'b'")
        if self.field and not named:
            line += f" (field: {self.field})"
        return line

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        try:
            body = response.json()
            err = body["error"]
            return cls(
                response.status_code,
                str(err.get("code", f"HTTP_{response.status_code}")),
                str(err.get("message", "")),
                dict(err.get("details") or {}),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            text = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
            return cls(response.status_code, f"HTTP_{response.status_code}", text, {})


class Unreachable(Exception):
    """No answer from the supervisor (refused, reset, timed out, unknown host)."""


def _segment(job_id: str) -> str:
    """A job id as one path segment: ``a/b`` or ``..`` stays an (unknown) id, never another
    route of the API; an empty id is the supervisor's own "no such job"."""
    if not str(job_id).strip():
        raise ApiError(404, "JOB_NOT_FOUND", f"no job with id {job_id!r}", {"job_id": job_id})
    return quote(str(job_id), safe="").replace(".", "%2E")


def _check(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise ApiError.from_response(response)
    return response.json()


class FleetApi:
    """Async client for ``/v1`` answering dicts. Raises :class:`ApiError` and
    :class:`Unreachable` only. Most programs want :class:`~supervisor.client.AsyncFleetClient`,
    which holds one of these as ``raw``."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        reconnect_deadline_s: float = _RECONNECT_DEADLINE_S,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self.reconnect_deadline_s = reconnect_deadline_s
        self.reconnects = 0
        # Every request goes to a path under ``url``: over plain HTTP no TLS is ever spoken, so
        # skip loading the CA bundle (tens of milliseconds of every CLI call).
        verify = not self.url.startswith("http://")
        self._client = httpx.AsyncClient(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport, verify=verify
        )

    async def __aenter__(self) -> FleetApi:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._client.aclose()

    async def request(self, method: str, path: str, **kw: Any) -> Any:
        try:
            response = await self._client.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise Unreachable(self._unreachable(exc)) from exc
        try:
            return _check(response)
        except ValueError as exc:  # a 2xx that is not JSON: something else listens at the URL
            kind = response.headers.get("content-type", "no content type").split(";")[0]
            raise Unreachable(
                f"supervisor unreachable at {self.url}: what answered is not a fleet "
                f"supervisor ({response.status_code} {kind} to {method} {path})"
            ) from exc

    def _unreachable(self, exc: Exception) -> str:
        reason = str(exc) or type(exc).__name__
        return f"supervisor unreachable at {self.url}: {reason}"

    # -- jobs -------------------------------------------------------------------------

    async def submit(
        self,
        body: dict[str, Any],
        *,
        correlation_id: str | None = None,
        wait: float = 0,
        traceparent: str | None = None,
    ) -> dict[str, Any]:
        # ``traceparent`` (W3C): the job continues that trace (a delegating tool's span).
        sent = {HEADER_CORRELATION_ID: correlation_id, "traceparent": traceparent}
        headers = {k: v for k, v in sent.items() if v} or None
        params = {"wait": wait} if wait else None
        timeout = httpx.Timeout(30.0, read=wait + 30.0)
        result: dict[str, Any] = await self.request(
            "POST", "/v1/jobs", json=body, headers=headers, params=params, timeout=timeout
        )
        return result

    async def job(self, job_id: str, *, wait: float = 0) -> dict[str, Any]:
        params = {"wait": wait} if wait else None
        timeout = httpx.Timeout(30.0, read=wait + 30.0)
        result: dict[str, Any] = await self.request(
            "GET", f"/v1/jobs/{_segment(job_id)}", params=params, timeout=timeout
        )
        return result

    async def jobs(
        self,
        *,
        status: str | None = None,
        capability: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        filters = {"status": status, "capability": capability, "cursor": cursor}
        params.update({k: v for k, v in filters.items() if v})
        result: dict[str, Any] = await self.request("GET", "/v1/jobs", params=params)
        return result

    async def cancel(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", f"/v1/jobs/{_segment(job_id)}/cancel")
        return result

    # -- workflows ----------------------------------------------------------------------

    async def submit_workflow(
        self, spec: dict[str, Any], *, correlation_id: str | None = None, wait: float = 0
    ) -> dict[str, Any]:
        """``POST /v1/workflows``: the workflow's job (a job like any other)."""
        headers = {HEADER_CORRELATION_ID: correlation_id} if correlation_id else None
        params = {"wait": wait} if wait else None
        timeout = httpx.Timeout(30.0, read=wait + 30.0)
        result: dict[str, Any] = await self.request(
            "POST", "/v1/workflows", json=spec, headers=headers, params=params, timeout=timeout
        )
        return result

    async def workflow(self, job_id: str, *, wait: float = 0) -> dict[str, Any]:
        """``GET /v1/workflows/{id}``: ``{"job": ..., "steps": {name: state}}``."""
        params = {"wait": wait} if wait else None
        timeout = httpx.Timeout(30.0, read=wait + 30.0)
        result: dict[str, Any] = await self.request(
            "GET", f"/v1/workflows/{job_id}", params=params, timeout=timeout
        )
        return result

    async def workers(self) -> list[dict[str, Any]]:
        return list((await self.request("GET", "/v1/workers"))["workers"])

    async def capabilities(self) -> dict[str, dict[str, Any]]:
        return dict((await self.request("GET", "/v1/capabilities"))["capabilities"])

    async def queues(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", "/v1/queues")
        return result

    async def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        body = await self.request("GET", "/v1/dead-letters", params={"limit": limit})
        return list(body["jobs"])

    async def redrive(self, job_id: str) -> dict[str, Any]:
        path = f"/v1/dead-letters/{_segment(job_id)}/redrive"
        result: dict[str, Any] = await self.request("POST", path)
        return result

    # -- events -------------------------------------------------------------------------

    async def events(
        self,
        job_id: str,
        *,
        after: int = 0,
        on_reconnect: Callable[[int, str], None] | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every event of the job after ``after``, in order, each exactly once, ending with
        ``done``. A dropped connection is resumed with ``Last-Event-ID``; an event that
        arrives twice (it cannot, but a proxy might replay) is skipped by its ``seq``.
        """
        last = after
        backoff = 0.1
        down_since: float | None = None
        connected = False
        while True:
            headers = {"Last-Event-ID": str(last)} if last else {}
            reason = "stream ended before the job did"
            try:
                async with self._client.stream(
                    "GET",
                    f"/v1/jobs/{_segment(job_id)}/events",
                    headers={**headers, "Accept": "text/event-stream"},
                    timeout=httpx.Timeout(10.0, read=60.0),
                ) as response:
                    connected = True
                    if 400 <= response.status_code < 500:
                        await response.aread()
                        raise ApiError.from_response(response)
                    if response.status_code >= 500:
                        await response.aread()
                        raise httpx.RemoteProtocolError(
                            f"HTTP {response.status_code}", request=response.request
                        )
                    # The parser never yields an event the connection dropped inside of.
                    parser = SSEParser()
                    async for chunk in response.aiter_bytes():
                        for sse in parser.feed(chunk):
                            event = json.loads(sse.data)
                            seq = int(event.get("seq") or sse.id or 0)
                            if seq <= last:
                                continue
                            last = seq
                            down_since, backoff = None, 0.1
                            yield event
                            if event.get("type") == "done":
                                return
            except httpx.TransportError as exc:
                if not connected:  # never reached it: say so now rather than retry for long
                    raise Unreachable(self._unreachable(exc)) from exc
                reason = str(exc) or type(exc).__name__
            down_since = down_since or time.monotonic()
            if time.monotonic() - down_since > self.reconnect_deadline_s:
                raise Unreachable(
                    f"lost the event stream of job {job_id} at {self.url} and could not "
                    f"reconnect for {self.reconnect_deadline_s:.0f}s: {reason}"
                )
            self.reconnects += 1
            if on_reconnect is not None:
                on_reconnect(last, reason)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)
