"""The MCP conformance suite (``@modelcontextprotocol/conformance``) against each example worker
and against the supervisor's MCP face.

Each worker runs as a real process over HTTP; the suite's server scenarios that can apply to a
server without the suite's own fixtures all run against it and must pass every check (no
failure, no warning). The suite drives the worker with the session-based protocol
(``initialize``, ``Mcp-Session-Id``), which FastMCP 4.1 serves beside 2026-07-28.

Every server scenario the suite lists is classified below: a new one in a suite upgrade fails
``test_every_server_scenario_is_classified`` until someone decides whether it applies.
An install failure fails the tests with the reason (never a skip).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.peers.install import PeerUnavailable, conformance_argv
from tests.processes import supervisor, worker

pytestmark = pytest.mark.e2e

WORKERS = ("echo", "data", "text")
SUITE_TIMEOUT_S = 300.0

APPLICABLE = (
    "server-initialize",
    "ping",
    "tools-list",
    "server-sse-multiple-streams",
    "dns-rebinding-protection",
    "logging-set-level",
    "resources-list",
    "prompts-list",
)

_FIXTURE_TOOL = "calls the suite's own fixture tool `{}`, which a worker does not have"
_FIXTURE_RESOURCE = "reads the suite's own fixture resource `{}`; workers serve no resources"
_FIXTURE_PROMPT = "gets the suite's own fixture prompt `{}`; workers serve no prompts"
_VACUOUS = "; its check passes vacuously on the 'Unknown tool' error, which proves nothing"
NOT_APPLICABLE: dict[str, str] = {
    "completion-complete": "completes an argument of the suite's fixture prompt "
    "`test_prompt_with_arguments`; workers serve no prompts or completions",
    "tools-call-simple-text": _FIXTURE_TOOL.format("test_simple_text") + _VACUOUS,
    "tools-call-error": _FIXTURE_TOOL.format("test_error_handling") + _VACUOUS,
    "tools-call-image": _FIXTURE_TOOL.format("test_image_content"),
    "tools-call-audio": _FIXTURE_TOOL.format("test_audio_content"),
    "tools-call-embedded-resource": _FIXTURE_TOOL.format("test_embedded_resource"),
    "tools-call-mixed-content": _FIXTURE_TOOL.format("test_multiple_content_types"),
    "tools-call-with-logging": _FIXTURE_TOOL.format("test_tool_with_logging"),
    "tools-call-with-progress": _FIXTURE_TOOL.format("test_tool_with_progress")
    + " (worker progress is covered by tests/workers/test_http.py)",
    "tools-call-sampling": _FIXTURE_TOOL.format("test_sampling")
    + "; workers never ask the client to sample",
    "tools-call-elicitation": _FIXTURE_TOOL.format("test_elicitation") + "; workers never elicit",
    "elicitation-sep1034-defaults": _FIXTURE_TOOL.format("test_elicitation_sep1034_defaults")
    + "; workers never elicit",
    "elicitation-sep1330-enums": _FIXTURE_TOOL.format("test_elicitation_sep1330_enums")
    + "; workers never elicit",
    "json-schema-2020-12": _FIXTURE_TOOL.format("json_schema_2020_12_tool")
    + " (pending in the suite)",
    "server-sse-polling": _FIXTURE_TOOL.format("test_reconnection")
    + "; workers keep no SSE event store (MCP dropped resumption; the supervisor offers it)"
    + " (pending in the suite)",
    "resources-read-text": _FIXTURE_RESOURCE.format("test://static-text"),
    "resources-read-binary": _FIXTURE_RESOURCE.format("test://static-binary"),
    "resources-templates-read": _FIXTURE_RESOURCE.format("test://template/{id}/data"),
    "resources-subscribe": _FIXTURE_RESOURCE.format("test://watched-resource"),
    "resources-unsubscribe": _FIXTURE_RESOURCE.format("test://watched-resource"),
    "prompts-get-simple": _FIXTURE_PROMPT.format("test_simple_prompt"),
    "prompts-get-with-args": _FIXTURE_PROMPT.format("test_prompt_with_arguments"),
    "prompts-get-embedded-resource": _FIXTURE_PROMPT.format("test_prompt_with_embedded_resource"),
    "prompts-get-with-image": _FIXTURE_PROMPT.format("test_prompt_with_image"),
}


@pytest.fixture(scope="module")
def conformance() -> list[str]:
    """The suite's CLI (cached install under Node 22); failing, never skipping, without it."""
    try:
        return conformance_argv()
    except PeerUnavailable as exc:
        pytest.fail(f"the MCP conformance suite is unavailable: {exc}", pytrace=False)


