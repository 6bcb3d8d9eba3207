"""Dispatch: taking jobs from the queue, running them on workers, recording every outcome.

Modules, one concept each:

- ``loops``: the :class:`Dispatcher`, its intake, lease and cancel loops, one task per job.
- ``held``: the lease held on one job (stream entry, fencing token) and its loss.
- ``run``: one job's run, from acquiring it to its outcome.
- ``policy``: which failures may be retried and reclaimed jobs rerun; the backoff.
- ``placement``: choosing a worker for an attempt, per-tool slots, waiting for one.
- ``router``: the choice among candidate workers (power of two choices).
- ``breaker``: the per-worker circuit breaker.
- ``call``: one attempt's call to a worker and its verdict.
- ``outcome``: writing a job's end across store outages, and counting it.

The life of one job: the intake loop (or a reclaim in the lease loop) takes a stream entry
and spawns a task holding it (:class:`~.held.Held`); the runner acquires the job under a new
fencing token, waits until the placement finds a worker, and calls it; a failed attempt is
retried on another worker as the retry policy allows; the outcome is written and the entry
acknowledged. Meanwhile the lease loop renews the lease, and a fence that moved on (another
supervisor took the job over) cancels the task without another write; a cancel request
cancels it and records ``CANCELLED``.

A job runs only on workers of the service it was validated against, with the same input
schema (``job.service``, ``job.tool``, ``job.schema_digest``).
"""

from supervisor.dispatch.loops import Dispatcher
from supervisor.dispatch.placement import NoWorker

__all__ = ["Dispatcher", "NoWorker"]
