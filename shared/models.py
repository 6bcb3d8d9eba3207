"""The data the fleet speaks: jobs, events, capabilities and worker registrations.

Every model defers building its validator to its first use (``defer_build``): importing this
module stays cheap for the CLI, which mostly prints the API's JSON as it came.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

__all__ = [
    "TERMINAL_STATUSES",
    "CapabilitiesReport",
    "CapabilityInfo",
    "CapabilityServer",
    "CapabilitySpec",
    "Event",
    "EventType",
    "Job",
    "JobError",
    "JobPage",
    "JobStatus",
    "JobSubmit",
    "Load",
    "Progress",
    "QueueDepths",
    "Slots",
    "WorkerInfo",
    "WorkerRegistration",
    "now",
]

MAX_LABELS = 32
MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects in a request body; the body itself is level 1."""
MAX_SAFE_INT = 2**53 - 1
"""Largest integer magnitude a request body may carry: exact in every JSON reader (I-JSON)."""
MAX_IDEMPOTENCY_KEY = 200
"""Longest idempotency key, in the body or the ``Idempotency-Key`` header."""


def now() -> float:
    """Wall-clock seconds since the epoch; every timestamp in the fleet is one of these."""
    return time.time()


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


class JobSubmit(BaseModel):
    """Body of ``POST /v1/jobs``. Unknown fields are refused, so typos do not pass silently,
    and types are strict: ``"3"`` or ``true`` is not a number."""

    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)

    capability: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:/-]+$")
    input: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = Field(
        default=None, min_length=1, max_length=MAX_IDEMPOTENCY_KEY, pattern=r"^[^\x00-\x1f\x7f]+$"
    )
    timeout_s: float | None = Field(default=None, ge=0.001, le=86_400)
    max_attempts: int | None = Field(default=None, ge=1, le=20)
    worker: str | None = Field(default=None, min_length=1, max_length=500)
    labels: dict[str, str] = Field(default_factory=dict, max_length=MAX_LABELS)
    parent_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")
    """The job this one is a child of (a tool delegating work, a workflow's step): the child
    takes the parent's tenant and correlation id, and is cancelled with it."""


class Progress(BaseModel):
    model_config = ConfigDict(defer_build=True)

    progress: float
    total: float | None = None
    message: str | None = None


class Usage(BaseModel):
    """What a job cost this fleet: the workers' time on its calls, and the bytes it moved."""

    model_config = ConfigDict(defer_build=True)

    worker_s: float = 0.0
    """Seconds its calls took, every attempt this supervisor made (a call's wall time)."""
    bytes_in: int = 0
    """Bytes of input sent to workers (the JSON arguments, once per attempt)."""
    bytes_out: int = 0
    """Bytes of result received (the result's and content's JSON)."""


class JobError(BaseModel):
    model_config = ConfigDict(defer_build=True)

    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class Job(BaseModel):
    model_config = ConfigDict(defer_build=True)

    id: str
    status: JobStatus
    capability: str
    input: dict[str, Any] = Field(default_factory=dict)
    result: Any = None
    content: list[dict[str, Any]] | None = None
    """The tool's MCP content blocks when they hold more than ``result`` (images, audio,
    resources, links, or text beside structured content); None otherwise."""
    error: JobError | None = None
    progress: Progress | None = None
    attempts: int = 0
    max_attempts: int = 3
    timeout_s: float = 60.0
    worker: str | None = None
    pinned_worker: str | None = None
    service: str | None = None
    """The service the capability resolved to at submission (a capability is service+tool)."""
    tool: str | None = None
    """The MCP tool name on that service."""
    schema_digest: str | None = None
    """Digest of the input schema the input was validated against; only workers with the
    same schema run the job."""
    correlation_id: str
    idempotency_key: str | None = None
    tenant: str | None = None
    """The tenant of the caller that submitted it (None: no tenant); only that tenant's
    callers, and admins, see it."""
    labels: dict[str, str] = Field(default_factory=dict)
    parent_id: str | None = None
    """The job that submitted this one (delegation, a workflow's step); None at top level."""
    depth: int = 0
    """How many parents up to the top-level job (0: it is one)."""
    children: list[str] | None = None
    """The ids of the jobs submitted as its children, in submit order (None: none). Read with
    the record, never stored in it."""
    traceparent: str | None = None
    """The W3C trace context the job continues (its submitter's), so that a parent and its
    children are one trace."""
    usage: Usage | None = None
    """What it cost, once it ended (None before, and for jobs ended while queued)."""
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None


EventType = Literal["status", "progress", "log", "step", "done"]
"""``step``: a workflow step's transition (see ``supervisor.workflows``)."""


