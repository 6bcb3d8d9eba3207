"""The speed bench (``./run bench``, ``--quick`` for CI): the fleet side by side with its
floor, the FastMCP client, Celery and arq, from one run on one machine.

- :mod:`.config` — how much each measurement does (full, quick).
- :mod:`.stack` — the processes under test (Redis, workers, supervisors), started and stopped.
- :mod:`.bare_worker`, :mod:`.ticks_worker` — the extra workers the bench serves.
- :mod:`.foreign` — Celery and arq: venvs, worker processes, the driver (``foreign_app/``).
- :mod:`.systems` — each system's way of running, enqueueing and awaiting a job.
- :mod:`.measure` — rounds of latency, throughput and CPU per job; the curve.
- :mod:`.progress`, :mod:`.memory` — progress end to end; RSS with queued jobs and watchers.
- :mod:`.watchers` — job durations with and without many SSE watchers (their own process).
- :mod:`.procstat`, :mod:`.stats` — ``/proc`` readings; percentiles and spreads.
- :mod:`.targets`, :mod:`.report` — PASS/MISS per target; tables and JSON.
- :mod:`.run`, ``__main__`` — one run, and the command line.
"""
