"""The usage ledger: what ended jobs cost, summed per UTC day, tenant and capability.

Each ended job that reached a worker adds its figures to the day's hash in the atomic step that
writes its outcome (:func:`usage_args`, taken by ``transition(ledger=job)``): ``jobs``,
``attempts``, ``worker_us``, ``bytes_in`` and ``bytes_out`` under
``{tenant}|{capability}|{figure}`` (``-`` for no tenant). Tenant names and capabilities hold
no ``|``. A day's hash lives :data:`RETENTION_DAYS`. Sums are read by day, so ``since``
counts from the start of its UTC day.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from shared import Job, Keys
from supervisor.store.base import StoreBase
from supervisor.store.codec import USAGE_FIGURES, text

__all__ = ["FIGURES", "RETENTION_DAYS", "UsageLedger", "usage_args"]

RETENTION_DAYS = 400
MAX_DAYS = RETENTION_DAYS
FIGURES = USAGE_FIGURES
NO_TENANT = "-"


def day_of(ts: float) -> str:
    return _day(int(ts // 86_400))


@functools.lru_cache(maxsize=8)
def _day(days: int) -> str:
    """The UTC date of a day number (days since the epoch): one strftime per day, not per job."""
    return dt.datetime.fromtimestamp(days * 86_400, dt.UTC).strftime("%Y%m%d")


def usage_args(keys: Keys, job: Job) -> tuple[str, str]:
    """The day hash an ended job's usage goes to, and TRANSITION's usage argument: the hash's
    TTL, one integer per figure (exact sums) and the field prefix ``{tenant}|{capability}|``,
    separated by spaces (the prefix last: whatever it holds, it is the rest)."""
    assert job.usage is not None and job.finished_at is not None
    u = job.usage
    amounts = (1, job.attempts, round(u.worker_s * 1e6), u.bytes_in, u.bytes_out)
    base = f"{job.tenant or NO_TENANT}|{job.capability}|"
    return keys.usage(day_of(job.finished_at)), " ".join(
        [str(RETENTION_DAYS * 86_400), *map(str, amounts), base]
    )


class UsageLedger(StoreBase):
    async def usage_since(
        self, since: float, until: float, tenant: str | None = None
    ) -> list[dict[str, Any]]:
        """Sums per (tenant, capability) over the UTC days from ``since``'s to ``until``'s;
        ``tenant``: that tenant's only (``""``: callers without one)."""
        first = dt.datetime.fromtimestamp(since, dt.UTC).date()
        last = dt.datetime.fromtimestamp(until, dt.UTC).date()
        days = [first + dt.timedelta(days=i) for i in range(min((last - first).days + 1, MAX_DAYS))]
        shards = self.keys.every_shard()  # a job's usage is in its shard's day hash
        keys = [k.usage(d.strftime("%Y%m%d")) for d in days for k in shards]

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
