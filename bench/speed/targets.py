"""The targets of issue 10, each checked against the medians of a run: PASS or MISS.

A target whose inputs are missing (a system unavailable, a measurement failed) is a MISS
with the reason, never skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["TARGETS", "evaluate"]


class Missing(Exception):
    """An input of a target was not measured; the message says why."""


@dataclass(frozen=True)
class Target:
    key: str
    name: str | Callable[[dict[str, Any]], str]
    """Or made from the run, when it depends on the run's counts."""
    target: str
    unit: str
    value: Callable[[dict[str, Any]], float]
    ok: Callable[[float], bool]


def _system(result: dict[str, Any], key: str, metric: str, how: str = "median") -> float:
    row = next((s for s in result["systems"] if s["key"] == key), None)
    if row is None:
        raise Missing(f"{key} was not run")
    if row["unavailable"]:
        raise Missing(f"{row['label']} unavailable: {row['unavailable']}")
    value = row["metrics"].get(metric, {}).get(how)
    if value is None:
        raise Missing(f"{row['label']}: no {metric}")
    return float(value)


def _progress(
    result: dict[str, Any], store: str, watchers: int, metric: str, how: str, rate: float = 0
) -> float:
    """A progress row's number: at full speed (``rate`` 0) or paced at ``rate`` events/s."""
    row = next(
        (
            p
            for p in result["progress"]
            if p["store"] == store and p["watchers"] == watchers and p.get("rate", 0) == rate
        ),
        None,
    )
    if row is None or row["unavailable"] or row["metrics"].get(metric, {}).get(how) is None:
        reason = row["unavailable"] if row else "not run"
        raise Missing(f"progress {store} {watchers} watchers at {_rate(rate)}: {reason}")
    return float(row["metrics"][metric][how])


def _rate(rate: float) -> str:
    return f"{rate:,.0f} events/s" if rate else "full speed"


def _memory(result: dict[str, Any], store: str) -> float:
    row = next((m for m in result["memory"] if m["store"] == store), None)
    if row is None or row.get("unavailable"):
        raise Missing(f"memory {store}: {row['unavailable'] if row else 'not run'}")
    return float(row["rss_mb"])


def _impact(result: dict[str, Any], store: str) -> float:
    section = result.get("watchers_impact") or {}
    row = next((r for r in section.get("rows", []) if r["store"] == store), None)
    if row is None or row["unavailable"] or row["ratio"]["median"] is None:
        reason = (row["unavailable"] or "no complete round") if row else "not run"
        raise Missing(f"watchers' impact {store}: {reason}")
    return float(row["ratio"]["median"])


def _paced_name(store: str, watchers: int) -> Callable[[dict[str, Any]], str]:
    """The latency target is read at the paced rate (full speed: see ``Counts.progress_rate``)."""

    def name(result: dict[str, Any]) -> str:
        rate = result["counts"]["progress_rate"]
        return f"progress append→watcher p50 at {_rate(rate)}, {store}://, {watchers} watcher(s)"

    return name


def _impact_name(store: str) -> Callable[[dict[str, Any]], str]:
    """The target is set for 1,000 watchers; a run with fewer (--quick) says so."""

    def name(result: dict[str, Any]) -> str:
        watchers = result["counts"]["impact_watchers"]
        fewer = "" if watchers >= 1000 else f" ({result['mode']} run: {watchers:,}, not 1,000)"
        return f"job p50 with 1,000 SSE watchers ÷ with none, {store}://{fewer}"

    return name


def _ratio(a: str, b: str, metric: str = "jobs_s_inflight") -> Callable[[dict[str, Any]], float]:
    return lambda r: _system(r, a, metric) / _system(r, b, metric)


def _added(key: str) -> Callable[[dict[str, Any]], float]:
    return lambda r: _system(r, key, "p50_ms") - _system(r, "floor-kit", "p50_ms")


