"""Many supervisors and workers on many hosts: one machine, a network namespace per process.

Redis on one host, supervisors A and B on two more, echo workers on two more, all behind one
switch (:mod:`bench.chaos.netns`); the test process reaches every host from the root
namespace. Nothing binds loopback, so both bind rules apply: the supervisors take API tokens,
and supervisors and workers share a worker token. The supervisors are given no worker URL:
each worker registers its own host's URL in Redis, signed with the registration secret, and
the supervisors call only workers of this network (``worker_allow``).

1. jobs flow across hosts: a batch submitted through both supervisors runs on both workers,
   and both supervisors run some of it;
2. a worker host's link cut mid-job: the job fails over to the other worker host;
3. a supervisor host's link cut while it holds jobs: the other supervisor reclaims and ends
   them, and the cut one, once back, writes nothing more for them.

A cut link sends no RST and no FIN: only timeouts notice it (each scenario says which). One
fleet serves the three scenarios; each mends what it cut and starts by waiting until the
fleet is whole. Needs root and iproute2: without them these tests fail, saying so.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from bench.chaos.netns import Host, Network, NetworkError
from shared.keys import DISPATCH_GROUP, Keys
from tests.helpers import wait_until_sync
from tests.processes import Proc, process_env

pytestmark = pytest.mark.e2e

API_TOKEN = "hosts-api-token"
WORKER_TOKEN = "hosts-worker-token"
REGISTRATION_SECRET = "hosts-registration-secret"
KEY_PREFIX = "hosts"
SUPERVISOR_PORT, WORKER_PORT, REDIS_PORT = 8700, 8701, 6379  # each host has its own ports
LEASE_S = 3.0
FAST = {
    "FLEET_PROBE_INTERVAL_S": "0.5",
    "FLEET_BACKOFF_INITIAL_S": "0.05",
    "FLEET_BACKOFF_MAX_S": "0.2",
    "FLEET_LEASE_S": str(LEASE_S),
}
BATCH = 40
CALL_TIMEOUT_S = 5.0
"""The per-attempt deadline of the job whose worker is cut off: what ends that attempt."""
START_S = 40.0


class Box:
    """A fleet process on a host of its own."""

    def __init__(self, host: Host, proc: Proc, port: int) -> None:
        self.host = host
        self.proc = proc
        self.url = f"http://{host.ip}:{port}"


class Fleet:
    """Redis, two supervisors and two echo workers, each on its own host of ``net``."""

    def __init__(self, net: Network, stack: contextlib.ExitStack) -> None:
        self.net = net
        self.logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fleet-hosts-")))
        """Each process's output, shown for a job a scenario finds not as it should be."""
        self.keys = Keys(KEY_PREFIX)
        redis_host = net.add_host("redis")
        self.redis_url = f"redis://{redis_host.ip}:{REDIS_PORT}/0"
        self.redis = redis.Redis.from_url(
            self.redis_url, decode_responses=True, socket_timeout=5, socket_connect_timeout=2
        )
        stack.callback(self.redis.close)
        stack.enter_context(_redis_server(redis_host))
        wait_until_sync(self._redis_answers, timeout=START_S, message="Redis answering")
        self.workers = [
            self._worker(net.add_host(name), stack) for name in ("worker-1", "worker-2")
        ]
        self.supervisors = [self._supervisor(net.add_host(n), stack) for n in ("sup-a", "sup-b")]
        self.apis = [
            stack.enter_context(
                httpx.Client(
                    base_url=s.url,
                    headers={"Authorization": f"Bearer {API_TOKEN}"},
                    timeout=httpx.Timeout(70.0, connect=2.0),
                )
            )
            for s in self.supervisors
        ]
        for box in [*self.workers, *self.supervisors]:
            box.proc.wait_healthy(timeout=START_S)
        self.whole()

    # -- processes ---------------------------------------------------------------------------

    def _worker(self, host: Host, stack: contextlib.ExitStack) -> Box:
        argv = [sys.executable, "-m", "workers.echo", "--host", host.ip, "--port", str(WORKER_PORT)]
        url = f"http://{host.ip}:{WORKER_PORT}"
        env = process_env(
            FLEET_REDIS_URL=self.redis_url,
            FLEET_KEY_PREFIX=KEY_PREFIX,
            FLEET_ADVERTISE_URL=f"{url}/mcp",  # its own host's address, registered in Redis
            FLEET_WORKER_TOKEN=WORKER_TOKEN,
            FLEET_REGISTRATION_SECRET=REGISTRATION_SECRET,
            FLEET_HEARTBEAT_S="1",
        )
        proc = Proc(host.run(argv), env, f"{url}/mcp", f"{url}/health", self.logs / host.name)
        stack.callback(proc.stop)
        return Box(host, proc, WORKER_PORT)

    def _supervisor(self, host: Host, stack: contextlib.ExitStack) -> Box:
        url = f"http://{host.ip}:{SUPERVISOR_PORT}"
        env = process_env(
            **FAST,
            FLEET_HOST=host.ip,
            FLEET_PORT=str(SUPERVISOR_PORT),
            FLEET_REDIS_URL=self.redis_url,
            FLEET_KEY_PREFIX=KEY_PREFIX,
            FLEET_API_TOKENS=f"tester={API_TOKEN}",
            FLEET_WORKER_TOKEN=WORKER_TOKEN,
            FLEET_REGISTRATION_SECRET=REGISTRATION_SECRET,
            FLEET_WORKER_ALLOW=str(self.net.subnet),
        )
        argv = host.run([sys.executable, "-m", "supervisor.server"])
        proc = Proc(argv, env, url, url + "/healthz", self.logs / host.name)
        stack.callback(proc.stop)
        return Box(host, proc, SUPERVISOR_PORT)

    def _redis_answers(self) -> bool:
        try:
            return bool(self.redis.ping())
        except redis.RedisError:
            return False

    # -- views -------------------------------------------------------------------------------

    def worker_name(self, box: Box) -> str:
        """The instance name supervisors give a worker (a job's ``worker``)."""
        return f"echo@{box.host.ip}:{WORKER_PORT}"

    def whole(self) -> None:
        """Until both supervisors see both workers healthy (after a mend too)."""
        wanted = {f"{w.url}/mcp" for w in self.workers}

        def sees_all(api: httpx.Client) -> bool:
            try:
                listed = api.get("/v1/workers", timeout=3).json()["workers"]
            except (httpx.HTTPError, ValueError, KeyError):
                return False
            return wanted <= {w["url"] for w in listed if w["healthy"]}

        for api in self.apis:
            sees = functools.partial(sees_all, api)
            wait_until_sync(sees, timeout=START_S, message="every worker healthy")

    def holding(self, box: Box) -> set[str]:
        """The jobs ``box`` holds: its deliveries pending in the dispatch group. A consumer
        is named ``{hostname}-{pid}-{random}``; namespaces share the hostname, not the pid
        (``ip netns exec`` execs the supervisor, so its pid is the one started here)."""
        pending = self.redis.xpending_range(self.keys.queue, DISPATCH_GROUP, "-", "+", 1000)
        jobs: set[str] = set()
        for entry in pending:
            if entry["consumer"].rsplit("-", 2)[-2] != str(box.proc.p.pid):
                continue
            entry_id = entry["message_id"]
            for _, fields in self.redis.xrange(self.keys.queue, entry_id, entry_id):
                jobs.add(fields["job"])
        return jobs

    def story(self, job_id: str) -> str:
        """What is known of one job: its events, its delivery, and what every process logged
        about it (a failed scenario's message)."""
        pending = self.redis.xpending_range(self.keys.queue, DISPATCH_GROUP, "-", "+", 1000)
        parts = [f"job {job_id}", f"events: {self.events(job_id)}", f"pending: {pending}"]
        for box in [*self.supervisors, *self.workers]:
            parts.append(f"-- {box.host.name}:\n{box.proc.said(job_id)}")
        return "\n".join(parts)

    def events(self, job_id: str) -> list[tuple[str, dict[str, Any]]]:
        """A job's durable event log (type, data), as Redis holds it."""
        entries = self.redis.xrange(self.keys.of(job_id).events(job_id))
        return [(fields["t"], json.loads(fields.get("d", "{}"))) for _, fields in entries]


