"""Every Redis key name the fleet uses, from one builder.

Data model (``{p}`` is the prefix, ``fleet`` by default):

| key                         | type   | TTL                      | holds |
|-----------------------------|--------|--------------------------|-------|
| ``{p}:job:{id}``            | hash   | retention after finish   | the job record (JSON fields) and its event counter |
| ``{p}:job:{id}:events``     | stream | retention after finish   | the job's event log; entry id ``{seq}-1`` |
| ``{p}:job:{id}:children``   | list   | idempotency window, renewed per child | the ids of its children, in submit order |
| ``{p}:jobs``                | zset   | permanent index          | job ids scored by creation time (listing) |
| ``{p}:jobs:{status}``       | zset   | permanent index          | the same, of the jobs in that status now |
| ``{p}:ids``                 | zset   | permanent index          | the same ids, all scored 0: a short id's lookup by prefix |
| ``{p}:queue``               | stream | permanent                | dispatch queue; consumer group ``dispatchers`` |
| ``{p}:queued``              | hash   | permanent                | queued-job count per capability (admission) |
| ``{p}:idem:{key}``          | string | idempotency window       | job id first submitted with that key |
| ``{p}:idem@{tenant}:{key}`` | string | idempotency window       | the same, for a tenant's caller |
| ``{p}:rate:{who}``          | hash   | time to refill the burst | submission token bucket (tenant or actor) |
| ``{p}:inflight:{who}``      | zset   | none (pruned when full)  | job ids admitted in flight (tenant or actor) |
| ``{p}:dead``                | zset   | permanent index          | dead-lettered job ids scored by time |
| ``{p}:usage:{YYYYMMDD}``    | hash   | usage retention (400 d)  | a UTC day's usage: ``{tenant}|{capability}|{figure}`` → sum |
| ``{p}:cancel``              | pubsub | n/a                      | job ids whose running call must stop |
| ``{p}:changed``             | pubsub | n/a                      | job ids whose event log just grew (wakes watchers) |
| ``{p}:worker:{name}``       | string | heartbeat × 3            | a worker's registration (JSON) |
| ``{p}:wdone:{svc}:{key}``   | string | worker idempotency TTL   | a worker's stored result for an idempotency key |
| ``{p}:wlock:{svc}:{key}``   | string | 5 s, renewed every 1.5 s | a worker's in-progress marker for that key |

Indexes (``jobs``, ``jobs:{status}``, ``ids``, ``dead``) are trimmed of ids whose record has expired
when read, and by the janitor. The status indexes are kept by the scripts that change a
job's status (SUBMIT, TRANSITION, REQUEUE), so ``?status=running`` reads only running jobs.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DISPATCH_GROUP", "STATUS_ORDER", "Keys"]

DISPATCH_GROUP = "dispatchers"
STATUS_ORDER = ("queued", "running", "succeeded", "failed", "cancelled")
"""The job statuses, in the order TRANSITION and REQUEUE take their index keys."""


@dataclass(frozen=True, slots=True)
class Keys:
    """Key builder.

    >>> Keys("t1").job("abc")
    't1:job:abc'
    """

    prefix: str = "fleet"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def events(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:events"

    def children(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:children"

    @property
    def jobs(self) -> str:
        return f"{self.prefix}:jobs"

    @property
    def ids(self) -> str:
        return f"{self.prefix}:ids"

    def by_status(self, status: str) -> str:
        return f"{self.prefix}:jobs:{status}"

    def status_indexes(self) -> list[str]:
        """One per status, in the order the scripts take them (``STATUS_ORDER``)."""
        return [self.by_status(s) for s in STATUS_ORDER]

    @property
    def queue(self) -> str:
        return f"{self.prefix}:queue"

    @property
    def queued(self) -> str:
        return f"{self.prefix}:queued"

    def idempotency(self, key: str, tenant: str | None = None) -> str:
        """A tenant's keys live apart (``idem@{tenant}:``): two tenants never collide, and
        the key of a caller without a tenant is unchanged."""
        return f"{self.prefix}:idem@{tenant}:{key}" if tenant else f"{self.prefix}:idem:{key}"

    def usage(self, day: str) -> str:
        return f"{self.prefix}:usage:{day}"

    def rate(self, who: str) -> str:
        return f"{self.prefix}:rate:{who}"

    def inflight(self, who: str) -> str:
        return f"{self.prefix}:inflight:{who}"

    @property
    def dead(self) -> str:
        return f"{self.prefix}:dead"

    @property
    def cancel_channel(self) -> str:
        return f"{self.prefix}:cancel"

    @property
    def changed_channel(self) -> str:
        return f"{self.prefix}:changed"

    def worker(self, name: str) -> str:
        return f"{self.prefix}:worker:{name}"

    @property
    def worker_pattern(self) -> str:
        return f"{self.prefix}:worker:*"

    def worker_done(self, service: str, key: str) -> str:
        return f"{self.prefix}:wdone:{service}:{key}"

    def worker_lock(self, service: str, key: str) -> str:
        return f"{self.prefix}:wlock:{service}:{key}"
