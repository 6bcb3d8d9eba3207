"""Schemathesis over ``/openapi.json`` against the real app: no 5xx, and every answer matches
the document (status declared, body and headers as declared, content type as declared).

Bounded for CI: ``FLEET_FUZZ_EXAMPLES`` examples per operation (default 25); raise it for a
full run, e.g. ``FLEET_FUZZ_EXAMPLES=1000 ./run test tests/supervisor/test_schemathesis.py``.

The app runs in schemathesis' own ASGI client, lifespan and background loops included, with a
memory store, one real worker over HTTP, and jobs of every ending seeded first, so listings,
dead letters, workers and the catalog answer with real bodies.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import positive_data_acceptance
from schemathesis.python import asgi

from shared import SupervisorSettings
from supervisor.app import create_app
from tests.helpers import wait_until_sync
from tests.servers import serve_asgi
from tests.supervisor.toolservers import Seen, contract_server

EXAMPLES = int(os.environ.get("FLEET_FUZZ_EXAMPLES", "25"))
TOKEN = "fuzz-token"
"""The app asks for a token, as its document says (``security``): schemathesis sends it
(:class:`_Token`), and checks that a request without it, or with another, gets 401."""
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class _Deferred:
    """The ASGI app schemathesis calls. The real one is built by the ``fleet`` fixture, since
    its settings name the worker's URL, which is known only once the worker listens."""

    def __init__(self) -> None:
        self.app: Any = None
        self.jobs: dict[str, str] = {}
        """Seeded job ids by how they ended."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


DEFERRED = _Deferred()
DOCUMENT = create_app(SupervisorSettings()).openapi()
schema = schemathesis.openapi.from_dict(DOCUMENT)
schema.app = DEFERRED


@schema.auth(refresh_interval=None)
class _Token:
    def get(self, case: Any, context: Any) -> str:
        return TOKEN

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@pytest.fixture(scope="module")
def fleet() -> Iterator[_Deferred]:
    """One worker over real HTTP, the app behind ``DEFERRED`` with its lifespan, seeded jobs."""
    with start_blocking_portal() as portal:
        worker = contract_server("w1", Seen()).http_app(path="/mcp")
        with portal.wrap_async_context_manager(serve_asgi(worker)) as worker_base:
            DEFERRED.app = create_app(
                SupervisorSettings(
                    redis_url="memory://",
                    workers=worker_base + "/mcp",
                    probe_interval_s=0.5,
                    max_body_bytes=64 * 1024,
                    api_tokens=TOKEN,
                )
            )
            assert DEFERRED.app.openapi() == DOCUMENT
            try:
                with asgi.get_client(DEFERRED) as client:
                    _seed(client)
                yield DEFERRED
            finally:
                asgi.shutdown_lifespans()
                DEFERRED.app = None


def _seed(client: Any) -> None:
    client.headers.update(AUTH)

    def healthy() -> bool:
        workers = client.get("/v1/workers").json()["workers"]
        return bool(workers) and all(w["healthy"] for w in workers)

    wait_until_sync(healthy, timeout=20, message="worker healthy")
    for ending, body in {
        "succeeded": {"capability": "steps", "input": {"n": 3}, "labels": {"seed": "yes"}},
        "failed": {"capability": "fail", "input": {"code": "BROKEN"}},
    }.items():
        r = client.post("/v1/jobs", json=body, params={"wait": 20})
        assert r.status_code == 200 and r.json()["status"] == ending, r.text
        DEFERRED.jobs[ending] = r.json()["id"]
    held = client.post("/v1/jobs", json={"capability": "hold"}).json()["id"]
    r = client.post(f"/v1/jobs/{held}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    DEFERRED.jobs["cancelled"] = held


SUBMISSIONS = [
    {"capability": "noop"},
    {"capability": "steps", "input": {"n": 2}, "labels": {"from": "fuzz"}},
    {"capability": "fail", "input": {"code": "FUZZ"}, "max_attempts": 1},
]


@schema.hook("before_generate_case")
def with_real_values(context: Any, strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Half the valid cases use a seeded job id or a body a worker accepts, so the success
    bodies (a job, its event stream, a redrive) are checked too, not only the 404s and 422s."""
    operation = context.operation
    if "job_id" in operation.path:
        # deferred: the strategy is built before the fixture has seeded the jobs
        values = st.deferred(lambda: st.sampled_from(sorted(DEFERRED.jobs.values())))
        put = _put_job_id
    elif operation.method.upper() == "POST" and operation.path == "/v1/jobs":
        values = st.sampled_from(SUBMISSIONS)
        put = _put_body
    else:
        return strategy
    return st.one_of(strategy, st.tuples(strategy, values).map(lambda pair: put(*pair)))


def _positive(case: Any) -> bool:
    meta = case.meta
    return meta is None or (
        meta.generation.mode.is_positive
        and all(info.mode.is_positive for info in meta.components.values())
    )


def _put_job_id(case: Any, job_id: str) -> Any:
    if _positive(case):
        case.path_parameters = {**case.path_parameters, "job_id": job_id}
    return case


def _put_body(case: Any, body: dict[str, Any]) -> Any:
    if _positive(case):
        case.body = dict(body)
    return case


@pytest.mark.timeout(30 + EXAMPLES // 10)  # per operation: ~0.03 s an example, with room
# Other threads (the app's, the worker's, any an earlier test left) may draw from the global
# `random` while Hypothesis draws a case: it sees the state move and blames the strategy.
@pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning"
)
@pytest.mark.usefixtures("fleet")
@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,  # a request through the app, store and loops: timing is not the point
    database=None,  # no .hypothesis/ directory in the tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_matches_its_openapi_document(case: Any) -> None:
    # Left out, on purpose: "schema-valid data is accepted". A valid body still gets 422 when
    # it names a capability no worker offers or input its schema refuses: that depends on the
    # live catalog, which a static document cannot state (the 422 is declared).
    case.call_and_validate(excluded_checks=[positive_data_acceptance])


def test_every_error_is_declared_with_the_real_body() -> None:
    """No FastAPI default validation schema; every 4xx/5xx is our error body (but /readyz's
    503, which is its readiness report); the event stream is text/event-stream only."""
    assert "HTTPValidationError" not in DOCUMENT["components"]["schemas"]
    error = {"$ref": "#/components/schemas/ErrorBody"}
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert {"413", "422"} <= set(responses), (method, path)
            for status, response in responses.items():
                if int(status) >= 400 and path != "/readyz":
                    assert response["content"] == {"application/json": {"schema": error}}
    events = DOCUMENT["paths"]["/v1/jobs/{job_id}/events"]["get"]["responses"]["200"]
    assert list(events["content"]) == ["text/event-stream"]
