"""The chaos suite: real processes, real faults, and counts that must be 0.

    ./run chaos                 # the full suite (~10 minutes on 2 cores)
    ./run chaos --quick         # the short one CI runs (~2 minutes; tests/test_chaos.py)
    ./run chaos --json          # machine-readable; --only worker-kill,redis-kill; --keep

Each scenario gets a fresh work dir with its own ``redis-server`` (AOF, ``appendfsync
always``, on a free loopback port; never the shared Redis), two replicas of the ledger worker
(:mod:`bench.chaos.ledger_worker`, de-duplicating through that Redis and self-registering, as
compose runs workers) and one or two supervisors (``python -m supervisor.server``), all on
loopback; for the link cuts each on a host of its own, a Linux network namespace
(:mod:`bench.chaos.netns`, which needs root: as any other user those two scenarios end in
an error, exit status 2, and ``--only`` leaves them out). The scenarios
(:mod:`bench.chaos.scenarios` and :mod:`bench.chaos.cuts`, sizes in
:mod:`bench.chaos.config`):

1. **worker-kill** — ``kill -9`` of a worker replica while it runs both an idempotent
   (``ledger_idem``) and a non-idempotent (``ledger_once``) job, then a restart on its port;
   one supervisor. Full: 20 kills.
2. **supervisor-kill** — ``kill -9`` of one of two supervisors while it holds jobs of a
   200-job batch streamed to both, then a restart. Full: 10 kills.
3. **supervisor-pause** — ``SIGSTOP`` of one of two supervisors holding jobs, for 2.5 leases,
   then ``SIGCONT``; the other reclaims meanwhile. Full: 6 pauses.
4. **redis-kill** — ``kill -9`` of Redis during a stream of submissions, down 3 s, restarted
   on the same port and directory. Full: 3 kills.
5. **worker-cut** — the link of a worker host running both an idempotent and a
   non-idempotent job cut (no RST: the call's ``timeout_s`` notices) until the round's jobs
   end, then mended; one supervisor. Full: 4 cuts.
6. **supervisor-cut** — the link of one of two supervisor hosts cut while it holds jobs,
   until the other has reclaimed and ended them, then mended. Full: 4 cuts.

What is counted, per scenario (precisely in :mod:`bench.chaos.checks`):

- **lost**: accepted (a 2xx gave its id) but not terminal when the deadline passes, or gone;
- **double executions**: jobs whose non-idempotent tool *started* more than once, plus jobs
  whose tool (either kind) *completed* more than once, from the ledger the workers fsync.
  An idempotent tool starting again after a crash is at-least-once delivery working, not a
  double execution; a re-delivery answered from the worker's idempotency store never starts
  the tool (it shows as ``re-delivered`` only). A completion on a worker whose link was cut
  at the time is not counted either: its answer reached nobody (``completed while cut off``);
- **gaps**: terminal jobs whose SSE replay is not exactly seq 1..n ending in ``done``, or
  whose durable log skips or repeats a seq;
- **events after done**: durable-log entries past the first ``done`` of their run;
- **5xx**: answers ≥ 500 the load generator saw, except ``503 STORE_UNAVAILABLE`` while Redis
  is down on purpose;
- **recovery time** (reported, not gated): seconds from each fault until a job submitted
  after it succeeds.

Exit status: 0 when every count is 0, 1 when one is not, 2 when a scenario could not run.

Modules: :mod:`~bench.chaos.suite` runs scenarios (``run_suite(QUICK)``), with sizes from
:mod:`~bench.chaos.config`, each a :class:`~bench.chaos.rounds.Scenario`;
:mod:`~bench.chaos.report` prints them. Nothing is imported here,
so ``python -m bench.chaos.ledger_worker`` starts without loading the harness.
"""

__all__: list[str] = []
