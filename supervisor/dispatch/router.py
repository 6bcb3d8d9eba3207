"""Choosing a worker for a job.

A candidate is healthy, serves the job's tool *of the job's service with the input schema the
job was validated against* (``service``/``digest``; None matches any), has its breaker
available and, when the job pins a worker, is that worker (matched by name, URL or service).
Among candidates the router samples two at random and keeps the less loaded ("power of two
choices"), load being this supervisor's in-flight calls of that capability to it relative to
the capability's declared ``max_concurrency`` (workers limit each tool on its own).
Workers already tried by this job are avoided while another candidate exists. A worker whose
slots are all taken by us is skipped: the job waits for a slot instead of earning a ``BUSY``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection

from supervisor.types import WorkerDirectory, WorkerView

__all__ = ["Router"]


class Router:
    def __init__(self, registry: WorkerDirectory, in_flight: Callable[[str, str], int]) -> None:
        self.registry = registry
        self.in_flight = in_flight
        self._random = random.Random()

    def candidates(
        self,
        tool: str,
        pinned: str | None = None,
        *,
        service: str | None = None,
        digest: str | None = None,
    ) -> list[WorkerView]:
        out = []
        for worker in self.registry.workers.values():
            if pinned and not worker.answers_to(pinned):
                continue
            if service is not None and not worker.serves(service, tool, digest):
                continue
            if worker.healthy and tool in worker.capabilities and worker.breaker.available():
                out.append(worker)
        return out

    def load(self, worker: WorkerView, capability: str) -> float:
        limit = max(1, worker.capabilities[capability].max_concurrency)
        return self.in_flight(worker.url, capability) / limit

    def choose(
        self,
        capability: str,
        *,
        pinned: str | None = None,
        avoid: Collection[str] = (),
        service: str | None = None,
        digest: str | None = None,
    ) -> WorkerView | None:
        """The worker for the next attempt, or None when none can take it right now.

        ``capability`` is the MCP tool name; ``service``/``digest`` narrow it to one service
        and one input schema.
        """
        pool = [
            w
            for w in self.candidates(capability, pinned, service=service, digest=digest)
            if self.load(w, capability) < 1
        ]
        fresh = [w for w in pool if w.url not in avoid]
        pool = fresh or pool
        while pool:
            if len(pool) == 1:
                best = pool[0]
            else:  # two distinct at random, in random order (fair ties)
                i = self._random.randrange(len(pool))
                j = (i + 1 + self._random.randrange(len(pool) - 1)) % len(pool)
                a, b = pool[i], pool[j]
                best = b if self.load(b, capability) < self.load(a, capability) else a
            if best.breaker.allow():
                return best
            pool.remove(best)
        return None
