"""The usage ledger: what ended jobs cost, summed per UTC day, tenant and capability.

Each ended job that reached a worker adds its figures to the day's hash (one pipelined round
trip after its outcome is written): ``jobs``, ``attempts``, ``worker_us``, ``bytes_in`` and
``bytes_out`` under ``{tenant}|{capability}|{figure}`` (``-`` for no tenant). Tenant names
and capabilities hold no ``|``. A day's hash lives :data:`RETENTION_DAYS`. Sums are read by
day, so ``since`` counts from the start of its UTC day.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from shared import Job
from supervisor.store.base import StoreBase
from supervisor.store.codec import text

__all__ = ["FIGURES", "RETENTION_DAYS", "UsageLedger"]

RETENTION_DAYS = 400
MAX_DAYS = RETENTION_DAYS
FIGURES = ("jobs", "attempts", "worker_us", "bytes_in", "bytes_out")
NO_TENANT = "-"


def day_of(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y%m%d")


class UsageLedger(StoreBase):
    async def record_usage(self, job: Job, at: float) -> None:
        """Add an ended job's usage (``job.usage``) to its day's sums."""
        if job.usage is None:
            return
        key = self.keys.usage(day_of(at))
        base = f"{job.tenant or NO_TENANT}|{job.capability}|"
        u = job.usage

        def fill(pipe: Any) -> None:
            pipe.hincrby(key, base + "jobs", 1)
            pipe.hincrby(key, base + "attempts", job.attempts)
            pipe.hincrby(key, base + "worker_us", round(u.worker_s * 1e6))  # integers: exact
            pipe.hincrby(key, base + "bytes_in", u.bytes_in)
            pipe.hincrby(key, base + "bytes_out", u.bytes_out)
            pipe.expire(key, RETENTION_DAYS * 86_400)

        await self._run_pipeline(fill)

    async def usage_since(
        self, since: float, until: float, tenant: str | None = None
    ) -> list[dict[str, Any]]:
        """Sums per (tenant, capability) over the UTC days from ``since``'s to ``until``'s;
        ``tenant``: that tenant's only (``""``: callers without one)."""
        first = dt.datetime.fromtimestamp(since, dt.UTC).date()
        last = dt.datetime.fromtimestamp(until, dt.UTC).date()
        days = [first + dt.timedelta(days=i) for i in range(min((last - first).days + 1, MAX_DAYS))]
        keys = [self.keys.usage(d.strftime("%Y%m%d")) for d in days]

        def fill(pipe: Any) -> None:
            for key in keys:
                pipe.hgetall(key)

        sums: dict[tuple[str, str], dict[str, float]] = {}
        for day in await self._run_pipeline(fill) if keys else []:
            for field, value in (day or {}).items():
                who, capability, figure = text(field).split("|", 2)
                if tenant is not None and who != (tenant or NO_TENANT):
                    continue
                row = sums.setdefault((who, capability), dict.fromkeys(FIGURES, 0.0))
                row[figure] = row.get(figure, 0.0) + float(text(value))
        return [
            {
                "tenant": None if who == NO_TENANT else who,
                "capability": capability,
                "jobs": int(row["jobs"]),
                "attempts": int(row["attempts"]),
                "worker_s": row["worker_us"] / 1e6,
                "bytes_in": int(row["bytes_in"]),
                "bytes_out": int(row["bytes_out"]),
            }
            for (who, capability), row in sorted(sums.items())
        ]
