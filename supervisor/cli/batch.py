"""The demo's sample batch: a generated customer dataset, a text, and the jobs to run on them.

Everything is deterministic (a seeded generator), so the summary is the same on every run.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CANCEL_JOB", "INVALID_JOB", "DemoJob", "batch", "dataset", "sample_text"]

_CITIES = [
    ("Lisbon", "PT"), ("Porto", "PT"), ("Lyon", "FR"), ("Paris", "FR"), ("Berlin", "DE"),
    ("Hamburg", "DE"), ("Oslo", "NO"), ("Madrid", "ES"), ("Turin", "IT"), ("Leeds", "GB"),
]  # fmt: skip
_FIRST = ["Ana", "Bo", "Chen", "Dara", "Eli", "Femi", "Gus", "Hana", "Ivo", "Jo", "Kai", "Lea"]
_LAST = ["Silva", "Moreau", "Weber", "Berg", "Ruiz", "Rossi", "Smith", "Costa", "Novak"]


def dataset(n: int = 3000, seed: int = 7) -> list[dict[str, Any]]:
    """Customer records with the usual defects: ages as strings or missing, bad emails."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        city, country = rng.choice(_CITIES)
        age: Any = rng.randint(16, 80)
        roll = rng.random()
        if roll < 0.05:
            age = str(age)  # typed in a form
        elif roll < 0.08:
            age = None
        email = f"{first}.{last}{i}@example.com".lower()
        if rng.random() < 0.03:
            email = email.replace("@", " at ")
        orders = rng.randint(0, 40)
        records.append(
            {
                "id": i + 1,
                "name": f"{first} {last}",
                "email": email,
                "age": age,
                "city": city,
                "country": country,
                "orders": orders,
                "spend": round(orders * rng.uniform(8, 120), 2),
                "plan": rng.choice(["free", "free", "pro", "team"]),
            }
        )
    return records


RECORD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "name", "email", "age"],
    "properties": {
        "id": {"type": "integer", "minimum": 1},
        "name": {"type": "string", "minLength": 1},
        "email": {"type": "string", "pattern": "^[^@\\s]+@[^@\\s]+$"},
        "age": {"type": "integer", "minimum": 0, "maximum": 130},
        "plan": {"enum": ["free", "pro", "team"]},
    },
}

TRANSFORM_RULES: list[dict[str, Any]] = [
    {"op": "cast", "field": "age", "to": "int", "on_error": "null"},
    {"op": "filter", "field": "age", "cmp": "ge", "value": 18},
    {"op": "filter", "field": "plan", "cmp": "ne", "value": "free"},
    {"op": "derive", "field": "avg_order", "fn": "div",
     "args": [{"field": "spend"}, {"field": "orders"}]},
    {"op": "select", "fields": ["id", "name", "country", "plan", "orders", "avg_order"]},
]  # fmt: skip


_PARAGRAPHS = [
    "A fleet of small workers is easier to run than one large service. Each worker does one "
    "kind of job well, declares what it can do, and reports its progress while it works. "
    "The supervisor finds the workers, routes each job to the least loaded healthy worker, "
    "and retries a job on another worker when a call fails for a reason that may pass.",
    "Progress matters to the people waiting. A job that reports its progress can be shown "
    "as a bar with a rate and an estimate of the time left, and a watcher that loses its "
    "connection can resume the event stream exactly where it stopped, without a gap and "
    "without a duplicate event.",
    "Failures are part of the design. A worker that keeps failing trips a circuit breaker, "
    "so the supervisor stops sending it jobs until it recovers. A job that fails for good "
    "lands in the dead-letter list, where an operator can inspect the error and re-drive "
    "the job once the cause is fixed.",
    "Cancellation must reach the worker. When a person cancels a running job, the "
    "supervisor aborts the call, the worker sees the cancellation at once and stops, and "
    "the job ends cancelled rather than running on unseen and wasting the worker's time.",
    "Scaling out is a matter of starting more workers. Each worker registers itself with "
    "a heartbeat, the supervisor notices the new capacity within seconds, and jobs spread "
    "across the replicas according to their declared concurrency and current load.",
]


def sample_text(repeat: int = 4) -> str:
    """A few kilobytes of prose about running a worker fleet (paragraphs, repeated)."""
    return "\n\n".join(_PARAGRAPHS * repeat)


@dataclass
class DemoJob:
    label: str
    capability: str
    input: dict[str, Any]
    expect: str = "succeeded"
    options: dict[str, Any] = field(default_factory=dict)
    describe: Callable[[Any], str] = lambda result: ""


def _profile(r: Any) -> str:
    return f"{r['total_records']} records, {len(r['fields'])} fields"


def _validate(r: Any) -> str:
    valid, invalid = r.get("valid"), r.get("invalid")
    return f"{valid} valid, {invalid} invalid" if valid is not None else str(r)[:60]


def _transform(r: Any) -> str:
    return f"{r['total_in']} in → {r['total_out']} out ({r['dropped']} dropped)"


def _keywords(r: Any) -> str:
    return ", ".join(k["term"] for k in r["keywords"][:4])


def _summary(r: Any) -> str:
    return f"{len(r['sentences'])} of {r['total_sentences']} sentences ({r['compression']:.0%})"


def batch(records: list[dict[str, Any]], text: str) -> list[DemoJob]:
    """The jobs every demo submits, in order; the last two are the unhappy paths."""
    return [
        DemoJob("profile dataset", "profile_dataset", {"records": records, "top_n": 3},
                describe=_profile),
        DemoJob("validate dataset", "validate_records",
                {"records": records, "schema": RECORD_SCHEMA, "max_errors": 20},
                describe=_validate),
        DemoJob("transform dataset", "transform_records",
                {"records": records, "rules": TRANSFORM_RULES}, describe=_transform),
        DemoJob("summarize text", "summarize", {"text": text, "max_sentences": 3},
                describe=_summary),
        DemoJob("keywords", "extract_keywords", {"text": text, "top_n": 8, "max_words": 2},
                describe=_keywords),
        DemoJob("chunk text", "chunk_text", {"text": text, "max_chars": 600, "overlap": 60},
                describe=lambda r: f"{r['count']} chunks"),
        DemoJob("progress stream", "progress", {"steps": 40, "delay_ms": 60},
                describe=lambda r: f"{r['steps']} steps"),
        DemoJob("sleep 3s", "sleep", {"seconds": 3, "steps": 30},
                describe=lambda r: f"slept {r['slept']:g}s"),
        DemoJob("echo", "echo", {"value": {"hello": "fleet", "n": [1, 2, 3]}},
                describe=lambda r: "round trip ok" if r["value"]["hello"] == "fleet" else "?"),
        DemoJob("flaky upstream", "fail",
                {"code": "UPSTREAM_DOWN", "message": "upstream unavailable", "retryable": True},
                expect="failed", options={"max_attempts": 2}),
    ]  # fmt: skip


CANCEL_JOB = DemoJob("long sleep (cancel)", "sleep", {"seconds": 120, "steps": 240},
                     expect="cancelled")  # fmt: skip
"""Cancelled by the demo as soon as it is running."""

INVALID_JOB = DemoJob("invalid input", "sleep", {"seconds": -5}, expect="rejected")
"""Refused at submission with 422, naming the field."""