@contextlib.contextmanager
def _redis_server(host: Host) -> Iterator[None]:
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("the multi-host tests run their own redis-server: it is not installed")
    with tempfile.TemporaryDirectory(prefix="fleet-hosts-redis-") as workdir:
        # --protected-mode no: clients from other hosts, no password, on a private network
        argv = [server, "--port", str(REDIS_PORT), "--bind", host.ip, "--save", "",
                "--appendonly", "no", "--protected-mode", "no", "--dir", workdir]  # fmt: skip
        proc = subprocess.Popen(
            host.run(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with contextlib.ExitStack() as stack:
        try:
            net = stack.enter_context(Network())
        except NetworkError as exc:
            pytest.fail(f"the multi-host tests need network namespaces: {exc}")

        fleet = Fleet(net, stack)

        @stack.callback  # the first cleanup: a process stops fast only if it reaches Redis
        def mend_all() -> None:
            for name in list(net.cut_off):
                net.mend(net.hosts[name])

        yield fleet  # then the processes stop, last started first, and the network goes


def job(api: httpx.Client, job_id: str, wait: float = 0) -> dict[str, Any]:
    response = api.get(f"/v1/jobs/{job_id}", params={"wait": wait} if wait else None)
    assert response.status_code == 200, response.text
    return dict(response.json())


def submit(api: httpx.Client, body: dict[str, Any]) -> str:
    response = api.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def succeeded_here(box: Box) -> int:
    """Jobs this supervisor ended ``succeeded`` (its own counter: one process's work)."""
    text = httpx.get(f"{box.url}/metrics", timeout=5).text
    return sum(
        int(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "fleet_jobs_total" and sample.labels.get("status") == "succeeded"
    )


def test_jobs_flow_across_hosts(fleet: Fleet) -> None:
    fleet.whole()
    before = [succeeded_here(s) for s in fleet.supervisors]
    ids = [
        submit(fleet.apis[i % 2], {"capability": "echo", "input": {"value": i}})
        for i in range(BATCH)
    ]
    # each read through the supervisor that did not take the submission: one shared store
    done = [job(fleet.apis[(i + 1) % 2], job_id, wait=30) for i, job_id in enumerate(ids)]
    assert [d["status"] for d in done] == ["succeeded"] * BATCH, done
    assert [d["result"] for d in done] == [{"value": i} for i in range(BATCH)]
    served = collections.Counter(d["worker"] for d in done)
    assert set(served) == {fleet.worker_name(w) for w in fleet.workers}, served
    ran = [succeeded_here(s) - n for s, n in zip(fleet.supervisors, before, strict=True)]
    assert sum(ran) == BATCH and all(ran), ran


def test_worker_host_cut_mid_job_fails_over(fleet: Fleet) -> None:
    fleet.whole()
    api = fleet.apis[0]
    job_id = submit(
        api,
        {
            "capability": "sleep",
            "input": {"seconds": 3, "steps": 30},
            "timeout_s": CALL_TIMEOUT_S,
        },
    )
    running = wait_until_sync(
        lambda: (s := job(api, job_id))["status"] == "running" and s["progress"] and s,
        timeout=20,
        message="the job's progress",
    )
    victim, other = sorted(fleet.workers, key=lambda w: fleet.worker_name(w) != running["worker"])
    assert fleet.worker_name(victim) == running["worker"]
    fleet.net.cut(victim.host)
    try:
        # The supervisor hears nothing more from the call. Its own deadline (timeout_s) ends
        # the attempt as TIMEOUT, possibly delivered: sleep is idempotent, so it is retried,
        # and the retry avoids the worker already tried. Meanwhile failed probes and the
        # registration the cut worker can no longer renew take it out of routing.
        done = job(api, job_id, wait=40)
    finally:
        fleet.net.mend(victim.host)
    assert done["status"] == "succeeded", done
    assert done["attempts"] >= 2, done
    assert done["worker"] == fleet.worker_name(other), done


def test_supervisor_host_cut_its_jobs_are_reclaimed(fleet: Fleet) -> None:
    fleet.whole()
    a = fleet.supervisors[0]
    api_a, api_b = fleet.apis
    long_sleep = {"capability": "sleep", "input": {"seconds": 6, "steps": 12}}
    ids: list[str] = []
    held_by_a: set[str] = set()

    def all_running() -> bool:
        return all(job(api_a, j)["status"] == "running" for j in ids)

    for _ in range(3):  # both supervisors read the one dispatch stream: A takes about half
        ids.extend(submit(api_a, long_sleep) for _ in range(4))
        wait_until_sync(all_running, timeout=20, message="every job running")
        held_by_a = fleet.holding(a) & set(ids)
        if len(held_by_a) >= 2:
            break
    assert len(held_by_a) >= 2, f"A held {len(held_by_a)} of {len(ids)} jobs"
    fleet.net.cut(a.host)
    try:
        # A renews its leases through Redis every lease_s / 3; cut off, it cannot, and B's
        # reclaim loop takes over every delivery idle for a whole lease. The workers still
        # run A's calls: B's call, with the same idempotency key, waits for that run and
        # replays its result.
        finals = {j: job(api_b, j, wait=40) for j in ids}
    finally:
        fleet.net.mend(a.host)
    unfinished = [j for j, f in finals.items() if f["status"] != "succeeded"]
    assert not unfinished, "\n\n".join([f"held by A: {held_by_a}", *map(fleet.story, unfinished)])
    assert all(finals[j]["attempts"] >= 2 for j in held_by_a), finals

    def a_let_go() -> bool:
        """Back on the network, A finds every fence moved on and drops those jobs."""
        try:
            return api_a.get("/v1/queues", timeout=15).json()["held_by_this_supervisor"] == 0
        except (httpx.HTTPError, ValueError, KeyError):
            return False

    wait_until_sync(a_let_go, timeout=40, message="A holding nothing")
    for j in ids:  # A's late answers, if any came, were fenced off: one run ended each job
        types = [t for t, _ in fleet.events(j)]
        assert types.count("done") == 1, (j, types)
    for j in held_by_a:
        runs = [d for t, d in fleet.events(j) if t == "status" and d.get("status") == "running"]
        assert len(runs) >= 2, (j, runs)
