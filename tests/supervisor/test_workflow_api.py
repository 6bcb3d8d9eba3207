"""Workflows through the real API and dispatcher, with tool servers over HTTP in this process:
chains, maps, fan-in, both failure policies, cancel, the 422s, the view, a resume, the MCP
tool."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport
from fastmcp.exceptions import ToolError

from tests.helpers import wait_until
from tests.supervisor.conftest import Fleet, start_fleet, store_of


@pytest.fixture
async def fleet() -> AsyncIterator[Fleet]:
    async with AsyncExitStack() as stack:
        yield await start_fleet(stack, workers=1, foreign=True)


@pytest.fixture(params=["memory", "redis"])
async def any_fleet(request: pytest.FixtureRequest) -> AsyncIterator[Fleet]:
    async with AsyncExitStack() as stack:
        yield await start_fleet(stack, workers=2, **store_of(request))


async def run(fleet: Fleet, spec: dict[str, Any], wait: float = 20) -> dict[str, Any]:
    r = await fleet.api.post("/v1/workflows", params={"wait": wait}, json=spec)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def view(fleet: Fleet, workflow_id: str) -> dict[str, Any]:
    r = await fleet.api.get(f"/v1/workflows/{workflow_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def calls(fleet: Fleet, tool: str) -> list[dict[str, Any]]:
    return [c for seen in fleet.seen.values() for c in seen.calls if c["tool"] == tool]


def error(r: httpx.Response, code: str = "INVALID_WORKFLOW") -> dict[str, Any]:
    assert r.status_code == 422, r.text
    body = r.json()["error"]
    assert body["code"] == code, body
    return dict(body)


async def test_chain_map_and_fan_in(any_fleet: Fleet) -> None:
    spec = {
        "name": "numbers",
        "input": {"n": 2, "items": [1, 2, 3, 4, 5]},
        "steps": {
            "first": {"capability": "steps", "input": {"n": "$.input.n"}},
            "each": {
                "capability": "steps",
                "map": "$.input.items",
                "concurrency": 2,
                "input": {"n": "$.item"},
                "after": ["first"],
            },
            "side": {"capability": "noop"},
            "join": {"capability": "noop", "after": ["each", "side"]},
        },
        "output": {
            "first": "$.steps.first.result.steps",
            "each": "$.steps.each.results[*].steps",
            "join": "$.steps.join.result.ok",
        },
    }
    done = await run(any_fleet, spec)
    assert done["status"] == "succeeded", done
    assert done["capability"] == "fleet:workflow"
    assert done["result"] == {"first": 2, "each": [1, 2, 3, 4, 5], "join": True}
    assert done["progress"] == {"progress": 8.0, "total": 8.0, "message": "join succeeded"}
    seen = await view(any_fleet, done["id"])
    steps = seen["steps"]
    assert list(steps) == ["first", "each", "side", "join"]
    assert steps["each"] == {
        "status": "succeeded",
        "capability": "steps",
        "map": True,
        "total": 5,
        "done": 5,
        "failed": 0,
        "job_ids": steps["each"]["job_ids"],
        "error": None,
    }
    assert len(set(steps["each"]["job_ids"])) == 5
    children = seen["job"]["children"]  # every child, in submit order
    assert sorted(children) == sorted(i for s in steps.values() for i in s["job_ids"])
    assert children[-1] == steps["join"]["job_ids"][0]
    child = (await any_fleet.api.get(f"/v1/jobs/{steps['each']['job_ids'][3]}")).json()
    assert child["parent_id"] == done["id"] and child["depth"] == 1
    assert child["input"] == {"n": 4}
    assert child["correlation_id"] == done["correlation_id"]
    assert child["idempotency_key"] == f"wf:{done['id']}:each:3"
    # the log: step transitions and progress, in order, then the end
    events = await any_fleet.services.store.events(done["id"], count=1000)
    kinds = [e.type for e in events]
    assert kinds[0] == "status" and kinds[-1] == "done"
    changes = transitions(events)
    assert changes.index(("first", "succeeded")) < changes.index(("each", "running"))
    assert changes[-1] == ("join", "succeeded")


async def test_text_pipeline_shape_with_literal_escape(fleet: Fleet) -> None:
    spec = {
        "input": {"word": "hello"},
        "steps": {
            "a": {"capability": "shout", "input": {"text": "$.input.word"}},
            "b": {"capability": "shout", "input": {"text": "$$.input.word"}},
        },
        "output": ["$.steps.a.result", "$.steps.b.result"],
    }
    done = await run(fleet, spec)
    assert done["status"] == "succeeded", done
    assert done["result"] == ["HELLO", "$.INPUT.WORD"]


async def test_fail_fast_cancels_the_running_children(fleet: Fleet) -> None:
    spec = {
        "steps": {
            "held": {"capability": "hold"},
            "gate": {"capability": "noop"},
            "bad": {"capability": "fail", "input": {"code": "NOPE"}, "after": ["gate"]},
            "later": {"capability": "noop", "after": ["bad"]},
        },
    }
    r = await fleet.api.post("/v1/workflows", json=spec)
    assert r.status_code == 202, r.text
    assert r.headers["location"] == f"/v1/workflows/{r.json()['id']}"
    wf = r.json()
    done = (await fleet.api.get(f"/v1/jobs/{wf['id']}", params={"wait": 20})).json()
    assert done["status"] == "failed", done
    assert done["error"]["code"] == "STEP_FAILED"
    assert "step 'bad' failed" in done["error"]["message"]
    assert "NOPE" in done["error"]["message"]
    details = done["error"]["details"]
    assert details["step"] == "bad" and details["error"]["code"] == "NOPE"
    assert details["steps"]["held"]["status"] == "cancelled"
    assert details["steps"]["later"]["status"] == "skipped"
    steps = (await view(fleet, wf["id"]))["steps"]
    held = await fleet.api.get(f"/v1/jobs/{steps['held']['job_ids'][0]}", params={"wait": 10})
    assert held.json()["status"] == "cancelled"
    await wait_until(lambda: fleet.seen["w1"].cancelled, message="the tool saw the cancel")


async def test_continue_runs_the_independent_steps(fleet: Fleet) -> None:
    spec = {
        "input": {"items": [1, 2, 3]},
        "steps": {
            "bad": {"capability": "fail", "input": {"code": "NOPE"}, "max_attempts": 1},
            "needs_bad": {"capability": "noop", "after": ["bad"]},
            "free": {"capability": "steps", "map": "$.input.items", "input": {"n": "$.item"}},
        },
        "on_failure": "continue",
    }
    done = await run(fleet, spec)
    assert done["status"] == "failed"
    outcomes = {n: s["status"] for n, s in done["error"]["details"]["steps"].items()}
    assert outcomes == {"bad": "failed", "needs_bad": "skipped", "free": "succeeded"}
    assert len(calls(fleet, "fail")) == 1
    steps = (await view(fleet, done["id"]))["steps"]
    assert steps["free"]["done"] == 3 and steps["needs_bad"]["status"] == "skipped"
    assert steps["bad"]["error"]["code"] == "NOPE" and steps["bad"]["failed"] == 1


async def test_a_step_retries_as_its_child(fleet: Fleet) -> None:
    fleet.seen["w1"].fail_next = 2
    spec = {"steps": {"f": {"capability": "flaky", "max_attempts": 3, "timeout_s": 10}}}
    done = await run(fleet, spec)
    assert done["status"] == "succeeded", done
    child = (await view(fleet, done["id"]))["steps"]["f"]["job_ids"][0]
    job = (await fleet.api.get(f"/v1/jobs/{child}")).json()
    assert job["max_attempts"] == 3 and job["timeout_s"] == 10
    assert len(calls(fleet, "flaky")) == 3  # BUSY twice, then done: the child's own retries


async def test_cancelling_the_workflow_cancels_its_children(fleet: Fleet) -> None:
    spec = {
        "input": {"items": [1, 2, 3]},
        "steps": {
            "m": {"capability": "hold", "map": "$.input.items", "concurrency": 2},
            "after": {"capability": "noop", "after": ["m"]},
        },
    }
    wf = (await fleet.api.post("/v1/workflows", json=spec)).json()

    async def two_running() -> bool:
        return len((await view(fleet, wf["id"]))["steps"]["m"]["job_ids"]) == 2

    await wait_until(two_running, timeout=10, message="two items running")
    short = wf["id"][:10]
    r = await fleet.api.post(f"/v1/jobs/{short}/cancel")
    assert r.status_code in (200, 202), r.text
    done = (await fleet.api.get(f"/v1/jobs/{wf['id']}", params={"wait": 10})).json()
    assert done["status"] == "cancelled"
    seen = await view(fleet, short)
    assert seen["steps"]["m"]["status"] == "cancelled"
    assert seen["steps"]["after"]["status"] == "cancelled"
    for child in seen["steps"]["m"]["job_ids"]:
        job = (await fleet.api.get(f"/v1/jobs/{child}", params={"wait": 10})).json()
        assert job["status"] == "cancelled", job
    assert len(calls(fleet, "hold")) == 2  # the third item never started


async def test_invalid_workflows_are_refused_with_the_problem(fleet: Fleet) -> None:
    api = fleet.api
    e = error(await api.post("/v1/workflows", json={"steps": {
        "a": {"capability": "noop", "after": ["b"]},
        "b": {"capability": "noop", "after": ["a"]}}}))  # fmt: skip
    assert e["details"]["field"] == "after" and set(e["details"]["cycle"]) == {"a", "b"}
    assert "cycle" in e["message"]
    e = error(await api.post("/v1/workflows", json={"steps": {
        "a": {"capability": "noop", "input": {"x": "$.steps.ghost.result"}}}}))  # fmt: skip
    assert (e["details"]["step"], e["details"]["field"]) == ("a", "input.x")
    assert "ghost" in e["message"]
    e = error(await api.post("/v1/workflows", json={"steps": {
        "a": {"capability": "no-such-tool"}}}))  # fmt: skip
    assert (e["details"]["step"], e["details"]["field"]) == ("a", "capability")
    assert "noop" in e["details"]["known"]
    e = error(await api.post("/v1/workflows", json={"steps": {
        "a": {"capability": "steps", "input": {"n": "many"}}}}))  # fmt: skip
    assert (e["details"]["step"], e["details"]["field"]) == ("a", "input.n")
    e = error(await api.post("/v1/workflows", json={"steps": {
        "a": {"capability": "fleet:workflow"}}}))  # fmt: skip
    assert e["details"]["field"] == "capability"
    e = error(await api.post("/v1/workflows", json={"steps": {}}))
    assert e["details"]["field"] == "steps"
    e = error(await api.post("/v1/workflows", json=[1]))
    assert e["details"]["field"] == "body"
    r = await api.post(
        "/v1/workflows", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    # only POST /v1/workflows makes workflow jobs
    e = error(
        await api.post("/v1/jobs", json={"capability": "fleet:workflow"}), "UNKNOWN_CAPABILITY"
    )
    assert "/v1/workflows" in e["message"]
    assert (await api.get("/v1/jobs", params={"capability": "fleet:workflow"})).json()["jobs"] == []


async def test_replay_wait_and_view_of_other_jobs(fleet: Fleet) -> None:
    spec = {"steps": {"a": {"capability": "noop"}}}
    headers = {"Idempotency-Key": "wf-once"}
    first = await fleet.api.post("/v1/workflows", json=spec, headers=headers)
    again = await fleet.api.post("/v1/workflows", json=spec, headers=headers)
    assert first.status_code == 202 and again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    other = {"steps": {"a": {"capability": "steps", "input": {"n": 1}}}}
    conflict = await fleet.api.post("/v1/workflows", json=other, headers=headers)
    assert conflict.status_code == 409, conflict.text
    r = await fleet.api.get(f"/v1/workflows/{first.json()['id']}", params={"wait": 10})
    assert r.json()["job"]["status"] == "succeeded"
    assert r.json()["job"]["result"] == {"ok": True, "worker": "w1"}
    job = await fleet.submit("noop")
    r = await fleet.api.get(f"/v1/workflows/{job['id']}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "JOB_NOT_FOUND"
    assert "not a workflow" in r.json()["error"]["message"]
    r = await fleet.api.get(f"/v1/workflows/{'0' * 32}")
    assert r.status_code == 404


async def test_a_workflow_resumes_without_rerunning_finished_steps(any_fleet: Fleet) -> None:
    """Its run is stopped as a dying supervisor's would be (the task ends, the lease is not
    renewed); the dispatcher reclaims it after the lease and the run resumes: finished
    children are found by their keys, not run again, and no transition is written twice."""
    fleet = any_fleet
    spec = {
        "input": {"items": [1, 2, 3, 4]},
        "steps": {
            "a": {"capability": "steps", "input": {"n": 1}},
            "m": {"capability": "steps", "map": "$.input.items", "input": {"n": "$.item"},
                  "after": ["a"]},
            "h": {"capability": "hold", "after": ["m"]},
            "z": {"capability": "noop", "after": ["h"]},
        },
    }  # fmt: skip
    wf = (await fleet.api.post("/v1/workflows", json=spec)).json()
    dispatcher = fleet.services.dispatcher
    seen = list(fleet.seen.values())
    await wait_until(lambda: any(s.started.is_set() for s in seen), message="h holding")
    held = dispatcher.held[wf["id"]]
    assert held.task is not None
    held.task.cancel()  # as a shutdown: not a cancel request, the job stays pending
    await wait_until(lambda: wf["id"] not in dispatcher.held, message="run stopped")
    assert (await fleet.api.get(f"/v1/jobs/{wf['id']}")).json()["status"] == "running"
    await wait_until(lambda: wf["id"] in dispatcher.held, timeout=15, message="reclaimed")
    for s in seen:
        s.release.set()
    done = (await fleet.api.get(f"/v1/jobs/{wf['id']}", params={"wait": 20})).json()
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2
    steps_calls = [c["args"]["n"] for c in calls(fleet, "steps")]
    assert sorted(steps_calls) == [1, 1, 2, 3, 4]  # each once
    assert len(calls(fleet, "hold")) == 1  # the held child went on; not started again
    events = await fleet.services.store.events(wf["id"], count=1000)
    assert transitions(events) == [
        ("a", "running"), ("a", "succeeded"), ("m", "running"), ("m", "succeeded"),
        ("h", "running"), ("h", "succeeded"), ("z", "running"), ("z", "succeeded"),
    ]  # fmt: skip
    runs = [e.data for e in events if e.type == "status" and e.data["status"] == "running"]
    assert [r["resumed"] for r in runs] == [False, True]


def transitions(events: list[Any]) -> list[tuple[str, str]]:
    """Each step event that changed its step's status (a map's progress events do not)."""
    last: dict[str, str] = {}
    out = []
    for e in events:
        if e.type == "step" and last.get(e.data["step"]) != e.data["status"]:
            last[e.data["step"]] = e.data["status"]
            out.append((e.data["step"], e.data["status"]))
    return out


async def test_fleet_workflow_tool_of_the_mcp_face(fleet: Fleet) -> None:
    async with Client(StreamableHttpTransport(fleet.url + "/mcp")) as client:
        tools = {t.name for t in await client.list_tools()}
        assert "fleet_workflow" in tools
        answer = await client.call_tool(
            "fleet_workflow",
            {
                "input": {"items": [1, 2]},
                "steps": {"m": {"capability": "steps", "map": "$.input.items",
                                "input": {"n": "$.item"}}},
                "output": "$.steps.m.results[*].steps",
                "wait_s": 20,
            },
        )  # fmt: skip
        data = answer.structured_content
        assert data is not None
        assert data["status"] == "succeeded" and data["result"] == [1, 2]
        assert data["steps"]["m"]["done"] == 2 and data["replayed"] is False
        read = await client.call_tool("fleet_job", {"job_id": data["id"][:12]})
        assert read.structured_content is not None
        assert read.structured_content["capability"] == "fleet:workflow"
        with pytest.raises(ToolError, match="INVALID_WORKFLOW"):
            await client.call_tool("fleet_workflow", {"steps": {"a": {"capability": "x y"}}})
        started = await client.call_tool("fleet_workflow", {"steps": {"h": {"capability": "hold"}}})
        assert started.structured_content is not None
        assert started.structured_content["status"] in ("queued", "running")
        await client.call_tool("fleet_cancel", {"job_id": started.structured_content["id"]})


async def test_a_redriven_workflow_runs_again_only_what_failed(fleet: Fleet) -> None:
    """A failed workflow is a dead letter like any failed job; its redrive runs it again:
    the children that succeeded are kept, the failed and cancelled ones run again."""
    spec = {
        "input": {"items": [1, 2]},
        "steps": {
            "ok": {"capability": "steps", "map": "$.input.items", "input": {"n": "$.item"}},
            "held": {"capability": "hold"},
            "last": {"capability": "noop", "after": ["ok", "held"]},
        },
        "on_failure": "continue",
    }
    wf = (await fleet.api.post("/v1/workflows", json=spec)).json()
    seen = fleet.seen["w1"]
    await wait_until(seen.started.is_set, message="held running")
    first_child = (await view(fleet, wf["id"]))["steps"]["held"]["job_ids"][0]
    await fleet.api.post(f"/v1/jobs/{first_child}/cancel")  # the step fails: not the workflow
    failed = (await fleet.api.get(f"/v1/jobs/{wf['id']}", params={"wait": 20})).json()
    assert failed["status"] == "failed", failed
    assert failed["error"]["details"]["step"] == "held"
    seen.release.set()
    r = await fleet.api.post(f"/v1/dead-letters/{wf['id']}/redrive")
    assert r.status_code in (200, 202), r.text
    done = (await fleet.api.get(f"/v1/jobs/{wf['id']}", params={"wait": 20})).json()
    assert done["status"] == "succeeded", done
    assert len(calls(fleet, "steps")) == 2  # kept from the first run
    assert len(calls(fleet, "hold")) == 2  # cancelled, then run again by the redrive
    steps = (await view(fleet, done["id"]))["steps"]
    assert {s["status"] for s in steps.values()} == {"succeeded"}
    again = steps["held"]["job_ids"][0]
    assert again != first_child
    child = (await fleet.api.get(f"/v1/jobs/{again}")).json()
    assert child["idempotency_key"].startswith(f"wf:{done['id']}:held@run")


async def test_a_child_refused_for_a_limit_waits_its_turn() -> None:
    """429 on a child's submit (here the in-flight limit of its submitter, which the
    workflow itself takes one of) is waited out, not a failure of the step."""
    async with AsyncExitStack() as stack:
        fleet = await start_fleet(stack, workers=1, tenant_max_inflight=3)
        spec = {
            "input": {"items": [1, 2, 3, 4, 5]},
            "steps": {"m": {"capability": "hold", "map": "$.input.items", "concurrency": 5}},
        }
        wf = (await fleet.api.post("/v1/workflows", json=spec)).json()
        await wait_until(lambda: len(calls(fleet, "hold")) == 2, message="2 holding")
        other = await fleet.api.post("/v1/jobs", json={"capability": "noop"})
        assert other.status_code == 429  # the submitter's budget: workflow + 2 children
        steps = (await view(fleet, wf["id"]))["steps"]
        assert steps["m"]["status"] == "running" and steps["m"]["failed"] == 0
        assert len(calls(fleet, "hold")) == 2
        assert (await fleet.api.get(f"/v1/jobs/{wf['id']}")).json()["status"] == "running"
        fleet.seen["w1"].release.set()
        done = (await fleet.api.get(f"/v1/jobs/{wf['id']}", params={"wait": 30})).json()
        assert done["status"] == "succeeded", done
        assert len(calls(fleet, "hold")) == 5


async def test_a_tenants_workflow_and_its_children_are_the_tenants() -> None:
    tokens = "acme=a-tok:jobs:read+jobs:write,globex=g-tok:jobs:read+jobs:write"
    async with AsyncExitStack() as stack:
        fleet = await start_fleet(
            stack, workers=1, api_tokens=tokens, token_tenants="acme=acme,globex=globex"
        )
        acme, globex = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=fleet.url, timeout=30, headers={"Authorization": f"Bearer {t}"}
                )
            )
            for t in ("a-tok", "g-tok")
        ]
        spec = {"steps": {"a": {"capability": "noop"}, "b": {"capability": "noop", "after": ["a"]}}}
        r = await acme.post("/v1/workflows", params={"wait": 20}, json=spec)
        done = r.json()
        assert done["status"] == "succeeded" and done["tenant"] == "acme", done
        assert done["input"]["submitted_by"] == "acme"
        seen = (await acme.get(f"/v1/workflows/{done['id']}")).json()
        for child in seen["job"]["children"]:
            job = (await acme.get(f"/v1/jobs/{child}")).json()
            assert job["tenant"] == "acme" and job["parent_id"] == done["id"]
            assert (await globex.get(f"/v1/jobs/{child}")).status_code == 404
        other = await globex.get(f"/v1/workflows/{done['id']}")
        assert other.status_code == 404 and other.json()["error"]["code"] == "JOB_NOT_FOUND"
        assert (await globex.get(f"/v1/workflows/{done['id'][:10]}")).status_code == 404
