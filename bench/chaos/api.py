"""The load generator's side of the HTTP API: every answer counted, submissions retried safely.

Every request to ``/v1/jobs…`` goes through :meth:`Api.send`, which files the answer in a
:class:`Tally`: status and error code, transport failures, and each 5xx. A ``503
STORE_UNAVAILABLE`` sent while the store is down on purpose (between a Redis kill and the
moment that supervisor's ``/readyz`` answers 200 again) is the contract's outage answer and
is counted apart (``outage_503``); every other 5xx counts.

Submissions carry an ``Idempotency-Key``, so the generator retries one after a transport
error, a 5xx or a 429 — on the next supervisor in rotation — without risking a second job.
A submission is *accepted* once a 2xx carries its job; only accepted jobs are checked.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.chaos.procs import Fleet
from bench.chaos.waiting import remaining
from shared.sse import SSEParser

__all__ = ["TERMINAL", "Api", "Replay", "Submitted", "Tally"]

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
OUTAGE_CODE = "STORE_UNAVAILABLE"
_EXAMPLES = 10


@dataclass
class Tally:
    """What the load generator saw, answer by answer."""

    answers: collections.Counter[str] = field(default_factory=collections.Counter)
    http_5xx: int = 0
    outage_503: int = 0
    transport_errors: collections.Counter[str] = field(default_factory=collections.Counter)
    examples_5xx: list[dict[str, Any]] = field(default_factory=list)
    _outages: dict[str, list[list[float]]] = field(default_factory=dict)

    def open_outage(self, bases: list[str], at: float) -> None:
        for base in bases:
            self._outages.setdefault(base, []).append([at, math.inf])

    def close_outage(self, base: str, at: float) -> None:
        for window in self._outages.get(base, []):
            if window[1] == math.inf:
                window[1] = at

    def _in_outage(self, base: str, sent: float) -> bool:
        return any(start <= sent <= end for start, end in self._outages.get(base, []))

    def answer(self, base: str, path: str, sent: float, status: int, code: str | None) -> None:
        self.answers[f"{status} {code}" if code else str(status)] += 1
        if status < 500:
            return
        if status == 503 and code == OUTAGE_CODE and self._in_outage(base, sent):
            self.outage_503 += 1
            return
        self.http_5xx += 1
        if len(self.examples_5xx) < _EXAMPLES:
            example: dict[str, Any] = {"status": status, "code": code, "path": path}
            ended = [end for _, end in self._outages.get(base, []) if end < sent]
            if ended:  # evidence for an answer just outside the window
                example["s_after_ready_again"] = round(sent - max(ended), 3)
            self.examples_5xx.append({**example, "supervisor": base})

    def failure(self, exc: Exception) -> None:
        self.transport_errors[type(exc).__name__] += 1


@dataclass(frozen=True)
class Submitted:
    """An accepted job: a 2xx carried its id."""

    id: str
    tool: str
    label: str
    round: int
    key: str
    accepted_at: float
    """``time.time()`` of the accepting answer."""


@dataclass
class Replay:
    """A job's event log as ``GET /v1/jobs/{id}/events`` replays it from the start."""

    seqs: list[int] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    done: bool = False
    error: str | None = None


