"""Verdicts: the counts, computed from the API's answers, the durable event logs and the ledger.

The definitions (the package docstring repeats them for people):

- **lost**: an accepted job (a 2xx carried its id) that is not ``succeeded``, ``failed`` or
  ``cancelled`` when the scenario's deadline passes, or that the API no longer knows (404);
- **double execution**: a job whose ``ledger_once`` body *started* more than once, or any job
  whose body *completed* more than once (ledger ``start`` / ``complete`` lines), not counting
  a completion on a worker whose link was cut at the time (its answer reached nobody, and
  the job's retry elsewhere was right to run; :mod:`bench.chaos.cuts`);
- **gap**: a terminal job whose event log, replayed from the start by
  ``GET /v1/jobs/{id}/events``, is not exactly seq 1, 2, …, n ending in its first ``done``;
  or whose durable log (the Redis stream behind it) skips or repeats a number, is missing,
  or does not begin with what the replay showed;
- **event after done**: an entry of the durable log whose seq is above the first ``done`` of
  the same run (a run ends at ``done``; only a re-drive, a ``status: queued`` event, starts
  another). The SSE stream stops at the first ``done`` by design, so these are read from the
  stream in Redis directly;
- **5xx**: an answer ≥ 500 to the load generator, except ``503 STORE_UNAVAILABLE`` while the
  store is down on purpose (see :mod:`bench.chaos.api`).
"""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench.chaos.api import TERMINAL, Replay, Submitted, Tally
from shared.keys import Keys

__all__ = ["COUNTS", "Evidence", "Findings", "LogEntry", "durable_logs", "judge", "read_ledger"]

COUNTS = ("lost", "double_executions", "gaps", "events_after_done", "http_5xx")
"""The counts that must be 0 (recovery time is reported beside them)."""
_EXAMPLES = 5


@dataclass
class LogEntry:
    seq: int
    type: str
    data: dict[str, Any]


@dataclass
class JobLedger:
    calls: int = 0
    starts: int = 0
    completes: int = 0
    tool: str = ""
    start_ports: list[int] = field(default_factory=list)
    completed_at: list[tuple[int, float]] = field(default_factory=list)
    """(worker port, wall-clock time) of each completion."""


@dataclass
class Evidence:
    """Everything a scenario gathered, handed to :func:`judge`."""

    jobs: dict[str, Submitted]
    finals: dict[str, dict[str, Any] | None]
    replays: dict[str, Replay]
    logs: dict[str, list[LogEntry]]
    ledger: dict[str, JobLedger]
    tally: Tally
    refused: collections.Counter[str]
    unanswered: int
    cut_off: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    """Per worker port, the wall-clock spans its link was cut (``Run.cut_off``)."""


@dataclass
class Findings:
    counts: dict[str, int]
    examples: dict[str, list[dict[str, Any]]]
    info: dict[str, Any]


def read_ledger(path: Path) -> dict[str, JobLedger]:
    """The ledger, per job id (lines without a job id go under ``""``)."""
    out: dict[str, JobLedger] = collections.defaultdict(JobLedger)
    if not path.exists():
        return dict(out)
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        entry = out[record.get("job") or ""]
        entry.tool = record.get("tool", entry.tool)
        if record["e"] == "call":
            entry.calls += 1
        elif record["e"] == "start":
            entry.starts += 1
            entry.start_ports.append(int(record.get("port", 0)))
        elif record["e"] == "complete":
            entry.completes += 1
            entry.completed_at.append((int(record.get("port", 0)), float(record.get("t", 0))))
    return dict(out)


