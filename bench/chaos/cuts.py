"""The link cuts: a host's cable pulled while it works, each process on a host of its own.

A cut differs from a kill: the process on the far side goes on with what it was doing and
nobody is told (no RST, no FIN). Only timeouts notice it: a call's ``timeout_s``, a worker
probe's, a lease. The fleet runs on :mod:`bench.chaos.netns` hosts (root only);
:meth:`Network.cut <bench.chaos.netns.Network.cut>` takes the host's switch port down.

A worker cut off mid-call still finishes the call, though its answer never arrives: the run
is written in the ledger, and the job's retry elsewhere (idempotent tools only) completes it
once more. :func:`bench.chaos.checks.judge` does not count a completion made while its worker
was cut off (:attr:`Run.cut_off <bench.chaos.rounds.Run.cut_off>`) as a double execution: it
reached nobody. It does count a second *start* of a non-idempotent tool, as everywhere.
"""

from __future__ import annotations

import functools
import time

from bench.chaos.ledger_worker import LEDGER_TOOLS
from bench.chaos.netns import Network
from bench.chaos.procs import Fleet, Service
from bench.chaos.rounds import LedgerTail, Run, idle, load_victim, running_both
from bench.chaos.waiting import TimedOut, wait_until

__all__ = ["supervisor_cut", "worker_cut"]


def _network(fleet: Fleet, service: Service) -> Network:
    if fleet.network is None or service.host is None:
        raise RuntimeError("a link cut needs the fleet on hosts of their own (Scenario.hosts)")
    return fleet.network


async def worker_cut(run: Run) -> None:
    """Per round: 2 ``ledger_idem`` + 2 ``ledger_once`` jobs of 2 s; once one worker runs
    both kinds, cut its host's link; probe. The cut lasts until the round's jobs have ended:
    the supervisor's call hears nothing more until the job's ``timeout_s``, then the
    idempotent job runs again on the other worker and the non-idempotent one fails
    ``TIMEOUT`` (it may have run). Then the link is mended, and the round ends once every
    supervisor sees the worker healthy again and a job pinned to it succeeds."""
    tail = LedgerTail(run.fleet.ledger)
    for r in range(run.cfg.worker_cuts):
        specs = [(LEDGER_TOOLS[i % 2], {"ms": 2000, "steps": 10}) for i in range(4)]
        jobs = await run.submit_all(specs, "batch", r)
        victim = await running_both(run, tail, {j.id for j in jobs}, r)
        network = _network(run.fleet, victim)
        assert victim.host is not None
        network.cut(victim.host)
        cut_at, since = time.time(), time.monotonic()
        try:
            await run.probe(since, r)
            await run.all_terminal(jobs, timeout=run.cfg.settle_s)
        finally:
            network.mend(victim.host)
            run.cut_off.setdefault(victim.port, []).append((cut_at, time.time()))
        for sup in run.fleet.supervisors:
            await run.fleet.wait_sees_workers(sup)
        await run.restored(victim, since, r)


async def supervisor_cut(run: Run) -> None:
    """Per round: 8 mixed jobs, half shorter than a lease and half four leases long; once
    the victim (A, B, A, …) holds ≥ 2, cut its host's link and take it out of the load
    generator's rotation; probe through the other. Cut off, the victim cannot renew its
    leases, so the other supervisor reclaims its jobs after a lease: an idempotent one's call
    is answered from the worker's idempotency store (or waits for the victim's run, still
    going there), a non-idempotent one that was running fails ``DROPPED``. Once the round's
    jobs have ended the link is mended; the round ends when the victim is ready, sees every
    worker and holds nothing (every fence moved on: it lets go without writing)."""
    cfg, fleet = run.cfg, run.fleet
    lengths = [int(cfg.lease_s * 500), int(cfg.lease_s * 4000)]
    for r in range(cfg.supervisor_cuts):
        victim = fleet.supervisors[r % 2]
        network = _network(fleet, victim)
        assert victim.host is not None
        jobs = await load_victim(run, victim, lengths, r, "cut off")
        network.cut(victim.host)
        since = time.monotonic()
        try:
            await run.probe(since, r)
            await run.all_terminal(jobs, timeout=cfg.settle_s)
        finally:
            network.mend(victim.host)
            fleet.rotation.add(victim.url)
        await wait_until(
            functools.partial(fleet.ready, victim), timeout=60, what=f"{victim.name} ready"
        )
        await fleet.wait_sees_workers(victim)
        try:
            await wait_until(
                functools.partial(idle, fleet, victim),
                timeout=cfg.settle_s,
                what=f"{victim.name} to let go of the jobs it held",
            )
        except TimedOut:
            run.notes.append(f"round {r}: {victim.name} still held jobs after the round")