def _targets() -> list[Target]:
    out = [
        Target("redis_vs_celery_bare", "fleet redis:// jobs/s ÷ Celery bare no-op", "≥ 1.0×",
               "×", _ratio("fleet-redis-wait", "celery-bare"), lambda v: v >= 1.0),
        Target("redis_vs_celery_mcp", "fleet redis:// jobs/s ÷ Celery MCP-calling", "≥ 1.3×",
               "×", _ratio("fleet-redis-wait", "celery-mcp"), lambda v: v >= 1.3),
        Target("redis_vs_fastmcp", "fleet redis:// jobs/s ÷ reused FastMCP client", "≥ 1.0×",
               "×", _ratio("fleet-redis-wait", "fastmcp"), lambda v: v >= 1.0),
        Target("memory_vs_floor", "fleet memory:// jobs/s ÷ raw floor", "≥ 0.8×",
               "×", _ratio("fleet-memory-wait", "floor-kit"), lambda v: v >= 0.8),
        Target("memory_added_p50", "p50 added over the raw floor, memory://", "≤ 1.5 ms",
               "ms", _added("fleet-memory-wait"), lambda v: v <= 1.5),
        Target("redis_added_p50", "p50 added over the raw floor, redis://", "≤ 2.5 ms",
               "ms", _added("fleet-redis-wait"), lambda v: v <= 2.5),
        Target("supervisor_cpu_redis", "supervisor CPU per job, redis://", "≤ 1.0 ms",
               "ms", lambda r: _system(r, "fleet-redis-wait", "cpu_runner_ms"),
               lambda v: v <= 1.0),
        Target("kit_worker_cpu", "kit worker CPU per call ÷ bare FastMCP's", "≤ 1.3×",
               "×", _ratio("floor-kit", "floor-bare", "cpu_worker_ms"), lambda v: v <= 1.3),
    ]  # fmt: skip
    for store in ("memory", "redis"):
        for watchers in (1, 100):
            out.append(
                Target(
                    f"progress_rate_{store}_{watchers}",
                    f"progress events/s, {store}://, {watchers} watcher(s)", "≥ 2,000/s", "/s",
                    lambda r, s=store, w=watchers: _progress(r, s, w, "events_s", "median"),
                    lambda v: v >= 2000,
                )
            )  # fmt: skip
            out.append(
                Target(
                    f"progress_p50_{store}_{watchers}",
                    _paced_name(store, watchers),
                    "≤ 2 ms", "ms",
                    lambda r, s=store, w=watchers: _progress(
                        r, s, w, "append_p50_ms", "median", r["counts"]["progress_rate"]
                    ),
                    lambda v: v <= 2.0,
                )
            )  # fmt: skip
        out.append(
            Target(
                f"progress_lost_{store}", f"progress events lost, {store}:// (worst run)", "0",
                "", lambda r, s=store: max(
                    _progress(r, s, p["watchers"], "lost", "max", p.get("rate", 0))
                    for p in r["progress"] if p["store"] == s
                ),
                lambda v: v == 0,
            )
        )  # fmt: skip
        out.append(
            Target(
                f"memory_rss_{store}", f"supervisor RSS, queued jobs + watchers, {store}://",
                "< 250 MB", "MB", lambda r, s=store: _memory(r, s), lambda v: v < 250,
            )
        )  # fmt: skip
        out.append(
            Target(
                f"watchers_impact_{store}", _impact_name(store), "≤ 1.10×", "×",
                lambda r, s=store: _impact(r, s), lambda v: v <= 1.10,
            )
        )  # fmt: skip
    return out


TARGETS = _targets()


def evaluate(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target: its value, PASS or MISS, and the reason when it could not be computed."""
    out = []
    for t in TARGETS:
        name = t.name(result) if callable(t.name) else t.name
        row: dict[str, Any] = {"key": t.key, "name": name, "target": t.target, "unit": t.unit}
        try:
            value = t.value(result)
        except Missing as exc:
            row.update(value=None, verdict="MISS", reason=f"unavailable: {exc}")
        else:
            row.update(value=value, verdict="PASS" if t.ok(value) else "MISS", reason=None)
        out.append(row)
    return out
