"""Every metric the supervisor exports, defined together, on a registry of its own.

Scraped at ``GET /metrics`` (Prometheus text format). Gauges that mirror state (queue depth,
worker health, breaker state) are refreshed at scrape time from the store and the registry.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client import Counter as _Counter
from prometheus_client import Histogram as _Histogram
from prometheus_client.metrics import MetricWrapperBase

from shared import Job

__all__ = ["BREAKER_VALUES", "Counter", "Histogram", "Metrics"]

BREAKER_VALUES = {"closed": 0, "half_open": 1, "open": 2}
MAX_TENANT_LABELS = 100


class _Remembered(MetricWrapperBase):
    """``labels(...)`` children found again in a dict (see :class:`Counter`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._children: dict[tuple[Any, ...], Any] = {}

    def labels(self, *values: Any, **by_name: Any) -> Any:
        if by_name:
            return super().labels(*values, **by_name)
        try:
            return self._children[values]
        except KeyError:
            pass
        except TypeError:  # an unhashable value: the library's way (it takes its text)
            return super().labels(*values)
        child = self._children[values] = super().labels(*values)
        return child


class Counter(_Remembered, _Counter):
    """A counter whose ``labels(...)`` child is found again in a dict: prometheus_client
    checks and converts the values and takes a lock on every call (1.3 us for a counter,
    6 us for a histogram; a job makes a handful of such calls). By position only, as the
    dispatcher calls it; by name goes the library's way. Never for a gauge: those are
    cleared at scrape time, and a remembered child would outlive its series."""


class Histogram(_Remembered, _Histogram):
    """A histogram whose ``labels(...)`` child is remembered, as :class:`Counter`'s."""


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.jobs = Counter(
            "fleet_jobs", "Jobs reaching a status", ["status", "capability"], registry=r
        )
        self.attempts = Counter(
            "fleet_job_attempts",
            "Calls to workers, by outcome",
            ["capability", "outcome"],
            registry=r,
        )
        self.dispatch_latency = Histogram(
            "fleet_dispatch_latency_seconds",
            "Time from submission to the first call reaching a worker",
            ["capability"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.job_duration = Histogram(
            "fleet_job_duration_seconds",
            "Submission to end",
            ["capability", "status"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "fleet_queue_depth", "Queued jobs per capability", ["capability"], registry=r
        )
        self.in_flight = Gauge("fleet_jobs_in_flight", "Jobs held by this supervisor", registry=r)
        self.worker_healthy = Gauge(
            "fleet_worker_healthy", "1 when the worker is healthy", ["worker", "url"], registry=r
        )
        self.breaker_state = Gauge(
            "fleet_worker_breaker_state",
            "0 closed, 1 half-open, 2 open",
            ["worker", "url"],
            registry=r,
        )

        self.loop_restarts = Counter(
            "fleet_loop_restarts",
            "Background loops restarted after they died",
            ["loop"],
            registry=r,
        )
        self.workers_refused = Counter(
            "fleet_workers_refused",
            "Workers refused (not probed, not called), counted once when each first appears: "
            "source static or registered; reason unsigned, bad_signature, expired, "
            "not_yet_valid or not_allowed",
            ["source", "reason"],
            registry=r,
        )
        self.usage_jobs = Counter(
            "fleet_usage_jobs",
            "Ended jobs that reached a worker, by tenant (first 100 seen, then 'other')",
            ["tenant", "capability"],
            registry=r,
        )
        self.usage_worker_seconds = Counter(
            "fleet_usage_worker_seconds",
            "Seconds of worker calls, by tenant (first 100 seen, then 'other')",
            ["tenant", "capability"],
            registry=r,
        )
        self.usage_bytes = Counter(
            "fleet_usage_bytes",
            "Bytes sent to workers (in) and received (out), by tenant",
            ["tenant", "capability", "direction"],
            registry=r,
        )
        self._tenants: set[str] = set()
        self.fenced_writes = Counter(
            "fleet_fenced_writes",
            "Writes refused because this supervisor no longer held the job's lease",
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def tenant_label(self, tenant: str | None) -> str:
        """A tenant as a label value, the cardinality bounded: the first
        :data:`MAX_TENANT_LABELS` tenants seen by name, any later one as ``other``."""
        name = tenant or "-"
        if name in self._tenants:
            return name
        if len(self._tenants) < MAX_TENANT_LABELS:
            self._tenants.add(name)
            return name
        return "other"

    def count_usage(self, job: Job) -> None:
        if job.usage is None:
            return
        tenant = self.tenant_label(job.tenant)
        self.usage_jobs.labels(tenant, job.capability).inc()
        self.usage_worker_seconds.labels(tenant, job.capability).inc(job.usage.worker_s)
        self.usage_bytes.labels(tenant, job.capability, "in").inc(job.usage.bytes_in)
        self.usage_bytes.labels(tenant, job.capability, "out").inc(job.usage.bytes_out)
