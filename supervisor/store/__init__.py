"""The durable job store: job records, the dispatch queue, event logs, idempotency, dead letters.

One implementation speaks the Redis protocol to either a real Redis (``redis://``) or the
in-process ``burner-redis`` engine (``memory://``), so both backends share every line of logic
and one contract suite tests them. Every multi-key change is one Lua script (``scripts/*.lua``),
hence atomic; on the engine its Python twin runs instead, under a lock (measured faster, see
``embedded``). Key names come from :class:`shared.keys.Keys`; the layout is documented there.

    async with open_store("memory://") as store:
        job, created = await store.submit(job, fingerprint="...", queue_limit=100)

Modules, one concept each; :class:`Store` is assembled from one part per concept:

- ``open``: :class:`Store` (the parts together) and :func:`open_store` (by URL)
- ``base``: the client plumbing every part shares (commands, pipelines, scripts, wake-ups)
- ``jobs``: job records — submit, get, flags, transition, acquire the lease
- ``queue``: the dispatch queue — take, reclaim, renew, ack, leases, requeue
- ``events``: event logs — append, read or wait; the ``changed`` and ``cancel`` channels
- ``index``: listings — jobs, dead letters, queue depths, worker registrations
- ``maintenance``: the janitor (trim)
- ``admission``: per-tenant limits (submissions a second, jobs in flight) across replicas
- ``usage``: the usage ledger (what ended jobs cost, per day, tenant and capability)
- ``codec``: the job hash's field encoding; ``errors``: Fenced, AdmissionFull
- ``signals``: in-process wake-ups for event watchers; ``tails``: one read of a job's log for
  all its watchers here
- ``lua``: reads the atomic scripts from ``scripts/*.lua``; ``embedded``: their Python twins
"""

from supervisor.store.admission import OverLimit
from supervisor.store.errors import AdmissionFull, Fenced
from supervisor.store.open import Store, open_store
from supervisor.store.queue import MAX_BLOCK_MS, QueueEntry

__all__ = [
    "MAX_BLOCK_MS",
    "AdmissionFull",
    "Fenced",
    "OverLimit",
    "QueueEntry",
    "Store",
    "open_store",
]
