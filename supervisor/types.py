"""The supervisor's seams, as Protocols: what each part needs of the others.

    JobStore ─┐
    DispatchQueue ├─ DispatchStore   what the dispatcher needs of the store
    EventLog ─┘
    JobIndex                         listings and dead letters (the API)
    Registrations                    self-registered workers (discovery)
    WorkerCaller                     calling and probing workers (supervisor.calls)
    WorkerDirectory, WorkerView      the workers known now and how to reach a tool (registry)

:class:`supervisor.store.Store` implements every store Protocol on Redis and on the embedded
engine; :class:`supervisor.calls.WorkerPool` is the caller; :class:`supervisor.registry.Registry`
the directory. Tests pass the real ones or small fakes through the same constructors.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

from shared import CapabilitySpec, Event, Job, JobStatus, WorkerRegistration

if TYPE_CHECKING:
    from supervisor.calls import CallResult, LogHandler, ProgressHandler, ServerInfo
    from supervisor.dispatch.breaker import Breaker
    from supervisor.registry import Target
    from supervisor.store.health import StoreHealth

__all__ = [
    "DispatchQueue",
    "DispatchStore",
    "EventLog",
    "JobEnding",
    "JobIndex",
    "JobStore",
    "QueueEntry",
    "Registrations",
    "WorkerCaller",
    "WorkerDirectory",
    "WorkerView",
]

QueueEntry = tuple[str, str]
"""A dispatch delivery: (entry id, job id). The entry id is the store's to read (on a sharded
store it names the shard too): pass it back as it came."""


class JobStore(Protocol):
    """Job records: created once, read, moved through their states under a fence token."""

    async def submit(self, job: Job, *, fingerprint: str, queue_limit: int) -> tuple[Job, bool]:
        """Store and enqueue ``job``; (the existing job, False) for a replayed idempotency key."""
        ...

    def place(
        self, job_id: str, *, parent_id: str | None, idempotency_key: str | None, tenant: str | None
    ) -> str:
        """The id a new job takes on this store (its shard in it; unchanged with one)."""
        ...

    async def get(self, job_id: str) -> Job: ...

    async def children(self, job_id: str) -> list[str]:
        """The ids of the jobs submitted as its children, in submit order."""
        ...

    async def get_with_children(self, job_id: str) -> Job:
        """The job with its ``children`` filled in, in one read."""
        ...

    async def get_with_flags(self, job_id: str) -> tuple[Job, dict[str, str]]: ...

    async def flag(self, job_id: str, name: str) -> str | None: ...

    async def transition(
        self,
        job_id: str,
        *,
        allowed: Iterable[JobStatus] = (),
        event: str | None = None,
        data: dict[str, Any] | None = None,
        finish: bool = False,
        done: Job | None = None,
        persist: bool = False,
        fence: int | None = None,
        dead_letter: bool = False,
        ack: str | None = None,
        ledger: Job | None = None,
        **fields: Any,
    ) -> int | None: ...

    async def acquire(
        self, job_id: str, *, entry: str | None = None, reclaimed: bool = False
    ) -> tuple[int, Job, dict[str, str]]:
        """A new fence token, the job and its flags; raises ``Fenced`` for a stale delivery."""
        ...

    async def acquire_and_start(
        self, job_id: str, *, entry: str, worker: str, ts: float
    ) -> tuple[int, Job, dict[str, str], bool]:
        """``acquire`` a fresh delivery and mark the job running on ``worker`` in the same
        step if it is still queued with no cancel asked; the last item: whether it started."""
        ...


class DispatchQueue(Protocol):
    """Deliveries of queued jobs to supervisors, with leases that lapse and are reclaimed."""

    health: StoreHealth
    """Whether the store answers (one warning per outage; ``/readyz`` shows it)."""

    async def ensure_group(self) -> None: ...

    async def take(self, count: int, block_ms: int) -> list[QueueEntry]: ...

    async def reclaim(self, min_idle_ms: int, count: int = 100) -> list[QueueEntry]: ...

    async def renew(self, entry_ids: list[str]) -> None: ...

    async def ack(self, entry_id: str) -> None: ...

    async def leases(self, job_ids: list[str]) -> dict[str, tuple[int | None, bool]]:
        """Each job's current fence token and whether a cancel was asked, in one read."""
        ...

    async def requeue(
        self,
        job_id: str,
        *,
        allowed: Iterable[JobStatus],
        data: dict[str, Any],
        fence: int | None = None,
        entry_id: str | None = None,
        **fields: Any,
    ) -> int | None: ...


