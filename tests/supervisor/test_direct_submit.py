"""``POST /v1/jobs`` answered by :class:`supervisor.api.direct.DirectSubmit` is answered as the
route answers it: the same requests, in the same order, to two supervisors, one without that
layer (the stack as FastAPI alone builds it), must get the same answers byte for byte (status,
headers, body), once the ids and times each run mints are named by their order of appearance.

The requests: the whole hostile corpus (``hostile_corpus.py``), the shapes of ``?wait=`` and
of the headers the layer takes or leaves to the route, and, on supervisors with API tokens and
tenants, every way of presenting (or not) a token.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from shared import SupervisorSettings
from supervisor.api.direct import PATH, DirectSubmit, direct_arguments
from supervisor.app import create_app
from tests.helpers import wait_until
from tests.servers import serve_asgi
from tests.supervisor.hostile_corpus import GROUPS, MAX_BODY, Case, job, post
from tests.supervisor.toolservers import Seen, contract_server

TOKENS = "w=w-tok:jobs:write,r=r-tok:jobs:read,a=a-tok:admin,t=t-tok:jobs:read+jobs:write"
TENANTS = "t=acme"

_ID = re.compile(rb"[0-9a-f]{32}")
_TIME = re.compile(rb'"(\w+_at|ts|worker_s)":(-?[0-9][0-9.e+-]*)')


def _raw(name: str, value: str | bytes) -> tuple[bytes, bytes]:
    return name.encode(), value if isinstance(value, bytes) else value.encode("latin-1")


def lane(name: str, body: Any = None, *, params: str = "", **headers: str | bytes) -> Case:
    case = post(name, job() if body is None else body, params=params)
    return Case(
        case.name,
        "POST",
        "/v1/jobs",
        content=case.content,
        headers=[*case.headers, *(_raw(k.replace("_", "-"), v) for k, v in headers.items())],
        params=params,
    )


SHAPES = [
    lane("plain"),
    lane("wait=0", params="wait=0"),
    lane("wait=5", params="wait=5"),
    lane("wait=0.25", params="wait=0.25"),
    lane("wait=60", params="wait=60"),
    lane("wait=60.0", params="wait=60.0"),
    *(
        lane(f"query {q!r}", params=q)
        for q in [
            "wait=60.0000001",
            "wait=61",
            "wait=-1",
            "wait=-0",
            "wait=05",
            "wait=1e1",
            "wait=",
            "wait",
            "wait=nan",
            "wait=inf",
            "wait=%35",
            "wait=5&wait=1",
            "wait=1&wait=500",
            "wait=5&x=1",
            "x=1",
            "WAIT=5",
            "wait=+5",
            "wait=5.",
            "wait=.5",
            "wait=1_0",
            "wait=9999999",
        ]
    ),
    lane("Idempotency-Key", Idempotency_Key="shape-1"),
    lane("Idempotency-Key replayed", Idempotency_Key="shape-1"),
    lane("Idempotency-Key replayed with wait", params="wait=5", Idempotency_Key="shape-1"),
    lane("Idempotency-Key empty", Idempotency_Key=""),
    lane("Idempotency-Key 200", Idempotency_Key="k" * 200),
    lane("Idempotency-Key 201", Idempotency_Key="k" * 201),
    lane("Idempotency-Key with spaces", Idempotency_Key=" a b "),
    lane("Idempotency-Key tab", Idempotency_Key="a\tb"),
    lane("Idempotency-Key Latin-1", Idempotency_Key=b"caf\xe9"),
    lane("Idempotency-Key and body key agree", job(idempotency_key="same"), Idempotency_Key="same"),
    lane("Idempotency-Key and body key differ", job(idempotency_key="one"), Idempotency_Key="two"),
    Case(
        "Idempotency-Key twice",
        "POST",
        "/v1/jobs",
        content=b'{"capability":"noop"}',
        headers=[
            (b"content-type", b"application/json"),
            (b"idempotency-key", b"twice-1"),
            (b"idempotency-key", b"twice-2"),
        ],
    ),
    lane("X-Correlation-ID", X_Correlation_ID="corr-1"),
    lane("X-Correlation-ID with wait", params="wait=5", X_Correlation_ID="corr-2"),
    Case(
        "X-Correlation-ID twice",
        "POST",
        "/v1/jobs",
        content=b'{"capability":"noop"}',
        headers=[
            (b"content-type", b"application/json"),
            (b"x-correlation-id", b"first"),
            (b"x-correlation-id", b"second"),
        ],
    ),
    lane("traceparent", traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    lane("traceparent bad", traceparent="zz"),
    lane("content-type with charset", content_type="application/json; charset=utf-8"),
    lane("unknown capability", {"capability": "nope"}),
    lane("unknown capability with wait", {"capability": "nope"}, params="wait=5"),
    lane("bad input", job(input={"x": 1})),
    lane("a workflow's capability", {"capability": "workflow"}),
    lane("no body", b""),
    lane("not an object", b"[1]"),
    lane("not JSON", b"{"),
    lane("too large", b'{"capability":"noop","input":{"a":"' + b"x" * MAX_BODY + b'"}}'),
    lane("a parent that does not exist", job(parent_id="0" * 32)),
    lane("labels", job(labels={"team": "a"}), params="wait=5"),
    lane("max_attempts", job(max_attempts=2, timeout_s=5)),
    lane("a pinned worker nobody is", job(worker="nobody")),
    lane("Authorization nobody asked for", Authorization="Bearer x"),
]

AUTH = [
    lane("no token"),
    lane("no token, bad query", params="wait=-1"),
    lane("no token, bad Idempotency-Key", Idempotency_Key="a\tb"),
    lane("an unknown token", Authorization="Bearer nope"),
    lane("a JWT-shaped unknown token", Authorization="Bearer a.b.c"),
    lane("Basic", Authorization="Basic dzp3"),
    lane("bearer, lower case", Authorization="bearer w-tok"),
    lane("Bearer with two spaces", Authorization="Bearer  w-tok"),
    lane("Bearer without a token", Authorization="Bearer"),
    lane("read only", Authorization="Bearer r-tok"),
    lane("read only, with wait", params="wait=5", Authorization="Bearer r-tok"),
    lane("read only, bad query", params="wait=nan", Authorization="Bearer r-tok"),
    lane("write", Authorization="Bearer w-tok"),
    lane("write, with wait", params="wait=5", Authorization="Bearer w-tok"),
    lane("admin, with wait", params="wait=5", Authorization="Bearer a-tok"),
    lane("a tenant's, with wait", params="wait=5", Authorization="Bearer t-tok"),
    lane("a tenant's, keyed", Authorization="Bearer t-tok", Idempotency_Key="tenant-key"),
    lane("another's replay of it", Authorization="Bearer w-tok", Idempotency_Key="tenant-key"),
    Case(
        "Authorization twice, the first good",
        "POST",
        "/v1/jobs",
        content=b'{"capability":"noop"}',
        headers=[
            (b"content-type", b"application/json"),
            (b"authorization", b"Bearer w-tok"),
            (b"authorization", b"Bearer r-tok"),
        ],
    ),
    Case(
        "Authorization twice, the first bad",
        "POST",
        "/v1/jobs",
        content=b'{"capability":"noop"}',
        headers=[
            (b"content-type", b"application/json"),
            (b"authorization", b"Bearer r-tok"),
            (b"authorization", b"Bearer w-tok"),
        ],
    ),
]


@dataclass
class Pair:
    direct: httpx.AsyncClient
    route: httpx.AsyncClient


def _without_direct(app: Any) -> Any:
    app.user_middleware = [m for m in app.user_middleware if m.cls is not DirectSubmit]
    return app


@pytest.fixture(params=["open", "tokens"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    """Two supervisors on one worker, the same settings; one answers without DirectSubmit."""
    auth = {"api_tokens": TOKENS, "token_tenants": TENANTS} if request.param == "tokens" else {}
    async with AsyncExitStack() as stack:
        worker = contract_server("w1", Seen()).http_app(path="/mcp")
        worker_url = await stack.enter_async_context(serve_asgi(worker)) + "/mcp"
        clients = []
        for strip in (False, True):
            settings = SupervisorSettings(
                redis_url="memory://",
                workers=worker_url,
                probe_interval_s=0.5,
                max_body_bytes=MAX_BODY,
                **auth,
            )
            app = create_app(settings)
            if strip:
                _without_direct(app)
            await stack.enter_async_context(app.router.lifespan_context(app))
            api = await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://fleet", timeout=30
                )
            )
            admin = {"Authorization": "Bearer a-tok"} if auth else {}

            async def healthy(api: httpx.AsyncClient = api, admin: dict[str, str] = admin) -> bool:
                workers = (await api.get("/v1/workers", headers=admin)).json()["workers"]
                return bool(workers) and all(w["healthy"] for w in workers)

            await wait_until(healthy, timeout=20, message="worker healthy")
            clients.append(api)
        yield Pair(*clients)


class Names:
    """Each id and time a run minted, named by its order of appearance in that run."""

    def __init__(self) -> None:
        self.ids: dict[bytes, bytes] = {}

    def __call__(self, raw: bytes) -> bytes:
        raw = _TIME.sub(lambda m: b'"' + m.group(1) + b'":"<time>"', raw)
        return _ID.sub(lambda m: self.ids.setdefault(m.group(), b"<id%d>" % len(self.ids)), raw)


async def answer(api: httpx.AsyncClient, case: Case, names: Names, job_id: str) -> Any:
    path = case.path.replace("{job}", job_id).replace("{JOB}", job_id.upper())
    params = case.params.replace("{job}", job_id).replace("{JOB}", job_id.upper())
    url = httpx.URL("http://fleet" + path, query=params.encode())
    r = await api.request(case.method, url, content=case.content, headers=case.headers)
    headers = [(k, names(v)) for k, v in r.headers.raw]
    body = names(r.content)
    if _TIME.search(r.content):  # a time's digits vary: its length is not the answer's
        headers = [(k, v) for k, v in headers if k != b"content-length"]
        with contextlib.suppress(ValueError):  # an event stream is not one JSON value
            body = json.loads(body)
    return r.status_code, headers, body


async def finished_job(api: httpx.AsyncClient, auth: dict[str, str]) -> str:
    r = await api.post("/v1/jobs", json={"capability": "noop"}, params={"wait": 20}, headers=auth)
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    return str(r.json()["id"])


async def test_direct_answers_as_the_route(pair: Pair, request: pytest.FixtureRequest) -> None:
    tokens = request.node.callspec.params["pair"] == "tokens"
    cases = AUTH if tokens else [c for group in GROUPS.values() for c in group] + SHAPES
    auth = {"Authorization": "Bearer a-tok"} if tokens else {}
    names = {id(pair.direct): Names(), id(pair.route): Names()}
    jobs = {id(api): await finished_job(api, auth) for api in (pair.direct, pair.route)}
    for api in (pair.direct, pair.route):
        names[id(api)](jobs[id(api)].encode())  # the finished job is <id0> in both
    differ, compared = [], 0
    for case in cases:
        direct = await answer(pair.direct, case, names[id(pair.direct)], jobs[id(pair.direct)])
        route = await answer(pair.route, case, names[id(pair.route)], jobs[id(pair.route)])
        # Every case goes to both (the stores stay alike); the answers compared are those
        # of the requests the layer could take (others depend on when the worker ran).
        if case.method == "POST" and case.path == PATH:
            compared += 1
            if direct != route:
                differ.append(f"{case.name}:\n  direct {direct!s:.600}\n  route  {route!s:.600}")
    assert not differ, "\n".join(differ[:10])
    assert compared >= 20


@pytest.mark.parametrize(
    ("query", "headers", "taken"),
    [
        (b"", [], (None, 0)),
        (b"wait=30", [], (None, 30.0)),
        (b"wait=0.5", [(b"idempotency-key", b"k-1")], ("k-1", 0.5)),
        (b"wait=60", [(b"x-correlation-id", b"abc")], (None, 60.0)),
        (b"", [(b"authorization", b"Bearer x")], (None, 0)),
        (b"", [(b"idempotency-key", b"")], ("", 0)),
        (b"wait=60.5", [], None),
        (b"wait=-1", [], None),
        (b"wait=05", [], None),
        (b"wait=1e1", [], None),
        (b"wait=5&wait=6", [], None),
        (b"wait=5&x=1", [], None),
        (b"x=1", [], None),
        (b"wait=%35", [], None),
        (b"", [(b"idempotency-key", b"a\tb")], None),
        (b"", [(b"idempotency-key", b"k" * 201)], None),
        (b"", [(b"idempotency-key", b"a"), (b"idempotency-key", b"a")], None),
        (b"", [(b"authorization", b"Bearer x"), (b"authorization", b"Bearer x")], None),
        (b"", [(b"x-correlation-id", b"a b")], None),
        (b"", [(b"x-correlation-id", b"a"), (b"x-correlation-id", b"a")], None),
    ],
)
def test_which_requests_the_layer_takes(
    query: bytes, headers: list[tuple[bytes, bytes]], taken: tuple[str | None, float] | None
) -> None:
    scope = {"query_string": query, "headers": [(b"host", b"fleet"), *headers]}
    assert direct_arguments(scope) == taken
