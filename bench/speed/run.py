"""One run of the speed bench: start the stack, build every system, measure in rounds, stop.

Order: the foreign venvs are built (or found cached) first; then the stack starts; each
system is started once (a failure makes it *unavailable* with the reason); every round
measures all systems in a rotating order, then progress (each store, each number of
watchers), the watchers' impact on job durations (each store) and the curve; memory is
measured once at the end, with supervisors of its own.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.speed import foreign
from bench.speed.config import Counts
from bench.speed.measure import Entry, run_curve, run_round
from bench.speed.memory import measure_memory
from bench.speed.progress import measure_progress
from bench.speed.stack import Stack
from bench.speed.stats import spread
from bench.speed.systems import FastMCPClient, Fleet, Floor, Foreign
from bench.speed.targets import evaluate
from bench.speed.watchers import Impact

__all__ = ["FLOOR", "run"]

FLOOR = (
    "supervisor.calls.WorkerPool called directly (the supervisor's own MCP client: one reused "
    "aiohttp session, JSON-RPC POST, MCP 2026-07-28 sessionless when the worker speaks it)"
)
STORES = ("memory", "redis")
_FOREIGN_DB = {"celery": 1, "arq": 2}

Log = Callable[[str], None]


def _commit() -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"


def _entries(stack: Stack, venvs: dict[str, Path | foreign.Unavailable]) -> list[Entry]:
    pid = stack.pid
    echo, bare, redis = [pid(stack.echo)], [pid(stack.bare)], [pid(stack.redis)]
    out = [
        Entry("floor-kit", "raw floor → kit echo worker", Floor(stack.echo_url), {"worker": echo}),
        Entry("floor-bare", "raw floor → bare FastMCP", Floor(stack.bare_url), {"worker": bare}),
        Entry("fastmcp", "FastMCP client, reused", FastMCPClient(stack.echo_url),
              {"worker": echo}),
    ]  # fmt: skip
    for store in STORES:
        groups = {"runner": [pid(stack.supervisors[store])], "worker": echo}
        if store == "redis":
            groups["redis"] = redis
        for mode, how in (("wait", "?wait"), ("sse", "submit + SSE")):
            system = Fleet(stack.base[store], mode)
            out.append(Entry(f"fleet-{store}-{mode}", f"fleet {store}:// {how}", system, groups))
        # The fleet's MCP face, by the same FastMCP client as the direct row `fastmcp`.
        face = FastMCPClient(stack.base[store] + "/mcp")
        out.append(Entry(f"fleet-{store}-mcp", f"fleet {store}:// /mcp, FastMCP client", face,
                         groups))  # fmt: skip
    for kind, python in venvs.items():
        for task, what in (("noop", "bare no-op"), ("mcp_noop", "→ MCP noop")):
            key, label = f"{kind}-{'bare' if task == 'noop' else 'mcp'}", f"{kind} {what}"
            if isinstance(python, foreign.Unavailable):
                out.append(Entry(key, label, None, unavailable=str(python)))
                continue
            driver = foreign.Driver(kind, task, python, stack.redis_db(_FOREIGN_DB[kind]),
                                    stack.echo_url)  # fmt: skip
            groups = {"runner": [], "redis": redis}
            if task == "mcp_noop":
                groups["worker"] = echo
            out.append(Entry(key, label, Foreign(driver), groups))
    return out


async def _start_foreign(stack: Stack, venvs: dict[str, Any], entries: list[Entry]) -> None:
    for kind, python in venvs.items():
        if isinstance(python, foreign.Unavailable):
            continue
        db = stack.redis_db(_FOREIGN_DB[kind])
        proc = foreign.foreign_worker(kind, python, db, stack.echo_url, stack.workdir / kind)
        stack.procs.append(proc)
        proc.start()
        for entry in entries:
            if entry.key.startswith(kind + "-"):
                entry.cpu["runner"] = [stack.pid(proc)]


def _progress_runs(counts: Counts) -> list[tuple[str, int, float]]:
    """(store, watchers, rate) of every progress run: each number of watchers at full speed
    (rate 0: the events/s), and those with watchers paced at ``progress_rate`` (the latency)."""
    return [
        (store, watchers, rate)
        for store in STORES
        for watchers in counts.watchers
        for rate in (0.0, counts.progress_rate)
        if not (rate and not watchers)
    ]


async def run(counts: Counts, mode: str, workdir: Path, log: Log) -> dict[str, Any]:
    load_start = os.getloadavg()
    log("building (or finding cached) the Celery and arq venvs ...")
    venvs = await asyncio.to_thread(foreign.build_venvs)
    async with Stack(workdir) as stack:
        entries = _entries(stack, venvs)
        await _start_foreign(stack, venvs, entries)
        for entry in entries:
            if entry.system is not None and entry.unavailable is None:
                try:
                    await entry.system.start()
                except Exception as exc:
                    entry.unavailable = f"did not start: {exc!r}"[:300]
        progress: dict[tuple[str, int, float], dict[str, list[float]]] = {}
        progress_errors: dict[tuple[str, int, float], str] = {}
        curve: dict[str, dict[int, dict[str, list[float]]]] = {}
        impact = Impact(counts, workdir)
        try:
            for index in range(counts.rounds):
                log(f"round {index + 1}/{counts.rounds}: systems")
                await run_round(entries, counts, index, log)
                log(f"round {index + 1}/{counts.rounds}: progress, watchers' impact, curve")
                for store, watchers, rate in _progress_runs(counts):
                    key = (store, watchers, rate)
                    try:
                        numbers = await measure_progress(
                            stack.base[store],
                            stack.pid(stack.supervisors[store]),
                            watchers,
                            counts.progress_events,
                            workdir,
                            rate,
                        )
                    except Exception as exc:
                        progress_errors[key] = repr(exc)[:300]
                        continue
                    for name, value in numbers.items():
                        progress.setdefault(key, {}).setdefault(name, []).append(value)
                for store in STORES:
                    supervisor = stack.pid(stack.supervisors[store])
                    await impact.round(store, stack.base[store], supervisor, index)
                await run_curve(stack.base, counts, curve)
        finally:
            for entry in entries:
                if entry.system is not None:
                    try:
                        await entry.system.close()
                    except Exception as exc:
                        log(f"closing {entry.label}: {exc!r}")
        memory = []
        for store in STORES:
            log(f"memory: {store}:// with {counts.queued:,} queued, {counts.queued_watchers:,} "
                "watchers")  # fmt: skip
            try:
                row = await measure_memory(
                    stack, store, counts.queued, counts.queued_watchers, workdir
                )
                memory.append({"store": store, "unavailable": None, **row})
            except Exception as exc:
                memory.append({"store": store, "unavailable": repr(exc)[:300]})
    result: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "mode": mode,
        "cores": os.cpu_count(),
        "load": {"start": [round(x, 2) for x in load_start],
                 "end": [round(x, 2) for x in os.getloadavg()]},
        "counts": counts.as_dict(),
        "floor": FLOOR,
        "systems": [
            {"key": e.key, "label": e.label, "unavailable": e.unavailable,
             "metrics": {k: spread(v) for k, v in e.rounds.items()}}
            for e in entries
        ],
        "progress": [
            {"store": s, "watchers": w, "rate": r, "unavailable": progress_errors.get((s, w, r)),
             "metrics": {k: spread(v) for k, v in progress.get((s, w, r), {}).items()}}
            for s, w, r in _progress_runs(counts)
        ],
        "curve": [
            {"store": s, "submitters": n,
             "metrics": {k: spread(v) for k, v in curve.get(s, {}).get(n, {}).items()}}
            for s in STORES for n in counts.curve
        ],
        "memory": memory,
        "watchers_impact": impact.section(STORES),
    }  # fmt: skip
    result["targets"] = evaluate(result)
    return result
