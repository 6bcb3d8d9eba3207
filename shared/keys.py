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

Shards (``FLEET_SHARDS`` > 1, the default on a Redis Cluster): ``job``, ``events``,
``children``, ``jobs``, ``jobs:{status}``, ``ids``, ``queue``, ``queued``, ``idem``, ``dead``
and ``usage`` exist once per shard, each shard under a prefix of its own
(:func:`shard_prefix`: ``{fleet}`` → ``{fleet.3}``, so each shard is one cluster slot and the
shards spread over the masters); the rest stay under ``{p}``. Shard 0 is ``{p}`` itself, so a
store written before shards reads on. A job's id names its shard (:meth:`Keys.place`,
:func:`shard_of`): a sharded id is a UUIDv8 (``8`` at position 12) whose last four hex digits
are the shard number; any other id is in shard 0.

Indexes (``jobs``, ``jobs:{status}``, ``ids``, ``dead``) are trimmed of ids whose record has expired
when read, and by the janitor. The status indexes are kept by the scripts that change a
job's status (SUBMIT, TRANSITION, REQUEUE), so ``?status=running`` reads only running jobs.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass

__all__ = ["DISPATCH_GROUP", "STATUS_ORDER", "Keys", "shard_of", "shard_prefix"]

DISPATCH_GROUP = "dispatchers"
STATUS_ORDER = ("queued", "running", "succeeded", "failed", "cancelled")
"""The job statuses, in the order TRANSITION and REQUEUE take their index keys."""


def shard_of(job_id: str) -> int:
    """The shard a job id names: the last four hex digits of a sharded id (a UUIDv8, ``8`` at
    position 12), 0 for any other id (a UUID4, minted unsharded).

    >>> shard_of("0123456789ab8def0123456789ab0003"), shard_of("0123456789ab4def0123456789ab0003")
    (3, 0)
    """
    if len(job_id) == 32 and job_id[12] == "8":
        try:
            return int(job_id[28:], 16)
        except ValueError:
            return 0
    return 0


@functools.lru_cache(maxsize=1024)
def shard_prefix(prefix: str, shard: int) -> str:
    """The key prefix of ``shard``: the prefix itself for shard 0; else the shard number
    joins the prefix's hash tag (a cluster puts each shard in a slot of its own), or the
    prefix when it has none.

    >>> shard_prefix("{fleet}", 0), shard_prefix("{fleet}", 3), shard_prefix("t1", 2)
    ('{fleet}', '{fleet.3}', 't1.2')
    """
    if shard == 0:
        return prefix
    start, end = prefix.find("{"), prefix.find("}")
    if 0 <= start < end:
        return f"{prefix[:end]}.{shard}{prefix[end:]}"
    return f"{prefix}.{shard}"


@dataclass(frozen=True, slots=True)
class Keys:
    """Key builder.

    >>> Keys("t1").job("abc")
    't1:job:abc'
    >>> k = Keys("{f}", shards=4); k.of(k.place("0123456789ab4def0123456789abcdef", 2)).job("x")
    '{f.2}:job:x'
    """

    prefix: str = "fleet"
    shards: int = 1
    """How many shards new jobs are spread over (1: none; see the module's notes)."""

    def shard(self, shard: int) -> Keys:
        """The keys of one shard (shard 0: these)."""
        return self if shard == 0 else _shard_keys(self.prefix, shard)

    def every_shard(self) -> tuple[Keys, ...]:
        """The keys of each shard new jobs go to, shard 0 first."""
        return _every_shard(self)

    def of(self, job_id: str) -> Keys:
        """The keys of the shard ``job_id`` lives in."""
        return self.shard(shard_of(job_id)) if len(job_id) == 32 and job_id[12] == "8" else self

    def keyed(self, key: str, tenant: str | None = None) -> int:
        """The shard of the jobs submitted with idempotency ``key`` (of ``tenant``)."""
        if self.shards == 1:
            return 0
        return zlib.crc32(f"{tenant or ''}\0{key}".encode()) % self.shards

    def place(self, job_id: str, shard: int) -> str:
        """``job_id`` (32 hex digits) made the id of a job in ``shard``: a UUIDv8 carrying the
        shard in its last four digits. Unchanged when there is one shard."""
        if self.shards == 1 and shard == 0:
            return job_id
        return f"{job_id[:12]}8{job_id[13:28]}{shard:04x}"

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


@functools.lru_cache(maxsize=1024)
def _shard_keys(prefix: str, shard: int) -> Keys:
    return Keys(shard_prefix(prefix, shard))


@functools.lru_cache(maxsize=64)
def _every_shard(keys: Keys) -> tuple[Keys, ...]:
    return tuple(keys.shard(i) for i in range(keys.shards))