async def durable_logs(redis_url: str, keys: Keys, job_ids: list[str]) -> dict[str, list[LogEntry]]:
    """Every entry of each job's event stream in Redis (``XRANGE``), in order."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=10)
    out: dict[str, list[LogEntry]] = {}
    try:
        for start in range(0, len(job_ids), 200):
            chunk = job_ids[start : start + 200]
            pipe = client.pipeline(transaction=False)
            for job_id in chunk:
                pipe.xrange(keys.of(job_id).events(job_id))
            for job_id, entries in zip(chunk, await pipe.execute(), strict=True):
                out[job_id] = [_entry(entry_id, fields) for entry_id, fields in entries]
    finally:
        await client.aclose()
    return out


def _entry(entry_id: str, fields: dict[str, str]) -> LogEntry:
    try:
        data = json.loads(fields.get("d", "{}"))
    except ValueError:
        data = {"unparsed": fields.get("d")}
    return LogEntry(int(entry_id.split("-")[0]), fields.get("t", "?"), data)


def _gap(seqs: list[int]) -> str | None:
    """How ``seqs`` differs from 1..n, or None."""
    if seqs == list(range(1, len(seqs) + 1)):
        return None
    seen = collections.Counter(seqs)
    missing = sorted(set(range(1, max(seqs, default=0) + 1)) - set(seqs))
    repeated = sorted(s for s, n in seen.items() if n > 1)
    return f"missing {missing[:10]} repeated {repeated[:10]} first {seqs[:3]}"


def _after_done(log: list[LogEntry]) -> list[LogEntry]:
    out: list[LogEntry] = []
    done = False
    for entry in log:
        if done and entry.type == "status" and entry.data.get("status") == "queued":
            done = False  # a re-drive starts a new run
        elif done:
            out.append(entry)
        elif entry.type == "done":
            done = True
    return out


def judge(ev: Evidence) -> Findings:
    """The counts (see the module docstring) and what else is worth knowing."""
    examples: dict[str, list[dict[str, Any]]] = {name: [] for name in COUNTS}
    counts = dict.fromkeys(COUNTS, 0)

    def note(name: str, **detail: Any) -> None:
        if len(examples[name]) < _EXAMPLES:
            examples[name].append(detail)

    outcomes: collections.Counter[str] = collections.Counter()
    undercount = over_max = 0
    for job_id, sub in ev.jobs.items():
        final = ev.finals.get(job_id)
        status = final.get("status") if final else None
        if status not in TERMINAL:
            counts["lost"] += 1
            note("lost", job=job_id, label=sub.label, round=sub.round, status=status)
            continue
        assert final is not None
        error = final.get("error") or {}
        outcomes[f"{status} {error.get('code', '')}".strip()] += 1
        replay = ev.replays.get(job_id, Replay(error="not replayed"))
        log = ev.logs.get(job_id, [])
        problem = replay.error or (None if replay.done else "no done event")
        problem = problem or _gap(replay.seqs)
        durable = _gap([e.seq for e in log]) if log else "no durable log (key or format moved?)"
        if not durable and [e.seq for e in log[: len(replay.seqs)]] != replay.seqs:
            durable = "the durable log does not begin with what SSE replayed"
        if problem or durable:
            counts["gaps"] += 1
            note("gaps", job=job_id, sse=problem, durable=durable)
        late = _after_done(log)
        if late:
            counts["events_after_done"] += len(late)
            what = [(e.seq, e.type, e.data.get("status") or e.data.get("message")) for e in late]
            note("events_after_done", job=job_id, tool=sub.tool, events=what[:6])
        runs = sum(1 for e in log if e.type == "status" and e.data.get("status") == "running")
        if int(final.get("attempts") or 0) < runs:
            undercount += 1
        if runs > int(final.get("max_attempts") or 0):
            over_max += 1
    double_by_tool: collections.Counter[str] = collections.Counter()
    redelivered = unheard = 0

    def cut_off(port: int, at: float) -> bool:
        return any(start <= at <= end for start, end in ev.cut_off.get(port, ()))

    for job_id, entry in ev.ledger.items():
        if job_id not in ev.jobs:
            continue
        redelivered += entry.calls > 1
        muted = sum(1 for port, at in entry.completed_at if cut_off(port, at))
        unheard += muted
        if (entry.tool == "ledger_once" and entry.starts > 1) or entry.completes - muted > 1:
            counts["double_executions"] += 1
            double_by_tool[entry.tool] += 1
            note(
                "double_executions",
                job=job_id,
                tool=entry.tool,
                label=ev.jobs[job_id].label,
                calls=entry.calls,
                starts=entry.starts,
                completes=entry.completes,
                start_ports=entry.start_ports,
            )
    counts["http_5xx"] = ev.tally.http_5xx
    examples["http_5xx"] = ev.tally.examples_5xx[:_EXAMPLES]
    info = {
        "outcomes": dict(outcomes),
        "double_executions_by_tool": dict(double_by_tool),
        "redelivered_jobs": redelivered,
        "completed_while_cut_off": unheard,
        "attempts_undercounted": undercount,
        "runs_over_max_attempts": over_max,
        "executions_of_unknown_jobs": sum(
            e.starts for j, e in ev.ledger.items() if j not in ev.jobs
        ),
        "answers": dict(ev.tally.answers),
        "outage_503": ev.tally.outage_503,
        "transport_errors": dict(ev.tally.transport_errors),
        "refused_submissions": dict(ev.refused),
        "unanswered_submissions": ev.unanswered,
    }
    return Findings(counts, {k: v for k, v in examples.items() if v}, info)