class Event(BaseModel):
    """One entry of a job's event log. ``seq`` starts at 1 and has no gaps."""

    model_config = ConfigDict(defer_build=True)

    seq: int
    type: EventType
    job_id: str
    correlation_id: str
    ts: float
    data: dict[str, Any] = Field(default_factory=dict)
    _wire: str | None = PrivateAttr(default=None)

    def wire(self) -> str:
        """The event as JSON, made once: one event is sent to every watcher of its job."""
        if self._wire is None:
            self._wire = self.model_dump_json()
        return self._wire


class CapabilitySpec(BaseModel):
    model_config = ConfigDict(defer_build=True)

    description: str = ""
    input_schema: dict[str, Any] = Field(default_factory=dict)
    output_schema: dict[str, Any] | None = None
    estimated_duration_ms: int | None = None
    idempotent: bool = False
    max_concurrency: int = 1


class Load(BaseModel):
    model_config = ConfigDict(defer_build=True)

    in_flight: int = 0
    max_concurrency: int = 1


class CapabilitiesReport(BaseModel):
    """What a worker's ``get_capabilities`` tool returns."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    service_name: str
    version: str = "0"
    capabilities: dict[str, CapabilitySpec] = Field(default_factory=dict)
    supported_features: list[str] = Field(default_factory=list)
    health_status: str = "healthy"
    load: Load = Field(default_factory=Load)


class WorkerRegistration(BaseModel):
    """What a worker heartbeats into Redis so supervisors can find it."""

    model_config = ConfigDict(defer_build=True)

    name: str
    url: str
    version: str = "0"
    registered_at: float = Field(default_factory=now)
    issued_at: int | None = None
    """Signed registrations: when the signature was made (whole seconds since the epoch)."""
    expires_at: int | None = None
    """Signed registrations: the signature is refused from this second on."""
    signature: str | None = None
    """HMAC-SHA256 (hex) over :func:`shared.signing.registration_message`; see that module."""


# -- what the API answers (read by clients; extra fields pass, so an older client still reads a
#    newer supervisor) ---------------------------------------------------------------------------


class JobPage(BaseModel):
    """``GET /v1/jobs``: one page, newest first."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    jobs: list[Job]
    next_cursor: str | None = None
    """Pass back as ``cursor`` for the next page; None on the last page."""


class WorkerInfo(BaseModel):
    """One entry of ``GET /v1/workers``: what the supervisor knows of a worker right now."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    name: str
    url: str
    version: str = "0"
    service: str | None = None
    source: str | None = None
    """Where the supervisor heard of it: configured, or a registration."""
    health: str = "unknown"
    healthy: bool = False
    capabilities: list[str] = Field(default_factory=list)
    in_flight: int = 0
    reported_load: Load = Field(default_factory=Load)
    breaker: str = "closed"
    last_seen: float | None = None
    error: str | None = None
    """The last error a probe or a call met."""
    down_reason: str | None = None
    """Why it is down, when it is."""
    down_since: float | None = None


class CapabilityServer(BaseModel):
    """A worker serving a capability, as the catalog lists it."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    name: str
    url: str
    healthy: bool = False
    schema_digest: str | None = None


class CapabilityInfo(CapabilitySpec):
    """One entry of ``GET /v1/capabilities``: the spec, whose tool it is, who serves it."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    service: str | None = None
    tool: str | None = None
    qualified_name: str | None = None
    """``service.tool``: the name that stays unique when several services offer the tool."""
    workers: list[CapabilityServer] = Field(default_factory=list)


class Slots(BaseModel):
    """One capability's load, as ``GET /v1/queues`` counts it."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    queued: int = Field(default=0, description="Jobs waiting in the queue (the fleet's).")
    in_flight: int = Field(
        default=0, description="Calls this supervisor has running on its workers now."
    )
    running: int = Field(default=0, description="Jobs running now (the fleet's, all replicas).")
    limit: int = Field(
        default=0,
        description="Calls the healthy workers take at once: the sum of their declared "
        "`max_concurrency` for it (0: no healthy worker).",
    )
    workers: int = Field(default=0, description="Workers serving it.")
    healthy_workers: int = 0


class QueueDepths(BaseModel):
    """``GET /v1/queues``: queued jobs and slots per capability, retained jobs per status."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    queues: dict[str, int] = Field(default_factory=dict, description="Queued jobs per capability.")
    held_by_this_supervisor: int = 0
    slots: dict[str, Slots] = Field(
        default_factory=dict,
        description="Per capability (every one served, and every one with queued jobs): "
        "queued, in flight, running, and the concurrency limit of its healthy workers.",
    )
    by_status: dict[str, int] = Field(
        default_factory=dict,
        description="Retained jobs per status (the status indexes). Two reads give rates: "
        "the difference is what reached that status in between, less records expired.",
    )
    backlog: dict[str, int] = Field(
        default_factory=dict,
        description="Per capability, fleet-wide: jobs queued plus jobs running — the work "
        "its workers must absorb; what deploy/k8s's KEDA triggers scale each worker on.",
    )
