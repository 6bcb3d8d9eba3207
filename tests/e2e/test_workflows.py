"""Workflows with real processes over HTTP and Redis: the text and echo workers, a ledger
worker that writes every execution to a file, and supervisors — one killed with SIGKILL
mid-workflow while another takes the workflow over."""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.serving import free_port
from tests.e2e.ledger_worker import read
from tests.helpers import iter_sse, wait_until_sync
from tests.processes import Proc, start_supervisor, supervisor, worker, worker_env

pytestmark = pytest.mark.e2e

FAST = {
    "FLEET_PROBE_INTERVAL_S": "0.5",
    "FLEET_BACKOFF_INITIAL_S": "0.05",
    "FLEET_BACKOFF_MAX_S": "0.2",
}
TEXT = (
    "Durable workflows split work into steps. Each step runs as a child job on a worker. "
    "A map step runs once per item of a list, with a limit on how many run at once. "
    "The results come back in item order, and a later step reads them by reference. "
    "When a supervisor dies, another one resumes the workflow from its event log. "
    "Finished steps are found again by their idempotency keys, so nothing runs twice. "
    "Failures follow a policy: stop everything at once, or carry on with what is left."
)


def ledger_worker(path: Path) -> Iterator[Proc]:
    port = free_port()
    proc = Proc(
        [sys.executable, "-m", "tests.e2e.ledger_worker", "--host", "127.0.0.1",
         "--port", str(port)],
        # no stored results: a second run of a key would run the tool again, and show
        worker_env(LEDGER_PATH=str(path), FLEET_IDEMPOTENCY_MAX_RESULT_BYTES="0"),
        f"http://127.0.0.1:{port}/mcp",
        f"http://127.0.0.1:{port}/health",
    )  # fmt: skip
    try:
        yield proc.wait_healthy()
    finally:
        proc.stop()


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[tuple[Proc, Path]]:
    path = tmp_path / "ledger.txt"
    for proc in ledger_worker(path):
        yield proc, path


def healthy(api: httpx.Client, n: int) -> bool:
    return len([w for w in api.get("/v1/workers").json()["workers"] if w["healthy"]]) >= n


def post(api: httpx.Client, spec: Any, wait: float = 0) -> httpx.Response:
    return api.post("/v1/workflows", params={"wait": wait} if wait else None, json=spec)


def ended(api: httpx.Client, job_id: str, wait: float = 60) -> dict[str, Any]:
    return dict(api.get(f"/v1/jobs/{job_id}", params={"wait": wait}).json())


def peak(lines: list[tuple[str, str]]) -> int:
    running = top = 0
    for kind, _ in lines:
        running += 1 if kind == "start" else -1
        top = max(top, running)
    return top


def test_text_chain_map_and_fan_in(redis_url: str, key_prefix: str) -> None:
    with worker("text") as text, worker("echo") as echo:
        env = {**FAST, "FLEET_REDIS_URL": redis_url, "FLEET_KEY_PREFIX": key_prefix,
               "FLEET_WORKERS": f"{text.url},{echo.url}"}  # fmt: skip
        with supervisor(**env) as sup, httpx.Client(base_url=sup.url, timeout=90) as api:
            wait_until_sync(lambda: healthy(api, 2), timeout=20, message="workers")
            spec = {
                "name": "keywords",
                "input": {"text": TEXT},
                "steps": {
                    "split": {"capability": "chunk_text",
                              "input": {"text": "$.input.text", "max_chars": 120}},
                    "each": {"capability": "extract_keywords",
                             "map": "$.steps.split.result.chunks", "concurrency": 8,
                             "input": {"text": "$.item.text", "top_n": 2}},
                    "summary": {"capability": "summarize",
                                "input": {"text": "$.input.text", "max_sentences": 1}},
                    "merge": {"capability": "echo", "input": {"value": {
                        "terms": "$.steps.each.results[*].keywords[*].term",
                        "summary": "$.steps.summary.result.summary"}}},
                },
                "output": "$.steps.merge.result.value",
            }  # fmt: skip
            r = post(api, spec, wait=60)
            assert r.status_code == 200, r.text
            done = r.json()
            assert done["status"] == "succeeded", done
            view = api.get(f"/v1/workflows/{done['id'][:12]}").json()
            chunks = view["steps"]["each"]["total"]
            assert chunks >= 4 and view["steps"]["each"]["done"] == chunks
            terms = done["result"]["terms"]
            assert len(terms) == chunks and all(1 <= len(t) <= 2 for t in terms)
            assert done["result"]["summary"] in TEXT
            assert len(view["job"]["children"]) == chunks + 3
            assert {s["status"] for s in view["steps"].values()} == {"succeeded"}
            assert done["progress"]["progress"] == done["progress"]["total"] == chunks + 3


