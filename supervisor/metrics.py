"""Every metric the supervisor exports, defined together, on a registry of its own.

Scraped at ``GET /metrics`` (Prometheus text format). Gauges that mirror state (queue depth,
worker health, breaker state) are refreshed at scrape time from the store and the registry.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["BREAKER_VALUES", "Metrics"]

BREAKER_VALUES = {"closed": 0, "half_open": 1, "open": 2}


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
        self.fenced_writes = Counter(
            "fleet_fenced_writes",
            "Writes refused because this supervisor no longer held the job's lease",
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
