"""Delegation with real processes on Redis: a supervisor, the echo and text workers and a
delegating worker, each its own process, all exporting their spans over OTLP to a collector
in this test. A tool fans out child jobs; the children are listed under their parent, share
its correlation id and its trace (proved on the spans the processes export), are cancelled
on their workers with it, and the supervisor's depth and fan-out limits hold."""

from __future__ import annotations

import json
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from shared.serving import free_port
from tests.conftest import REDIS_URL, REQUIRE_REDIS, _redis_available
from tests.helpers import iter_sse, wait_until_sync
from tests.processes import ROOT, Proc, process_env, supervisor, worker

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

ARTICLE = (Path(ROOT) / "examples" / "article.txt").read_text()
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
MAX_DEPTH, MAX_CHILDREN = 2, 8


# -- an OTLP/HTTP collector -------------------------------------------------------------------


class Collector:
    """Receives the processes' spans (OTLP over HTTP, protobuf) on a thread of its own."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                collector._add(request)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _add(self, request: ExportTraceServiceRequest) -> None:
        found = []
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found.append(
                        {
                            "service": resource.get("service.name"),
                            "name": span.name,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_span_id": span.parent_span_id.hex() or None,
                            "attributes": _attributes(span.attributes),
                        }
                    )
        with self._lock:
            self.spans.extend(found)

    def find(self, name: str, **attributes: Any) -> list[dict[str, Any]]:
        with self._lock:
            return [
                s
                for s in self.spans
                if s["name"] == name
                and all(s["attributes"].get(k) == v for k, v in attributes.items())
            ]

    def __enter__(self) -> Collector:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


def _attributes(values: Any) -> dict[str, Any]:
    out = {}
    for kv in values:
        kind = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, kind) if kind else None
    return out


# -- the fleet ----------------------------------------------------------------------------------


@dataclass
class Stack:
    api: httpx.Client
    echo: Proc
    text: Proc
    delegating: Proc
    spans: Collector

    def submit(self, capability: str, input: dict[str, Any], **headers: str) -> dict[str, Any]:
        r = self.api.post(
            "/v1/jobs", json={"capability": capability, "input": input}, headers=headers
        )
        assert r.status_code == 202, r.text
        return dict(r.json())

    def get(self, job_id: str, wait: float = 0) -> dict[str, Any]:
        r = self.api.get(f"/v1/jobs/{job_id}", params={"wait": wait} if wait else None)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def events(self, job_id: str) -> list[dict[str, Any]]:
        with self.api.stream("GET", f"/v1/jobs/{job_id}/events") as r:
            return [json.loads(event.data) for event in iter_sse(r)]


def in_flight(proc: Proc) -> int:
    return int(httpx.get(proc.health.replace("/health", "/ready"), timeout=5).json()["in_flight"])


@contextmanager
def delegating_worker(**env: str) -> Iterator[Proc]:
    port = free_port()
    args = [sys.executable, "-m", "tests.e2e.delegating_worker", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    proc = Proc(args, process_env(**env), base + "/mcp", base + "/health")
    try:
        yield proc.wait_healthy()
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    if not _redis_available():
        if REQUIRE_REDIS:
            pytest.fail(f"Redis required at {REDIS_URL} but unreachable")
        pytest.skip(f"no Redis at {REDIS_URL}")
    prefix = f"fleet-test-{uuid.uuid4().hex[:12]}"
    with ExitStack() as stack:
        spans = stack.enter_context(Collector())
        otel = {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": spans.url,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        echo = stack.enter_context(worker("echo", **otel))
        text = stack.enter_context(worker("text", **otel))
        deleg = stack.enter_context(delegating_worker(**otel))
        sup = stack.enter_context(
            supervisor(
                FLEET_WORKERS=",".join(p.url for p in (echo, text, deleg)),
                FLEET_REDIS_URL=REDIS_URL,
                FLEET_KEY_PREFIX=prefix,
                FLEET_PROBE_INTERVAL_S="0.5",
                FLEET_MAX_DEPTH=str(MAX_DEPTH),
                FLEET_MAX_CHILDREN=str(MAX_CHILDREN),
                **otel,
            )
        )
        api = stack.enter_context(httpx.Client(base_url=sup.url, timeout=60))

        def all_up() -> bool:
            found = api.get("/v1/workers").json()["workers"]
            return len([w for w in found if w["healthy"]]) == 3

        wait_until_sync(all_up, timeout=30, message="3 workers healthy")
        yield Stack(api, echo, text, deleg, spans)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


# -- the tests ----------------------------------------------------------------------------------


def test_a_tool_fans_out_children_in_its_trace(stack: Stack) -> None:
    parent = stack.submit(
        "keywords_by_chunk",
        {"text": ARTICLE, "max_chars": 400, "concurrency": 4},
        traceparent=f"00-{TRACE_ID}-b7ad6b7169203331-01",
        **{"X-Correlation-ID": "e2e-delegation"},
    )
    done = stack.get(parent["id"], wait=60)
    assert done["status"] == "succeeded", done
    result = done["result"]
    assert 2 <= result["chunks"] <= MAX_CHILDREN and result["keywords"]
    assert sorted(done["children"]) == sorted(result["child_jobs"])
    assert len(done["children"]) == result["chunks"]
    children = [stack.get(c) for c in done["children"]]
    for child in children:
        assert child["capability"] == "extract_keywords" and child["status"] == "succeeded"
        assert child["parent_id"] == parent["id"] and child["depth"] == 1
        assert child["correlation_id"] == "e2e-delegation"
        assert child["traceparent"].split("-")[1] == TRACE_ID
    # The parent's progress bar counted its children as they ended.
    progress = [e["data"] for e in stack.events(parent["id"]) if e["type"] == "progress"]
    assert progress and progress[-1]["progress"] == progress[-1]["total"] == result["chunks"]

    # One trace, on the spans the processes exported: the text worker's span of the parent's
    # call is the parent of each child's span on the supervisor, whose call reached a worker
    # in the same trace.
    def exported() -> Any:
        calls = stack.spans.find("tools/call keywords_by_chunk", **{"fleet.job_id": parent["id"]})
        kids = [
            stack.spans.find("tools/call extract_keywords", **{"fleet.job_id": c["id"]})
            for c in children
        ]
        jobs = [stack.spans.find("job extract_keywords", job_id=c["id"]) for c in children]
        return calls and all(kids) and all(jobs) and (calls, kids, jobs)

    calls, kids, jobs = wait_until_sync(exported, timeout=20, message="the spans exported")
    (call,) = calls
    assert call["service"] == "text" and call["trace_id"] == TRACE_ID
    for child, child_calls, job_spans in zip(children, kids, jobs, strict=True):
        assert child["traceparent"].split("-")[2] == call["span_id"]
        (job_span,) = job_spans
        assert job_span["service"] == "mcp-fleet-supervisor"
        assert job_span["trace_id"] == TRACE_ID
        assert job_span["parent_span_id"] == call["span_id"]
        assert {s["trace_id"] for s in child_calls} == {TRACE_ID}


def test_cancelling_the_parent_cancels_its_children_on_the_workers(stack: Stack) -> None:
    parent = stack.submit("fan_sleep", {"n": 3, "seconds": 60})

    def children_running() -> list[dict[str, Any]] | None:
        kids = [stack.get(c) for c in stack.get(parent["id"]).get("children") or []]
        running = len(kids) == 3 and all(k["status"] == "running" for k in kids)
        return kids if running and in_flight(stack.echo) == 3 else None

    kids = wait_until_sync(children_running, timeout=30, message="3 sleeps running")
    r = stack.api.post(f"/v1/jobs/{parent['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    # The sleeps stopped on the echo worker, long before their 60 s.
    wait_until_sync(lambda: in_flight(stack.echo) == 0, timeout=15, message="sleeps stopped")
    wait_until_sync(lambda: in_flight(stack.delegating) == 0, timeout=15, message="parent gone")
    for kid in kids:
        assert stack.get(kid["id"], wait=10)["status"] == "cancelled"


def test_a_child_of_a_child_and_the_depth_limit(stack: Stack) -> None:
    ok = stack.get(stack.submit("nested", {"levels": MAX_DEPTH})["id"], wait=60)
    assert ok["status"] == "succeeded", ok
    (child_id,) = ok["children"]
    child = stack.get(child_id)
    (grandchild_id,) = child["children"]
    grandchild = stack.get(grandchild_id)
    assert (child["depth"], grandchild["depth"]) == (1, 2)
    assert (
        grandchild["parent_id"] == child_id and grandchild["correlation_id"] == ok["correlation_id"]
    )

    deep = stack.get(stack.submit("nested", {"levels": MAX_DEPTH + 1})["id"], wait=60)
    assert deep["status"] == "failed" and deep["error"]["code"] == "CHILD_FAILED", deep
    child = stack.get(deep["children"][0])
    grandchild = stack.get(child["children"][0])
    assert grandchild["depth"] == MAX_DEPTH and not grandchild.get("children")
    assert grandchild["error"]["code"] == "DELEGATION_LIMIT", grandchild["error"]
    assert "depth" in grandchild["error"]["message"]


def test_the_children_limit(stack: Stack) -> None:
    parent = stack.submit("fan_sleep", {"n": MAX_CHILDREN + 1, "seconds": 0})
    done = stack.get(parent["id"], wait=60)
    assert done["status"] == "failed", done
    assert done["error"]["code"] == "DELEGATION_LIMIT", done["error"]
    assert len(done["children"]) == MAX_CHILDREN