def test_fan_out_of_100_keeps_to_8_at_once(
    redis_url: str, key_prefix: str, ledger: tuple[Proc, Path]
) -> None:
    proc, path = ledger
    env = {**FAST, "FLEET_REDIS_URL": redis_url, "FLEET_KEY_PREFIX": key_prefix,
           "FLEET_WORKERS": proc.url}  # fmt: skip
    with supervisor(**env) as sup, httpx.Client(base_url=sup.url, timeout=90) as api:
        wait_until_sync(lambda: healthy(api, 1), timeout=20, message="ledger worker")
        spec = {
            "input": {"keys": [f"item-{i}" for i in range(100)]},
            "steps": {
                "fan": {"capability": "ledger", "map": "$.input.keys", "concurrency": 8,
                        "input": {"key": "$.item", "seconds": 0.05}},
                "count": {"capability": "ledger", "input": {"key": "counted"}, "after": ["fan"]},
            },
            "output": "$.steps.fan.results[*].key",
        }  # fmt: skip
        r = post(api, spec)
        assert r.status_code == 202, r.text
        done = ended(api, r.json()["id"])
        assert done["status"] == "succeeded", done
        assert done["result"] == [f"item-{i}" for i in range(100)]
        lines = read(str(path))
        fan = [line for line in lines if line[1] != "counted"]
        assert Counter(kind for kind, _ in fan) == {"start": 100, "end": 100}
        assert peak(fan) == 8  # never more than 8 at once, and 8 when there was room
        assert lines[-2:] == [("start", "counted"), ("end", "counted")]  # the fan-in: last
        view = api.get(f"/v1/workflows/{done['id']}").json()
        assert view["steps"]["fan"]["total"] == view["steps"]["fan"]["done"] == 100
        assert len(view["steps"]["fan"]["job_ids"]) == 100


def test_failing_step_under_both_policies_and_invalid_dags(redis_url: str, key_prefix: str) -> None:
    with worker("echo") as echo:
        env = {**FAST, "FLEET_REDIS_URL": redis_url, "FLEET_KEY_PREFIX": key_prefix,
               "FLEET_WORKERS": echo.url}  # fmt: skip
        with supervisor(**env) as sup, httpx.Client(base_url=sup.url, timeout=90) as api:
            wait_until_sync(lambda: healthy(api, 1), timeout=20, message="echo worker")
            steps: dict[str, Any] = {
                "slow": {"capability": "sleep", "input": {"seconds": 30, "steps": 30}},
                "bad": {"capability": "fail", "input": {"code": "BROKEN"}, "max_attempts": 1},
                "after_bad": {"capability": "noop", "after": ["bad"]},
                "quick": {"capability": "echo", "input": {"value": 1}},
            }
            fast = ended(api, post(api, {"steps": steps}).json()["id"], wait=20)
            assert fast["status"] == "failed", fast
            assert fast["error"]["code"] == "STEP_FAILED"
            assert fast["error"]["details"]["step"] == "bad"
            outcome = {n: s["status"] for n, s in fast["error"]["details"]["steps"].items()}
            assert outcome["slow"] == "cancelled" and outcome["after_bad"] == "skipped"
            slow_id = api.get(f"/v1/workflows/{fast['id']}").json()["steps"]["slow"]["job_ids"][0]
            assert ended(api, slow_id, wait=10)["status"] == "cancelled"
            assert fast["finished_at"] - fast["created_at"] < 20  # did not wait for the sleep

            steps["slow"]["input"] = {"seconds": 0.3, "steps": 3}
            carry_on = {"steps": steps, "on_failure": "continue"}
            cont = ended(api, post(api, carry_on).json()["id"], wait=30)
            assert cont["status"] == "failed"
            outcome = {n: s["status"] for n, s in cont["error"]["details"]["steps"].items()}
            assert outcome == {"slow": "succeeded", "bad": "failed", "after_bad": "skipped",
                               "quick": "succeeded"}  # fmt: skip

            for spec, step, field in [
                ({"steps": {"a": {"capability": "noop", "after": ["b"]},
                            "b": {"capability": "noop", "input": {"v": "$.steps.a.result"}}}},
                 "a", "after"),
                ({"steps": {"a": {"capability": "noop", "after": ["ghost"]}}}, "a", "after[0]"),
                ({"steps": {"a": {"capability": "echo", "input": {"value": "$.steps.a.reslt"}}}},
                 "a", "input.value"),
                ({"steps": {"a": {"capability": "echo", "input": {"value": "$.item"}}}},
                 "a", "input.value"),
                ({"steps": {"a": {"capability": "nothing-like-it"}}}, "a", "capability"),
            ]:  # fmt: skip
                r = post(api, spec)
                assert r.status_code == 422, r.text
                error = r.json()["error"]
                assert error["code"] == "INVALID_WORKFLOW"
                assert (error["details"]["step"], error["details"]["field"]) == (step, field)
                assert f"step {step!r}" in error["message"]