class JobEnding(Protocol):
    async def wait(self, timeout: float, known: Job | None = None) -> Job:
        """The job once it ended, or as it is after ``timeout``; ``known``: as last seen."""
        ...


class EventLog(Protocol):
    """Each job's ordered events (status, progress, log, done) and the cancel signal."""

    async def append(
        self,
        job_id: str,
        event: str,
        data: dict[str, Any],
        *,
        fence: int | None = None,
        **fields: Any,
    ) -> int: ...

    async def append_many(
        self,
        job_id: str,
        events: list[tuple[str, dict[str, Any]]],
        *,
        fence: int | None = None,
        **fields: Any,
    ) -> int: ...

    async def events(
        self, job_id: str, *, after: int = 0, block_ms: int | None = None, count: int = 500
    ) -> list[Event]: ...

    def follow(
        self, job_id: str, *, after: int = 0, idle_s: float = 1.0, recheck_s: float = 15.0
    ) -> AsyncGenerator[list[Event], None]:
        """Batches of new events as they are written; an empty batch when idle."""
        ...

    async def wait_ended(self, job_id: str, timeout: float) -> Job:
        """The job once it ended, or as it is after ``timeout``."""
        ...

    def ending(self, job_id: str) -> AbstractContextManager[JobEnding]:
        """A wait for the job's end, registered now (before a write its end may follow)."""
        ...

    async def publish_cancel(self, job_id: str) -> None: ...

    def cancel_messages(self) -> AsyncIterator[str]: ...


class DispatchStore(JobStore, DispatchQueue, EventLog, Protocol):
    """Everything the dispatcher needs of the store."""


class JobIndex(Protocol):
    """Reads across many jobs: listings, queue depths, dead letters."""

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        capability: str | None = None,
        before: float | None = None,
        limit: int = 50,
        tenant: str | None = None,
    ) -> tuple[list[Job], float | None]: ...

    async def queue_depths(self) -> dict[str, int]: ...

    async def dead_letters(self, limit: int = 100) -> list[Job]: ...

    async def is_dead_letter(self, job_id: str) -> bool: ...


class Registrations(Protocol):
    """Workers that registered themselves (with a TTL heartbeat) in the store."""

    async def registrations(self) -> list[WorkerRegistration]: ...


class WorkerCaller(Protocol):
    """Calls and probes to workers over MCP (:class:`supervisor.calls.WorkerPool`)."""

    async def call(
        self,
        url: str,
        tool: str,
        arguments: dict[str, Any],
        *,
        timeout: float,
        meta: dict[str, Any] | None = None,
        on_progress: ProgressHandler | None = None,
        on_log: LogHandler | None = None,
        wrapped: bool = False,
    ) -> CallResult: ...

    async def list_tools(self, url: str, *, timeout: float) -> list[dict[str, Any]]: ...

    async def connect(self, url: str) -> ServerInfo: ...

    def in_flight(self, url: str) -> int: ...

    async def drop(self, url: str) -> None: ...


class WorkerView(Protocol):
    """One known worker as routing sees it."""

    url: str
    name: str
    healthy: bool
    capabilities: dict[str, CapabilitySpec]
    breaker: Breaker

    def answers_to(self, pin: str) -> bool: ...

    def serves(self, service: str, tool: str, digest: str | None) -> bool: ...


class WorkerDirectory(Protocol):
    """The workers known now, by URL, and how a capability name resolves to a tool."""

    @property
    def workers(self) -> Mapping[str, WorkerView]: ...

    def resolve(self, name: str) -> Target: ...

    def mark_down(self, url: str, reason: str) -> None: ...