class Api:
    """HTTP client of the fleet's supervisors; :attr:`jobs` holds every accepted job."""

    def __init__(self, fleet: Fleet, tally: Tally) -> None:
        self.fleet = fleet
        self.tally = tally
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(15.0, connect=2.0),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
            headers=fleet.headers,
        )
        self.jobs: dict[str, Submitted] = {}
        self.refused: collections.Counter[str] = collections.Counter()
        self.unanswered = 0
        """Submissions never accepted by their deadline (not jobs: nobody said 2xx)."""
        self._turn = 0

    async def aclose(self) -> None:
        await self.client.aclose()

    def base(self) -> str:
        """The next supervisor in rotation (round robin)."""
        live = sorted(self.fleet.rotation) or [s.url for s in self.fleet.supervisors]
        self._turn += 1
        return live[self._turn % len(live)]

    async def send(self, method: str, base: str, path: str, **kwargs: Any) -> httpx.Response | None:
        sent = time.monotonic()
        try:
            response = await self.client.request(method, base + path, **kwargs)
        except httpx.HTTPError as exc:
            self.tally.failure(exc)
            return None
        self.tally.answer(base, path, sent, response.status_code, _error_code(response))
        return response

    # -- jobs --------------------------------------------------------------------------------

    async def submit(
        self,
        tool: str,
        job_input: dict[str, Any],
        *,
        timeout_s: float,
        label: str,
        round_no: int,
        deadline: float,
        wait: float = 0.0,
        worker: str | None = None,
    ) -> tuple[Submitted | None, dict[str, Any] | None]:
        """Submit until accepted, refused with a 4xx, or ``deadline``; the job and its body."""
        key = uuid.uuid4().hex
        body: dict[str, Any] = {"capability": tool, "input": job_input, "timeout_s": timeout_s}
        if worker is not None:
            body["worker"] = worker
        params = {"wait": wait} if wait else None
        delay = 0.05
        while True:
            response = await self.send(
                "POST",
                self.base(),
                "/v1/jobs",
                json=body,
                params=params,
                headers={"Idempotency-Key": key},
                timeout=httpx.Timeout(15.0 + wait, connect=2.0),
            )
            if response is not None and response.status_code < 300:
                job = response.json()
                accepted = Submitted(job["id"], tool, label, round_no, key, time.time())
                self.jobs.setdefault(accepted.id, accepted)
                return accepted, job
            if response is not None and response.status_code < 500 and response.status_code != 429:
                self.refused[f"{response.status_code} {_error_code(response)}"] += 1
                return None, None
            if remaining(deadline) <= 0:
                self.unanswered += 1
                return None, None
            await asyncio.sleep(min(delay, remaining(deadline)))  # client backoff, then retry
            delay = min(delay * 2, 0.5)

    async def wait_job(self, job_id: str, deadline: float) -> dict[str, Any] | None:
        """The job once terminal (``{"status": "gone"}`` on 404), or as last seen at the
        deadline (None if no supervisor answered)."""
        last: dict[str, Any] | None = None
        while True:
            left = remaining(deadline)
            wait = max(0.1, min(20.0, left))
            response = await self.send(
                "GET",
                self.base(),
                f"/v1/jobs/{job_id}",
                params={"wait": round(wait, 2)},
                timeout=httpx.Timeout(wait + 10.0, connect=2.0),
            )
            if response is not None and response.status_code == 200:
                last = response.json()
                if last is not None and last.get("status") in TERMINAL:
                    return last
            elif response is not None and response.status_code == 404:
                return {"id": job_id, "status": "gone"}
            if left <= 0:
                return last
            if response is None or response.status_code != 200:
                await asyncio.sleep(min(0.2, remaining(deadline)))  # back off after a failure

    async def probe(
        self, since: float, deadline: float, round_no: int, *, worker: str | None = None
    ) -> float | None:
        """Seconds from ``since`` (a ``time.monotonic()``) until a job submitted now succeeds:
        the system processes new jobs again (on ``worker``, when given). None if none did by
        ``deadline``."""
        while remaining(deadline) > 0:
            accepted, job = await self.submit(
                "ledger_idem",
                {"ms": 0, "steps": 1},
                timeout_s=10.0,
                label="probe" if worker is None else "pinned-probe",
                round_no=round_no,
                deadline=deadline,
                wait=min(5.0, max(0.1, remaining(deadline))),
                worker=worker,
            )
            if accepted is None:
                await asyncio.sleep(min(0.2, remaining(deadline)))  # refused: ask again soon
                continue
            if job is None or job.get("status") not in TERMINAL:
                job = await self.wait_job(accepted.id, deadline)
            if job is not None and job.get("status") == "succeeded":
                return time.monotonic() - since
        return None

    async def replay(self, job_id: str, deadline: float) -> Replay:
        """Read the job's events from the start until its ``done`` (or ``deadline``)."""
        out = Replay()
        for _ in range(3):  # another supervisor after a transport failure
            out = Replay()
            base = self.base()
            sent = time.monotonic()
            try:
                async with (
                    asyncio.timeout(remaining(deadline)),
                    self.client.stream(
                        "GET",
                        f"{base}/v1/jobs/{job_id}/events",
                        timeout=httpx.Timeout(None, connect=2.0),
                    ) as response,
                ):
                    code = None
                    if response.status_code != 200:
                        await response.aread()
                        code = _error_code(response)
                    status = response.status_code
                    self.tally.answer(base, "/v1/jobs/{id}/events", sent, status, code)
                    if response.status_code != 200:
                        out.error = f"HTTP {response.status_code} {code}"
                        return out
                    parser = SSEParser()
                    async for chunk in response.aiter_bytes():
                        for event in parser.feed(chunk):
                            data = json.loads(event.data)
                            out.seqs.append(int(data.get("seq", event.id or -1)))
                            out.types.append(event.event)
                            if event.event == "done":
                                out.done = True
                                return out
                    out.error = "the stream ended before a done event"
                    return out
            except TimeoutError:
                out.error = "no done event before the deadline"
                return out
            except httpx.HTTPError as exc:
                self.tally.failure(exc)
                out.error = f"{type(exc).__name__}: {exc}"
        return out

    async def stream(
        self,
        make: Any,
        *,
        rate: float,
        stop: asyncio.Event,
        max_jobs: int,
        label: str,
        round_no: int,
        submit_deadline_s: float,
        timeout_s: float,
    ) -> None:
        """Submit ``make(i) -> (tool, input)`` at ``rate`` per second until ``stop`` is set
        (or ``max_jobs``); each submission retries for up to ``submit_deadline_s``."""
        tasks: list[asyncio.Task[Any]] = []
        for i in range(max_jobs):
            if stop.is_set():
                break
            tool, job_input = make(i)
            tasks.append(
                asyncio.create_task(
                    self.submit(
                        tool,
                        job_input,
                        timeout_s=timeout_s,
                        label=label,
                        round_no=round_no,
                        deadline=time.monotonic() + submit_deadline_s,
                    )
                )
            )
            with contextlib.suppress(TimeoutError):  # the pace of the stream; stop wakes it
                await asyncio.wait_for(stop.wait(), 1 / rate)
        await asyncio.gather(*tasks)


def _error_code(response: httpx.Response) -> str | None:
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        return "NOT_JSON"
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return str(code) if code else "NO_ERROR_SHAPE"
