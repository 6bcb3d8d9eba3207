"""The supervisor's counters and histograms remember their ``labels(...)`` children
(supervisor.metrics): the exposition is the one prometheus_client gives without that."""

from __future__ import annotations

import prometheus_client
from prometheus_client import CollectorRegistry, generate_latest

from supervisor import metrics
from supervisor.metrics import Metrics


def exposition(counter: type, histogram: type) -> bytes:
    r = CollectorRegistry()
    jobs = counter("jobs", "Jobs", ["status", "capability"], registry=r)
    seconds = histogram("seconds", "Seconds", ["capability"], buckets=(0.1, 1), registry=r)
    for i in range(50):
        jobs.labels("succeeded" if i % 3 else "failed", f"cap{i % 4}").inc()
        seconds.labels(f"cap{i % 4}").observe(i / 20)
    jobs.labels(status="queued", capability="cap0").inc(2)
    jobs.labels("queued", 7).inc()  # a value's text is its label, as the library takes it
    text = generate_latest(r).splitlines()
    return b"\n".join(line for line in text if b"_created" not in line)  # times of creation


def test_the_same_exposition_as_the_library() -> None:
    plain = exposition(prometheus_client.Counter, prometheus_client.Histogram)
    assert exposition(metrics.Counter, metrics.Histogram) == plain
    assert b'jobs_total{capability="7",status="queued"} 1.0' in plain


def test_a_child_is_the_library_child() -> None:
    m = Metrics()
    child = m.attempts.labels("noop", "ok")
    assert m.attempts.labels("noop", "ok") is child
    assert m.attempts.labels(capability="noop", outcome="ok") is child
    child.inc()
    assert b'fleet_job_attempts_total{capability="noop",outcome="ok"} 1.0' in m.render()


def test_an_unhashable_value_takes_the_library_way() -> None:
    m = Metrics()
    m.attempts.labels(["noop"], "ok").inc()
    assert b'fleet_job_attempts_total{capability="[\'noop\']",outcome="ok"} 1.0' in m.render()
