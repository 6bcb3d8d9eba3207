"""``fleet workflow run/show``, and ``fleet status``/``fleet watch`` on a workflow and on a job
with children, against the CLI package's real fleet (a supervisor and an echo worker over
HTTP, ``tests/cli/conftest.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.cli.conftest import CliFleet

ECHO_FLOW: dict[str, Any] = {
    "name": "echoes",
    "input": {"items": ["a", "b", "c", "d", "e"]},
    "steps": {
        "first": {"capability": "echo", "input": {"value": "$.input.items"}},
        "each": {
            "capability": "echo",
            "map": "$.steps.first.result.value",
            "concurrency": 2,
            "input": {"value": "$.item"},
        },
        "last": {"capability": "noop", "after": ["each"], "input": {}},
    },
    "output": {"echoed": "$.steps.each.results[*].value", "last": "$.steps.last.result"},
}


def _flow(tmp_path: Path, spec: dict[str, Any] | None = None) -> str:
    path = tmp_path / "flow.json"
    path.write_text(json.dumps(spec or ECHO_FLOW), encoding="utf-8")
    return str(path)


def test_status_lists_a_jobs_children_and_a_child_names_its_parent(cli_fleet: CliFleet) -> None:
    parent = cli_fleet.submit("sleep", {"seconds": 30, "steps": 30})
    children = [cli_fleet.submit("noop", {}, parent_id=parent) for _ in range(3)]
    try:
        for child in children:
            cli_fleet.job(child, wait=20)
        out = cli_fleet.invoke("status", parent)
        assert out.exit_code == 0, out.output
        assert "children: 3\n" in out.output
        rows = [line for line in out.output.splitlines() if line.split("\t")[0] in children]
        assert [row.split("\t")[0] for row in rows] == children  # in submit order
        assert all(row.split("\t")[1:3] == ["noop", "succeeded"] for row in rows), rows
        child = cli_fleet.invoke("status", children[0])
        assert f"parent          {parent} (depth 1)" in child.output, child.output
        as_json = json.loads(cli_fleet.invoke("status", parent, "--json").output)
        assert as_json["children"] == children
    finally:
        cli_fleet.http.post(f"/v1/jobs/{parent}/cancel")