def test_every_server_scenario_is_classified(conformance: list[str]) -> None:
    listed = subprocess.run(
        [*conformance, "list", "--server"], capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    scenarios = set(re.findall(r"^\s+- (\S+)", listed.stdout, re.M))
    assert set(APPLICABLE) <= scenarios, "the suite no longer has a scenario we rely on"
    assert not set(APPLICABLE) & set(NOT_APPLICABLE)
    unclassified = scenarios - set(APPLICABLE) - set(NOT_APPLICABLE)
    assert not unclassified, f"classify these new server scenarios: {sorted(unclassified)}"
    assert set(NOT_APPLICABLE) <= scenarios, "drop scenarios the suite no longer has"


@pytest.mark.parametrize("name", WORKERS)
def test_worker_passes_the_conformance_scenarios(
    name: str, conformance: list[str], tmp_path: Path
) -> None:
    with worker(name) as proc:
        _passes(name, proc.url, conformance, tmp_path)


def test_the_supervisor_mcp_face_passes_the_conformance_scenarios(
    conformance: list[str], tmp_path: Path
) -> None:
    """The fleet as one MCP server (``/mcp`` on the supervisor), with a worker behind it:
    dns-rebinding-protection included, against the supervisor's own Host/Origin guard."""
    with worker("echo") as echo, supervisor(FLEET_WORKERS=echo.url) as sup:
        _passes("the supervisor's /mcp", sup.url + "/mcp", conformance, tmp_path)


def _passes(name: str, url: str, conformance: list[str], tmp_path: Path) -> None:
    # One run of the suite's active scenarios (one Node start, ~1 s; a process per scenario
    # costs ~0.5 s each). Its exit code is 1 because the fixture scenarios fail here, so the
    # verdict comes from each scenario's own checks.json.
    argv = [*conformance, "server", "--suite", "active", "-o", str(tmp_path)]
    try:
        done = subprocess.run(
            [*argv, "--url", url], capture_output=True, text=True, timeout=SUITE_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the conformance suite gave no result after {exc.timeout}s", False)
    results = _results(tmp_path)
    unknown = set(results) - set(APPLICABLE) - set(NOT_APPLICABLE)
    assert not unknown, f"the suite ran unclassified scenarios: {sorted(unknown)}"
    failed = {s: _verdict(results.get(s)) for s in APPLICABLE}
    failed = {s: why for s, why in failed.items() if why}
    assert not failed, (
        f"{name} failed conformance scenarios:\n"
        + "\n".join(f"--- {scenario}: {why}" for scenario, why in failed.items())
        + f"\n--- suite output (exit {done.returncode}):\n"
        + (done.stdout[-3000:] + done.stderr[-2000:])
    )


_RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d\d-\d\dT[\d-]+Z$")


def _results(out_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """``{scenario: checks}`` from the suite's ``server-<scenario>-<time>/checks.json``."""
    found: dict[str, list[dict[str, Any]]] = {}
    for path in out_dir.glob("*/checks.json"):
        match = _RESULT_DIR.match(path.parent.name)
        assert match, f"unexpected results directory {path.parent.name}"
        found[match["scenario"]] = json.loads(path.read_text())
    return found


def _verdict(checks: list[dict[str, Any]] | None) -> str:
    """Empty when the scenario passed: some checks, none failing or warning."""
    if checks is None:
        return "did not run (no checks.json)"
    bad = [c for c in checks if c.get("status") in ("FAILURE", "WARNING")]
    if bad or not any(c.get("status") == "SUCCESS" for c in checks):
        return json.dumps(bad or checks, indent=1)[:3000]
    return ""