def test_cancelling_a_workflow_cancels_its_running_children(
    redis_url: str, key_prefix: str
) -> None:
    with worker("echo") as echo:
        env = {**FAST, "FLEET_REDIS_URL": redis_url, "FLEET_KEY_PREFIX": key_prefix,
               "FLEET_WORKERS": echo.url}  # fmt: skip
        with supervisor(**env) as sup, httpx.Client(base_url=sup.url, timeout=90) as api:
            wait_until_sync(lambda: healthy(api, 1), timeout=20, message="echo worker")
            spec = {
                "input": {"items": [1, 2, 3, 4, 5]},
                "steps": {"m": {"capability": "sleep", "map": "$.input.items", "concurrency": 3,
                                "input": {"seconds": 60, "steps": 60}}},
            }  # fmt: skip
            wf = post(api, spec).json()

            def running_children() -> list[str]:
                ids = api.get(f"/v1/workflows/{wf['id']}").json()["steps"]["m"]["job_ids"]
                states = [api.get(f"/v1/jobs/{i}").json()["status"] for i in ids]
                return ids if states.count("running") == 3 else []

            children = wait_until_sync(running_children, timeout=20, message="3 running")
            r = api.post(f"/v1/jobs/{wf['id']}/cancel")
            assert r.status_code in (200, 202), r.text
            assert ended(api, wf["id"], wait=20)["status"] == "cancelled"
            for child in children:
                job = ended(api, child, wait=20)
                assert job["status"] == "cancelled", job
            view = api.get(f"/v1/workflows/{wf['id']}").json()
            assert view["steps"]["m"]["status"] == "cancelled"
            assert len(view["job"]["children"]) == 3  # items 4 and 5 never started


def test_supervisor_kill9_mid_workflow_resumes_on_another(
    redis_url: str, key_prefix: str, ledger: tuple[Proc, Path]
) -> None:
    """Two supervisors on one Redis; the one running the workflow is killed with SIGKILL
    while a map step is half done. The other reclaims the workflow when its lease lapses and
    resumes it: it ends succeeded, and the ledger shows that no child that had finished ran
    again."""
    proc, path = ledger
    env = {**FAST, "FLEET_REDIS_URL": redis_url, "FLEET_KEY_PREFIX": key_prefix,
           "FLEET_WORKERS": proc.url, "FLEET_LEASE_S": "1.5"}  # fmt: skip
    spec: dict[str, Any] = {
        "input": {"keys": [f"k{i}" for i in range(24)]},
        "steps": {
            "first": {"capability": "ledger", "input": {"key": "first"}},
            "m": {"capability": "ledger", "map": "$.input.keys", "concurrency": 4,
                  "input": {"key": "$.item", "seconds": 0.4}, "after": ["first"]},
            "last": {"capability": "ledger", "input": {"key": "last"}, "after": ["m"]},
        },
        "output": "$.steps.m.results[*].key",
    }  # fmt: skip
    first = start_supervisor(**env).wait_healthy()
    try:
        with httpx.Client(base_url=first.url, timeout=30) as api:
            wait_until_sync(lambda: healthy(api, 1), timeout=20, message="ledger worker")
            wf = post(api, spec).json()

            def half_done() -> dict[str, Any] | None:
                view = api.get(f"/v1/workflows/{wf['id']}").json()
                return view if 8 <= view["steps"]["m"]["done"] <= 16 else None

            view = wait_until_sync(half_done, timeout=30, message="the map half done")
            finished = {
                job_id: api.get(f"/v1/jobs/{job_id}").json() for job_id in view["job"]["children"]
            }
            finished = {i: j for i, j in finished.items() if j["status"] == "succeeded"}
            first.kill()  # SIGKILL: no cleanup; the lease lapses
    finally:
        first.stop()
    assert len(finished) >= 9  # "first" and at least 8 items
    keys_done = {j["input"]["key"] for j in finished.values()}
    with supervisor(**env) as second, httpx.Client(base_url=second.url, timeout=90) as api2:
        done = ended(api2, wf["id"], wait=60)
        assert done["status"] == "succeeded", done
        assert done["result"] == [f"k{i}" for i in range(24)]
        assert done["attempts"] == 2  # one run on each supervisor
        view = api2.get(f"/v1/workflows/{wf['id']}").json()
        assert set(finished) <= set(view["job"]["children"])  # the same children, not new
        assert len(view["job"]["children"]) == 26
        lines = read(str(path))
        starts = Counter(key for kind, key in lines if kind == "start")
        for key in keys_done:
            assert starts[key] == 1, (key, starts[key])  # no finished child ran again
        assert set(starts) == {"first", "last", *spec["input"]["keys"]}
        # the log: one sequence across both supervisors, each transition written once
        with api2.stream("GET", f"/v1/jobs/{wf['id']}/events", params={"after": 0}) as r:
            events = [json.loads(event.data) for event in iter_sse(r)]
        seqs = [e["seq"] for e in events]
        assert seqs == list(range(1, len(seqs) + 1))
        transitions = Counter(
            (e["data"]["step"], e["data"]["status"])
            for e in events
            if e["type"] == "step" and e["data"]["status"] != "running"
        )
        assert transitions == {("first", "succeeded"): 1, ("m", "succeeded"): 1,
                               ("last", "succeeded"): 1}  # fmt: skip
        resumed = [e["data"].get("resumed") for e in events
                   if e["type"] == "status" and e["data"]["status"] == "running"]  # fmt: skip
        assert resumed == [False, True]
