"""Smoke tests of the foreign peers themselves: each installs, starts and answers our client.

The FastMCP 4.1 client in its default ``auto`` mode probes the modern protocol, finds none on
these peers, and falls back to the initialize handshake. A peer that cannot be installed or
started fails the test with the reason (never a skip).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from tests.helpers import wait_until
from tests.peers import install, procs
from tests.peers.install import PeerUnavailable
from tests.peers.procs import PeerProc

pytestmark = pytest.mark.e2e

PEER_TOOLS = {"echo", "add", "progress", "slow", "fail", "big", "image"}
PNG_SIGNATURE = "iVBORw0KGgo"  # base64 of the PNG magic bytes


@contextmanager
def started(factory: Callable[[], AbstractContextManager[PeerProc]]) -> Iterator[PeerProc]:
    """Start a peer; a peer that cannot be installed or started fails the test with why."""
    try:
        with factory() as proc:
            yield proc
    except PeerUnavailable as exc:
        pytest.fail(str(exc))


def _ledger(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def value(result: Any) -> Any:
    """A primitive tool result. mcp 1.x wraps it as ``{"result": ...}`` without FastMCP's
    ``x-fastmcp-wrap-result`` schema marker, so the FastMCP client's ``.data`` is then an object
    with a ``.result`` field rather than the value: read the structured content instead."""
    assert result.structured_content is not None, result
    return result.structured_content["result"]


class Progress:
    def __init__(self) -> None:
        self.events: list[tuple[float, float | None, str | None]] = []

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.events.append((progress, total, message))


# --- the TypeScript reference server ---------------------------------------------------------


@pytest.fixture(scope="module")
def everything_peer() -> Iterator[PeerProc]:
    with started(procs.everything) as proc:
        yield proc


async def test_everything_answers_initialize_list_and_call_with_progress(
    everything_peer: PeerProc,
) -> None:
    async with Client(everything_peer.url) as client:
        assert client.protocol_version in ("2025-06-18", "2025-11-25")
        assert client.initialize_result is not None
        assert client.initialize_result.server_info.name == "mcp-servers/everything"
        names = {tool.name for tool in await client.list_tools()}
        assert {"echo", "get-sum", "trigger-long-running-operation"} <= names

        echoed = await client.call_tool("echo", {"message": "hi"})
        assert echoed.content[0].text == "Echo: hi"  # type: ignore[union-attr]

        progress = Progress()
        result = await client.call_tool(
            "trigger-long-running-operation",
            {"duration": 0.3, "steps": 3},
            progress_handler=progress,
        )
        assert "Steps: 3" in result.content[0].text  # type: ignore[union-attr]
        assert [(p, t) for p, t, _ in progress.events] == [(1, 3), (2, 3), (3, 3)]


def test_conformance_cli_runs_scenarios_against_a_peer(everything_peer: PeerProc) -> None:
    try:
        argv = install.conformance_argv()
    except PeerUnavailable as exc:
        pytest.fail(str(exc))
    for scenario in ("server-initialize", "tools-list"):
        run = subprocess.run(
            [*argv, "server", "--url", everything_peer.url, "--scenario", scenario],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert "0 failed" in run.stdout, run.stdout


# --- Python SDK peers: mcp 1.x FastMCP and FastMCP 2.x ---------------------------------------

PYTHON_PEERS = {"mcp1": procs.mcp1, "fastmcp2": procs.fastmcp2}


@pytest.fixture(scope="module", params=["mcp1", "fastmcp2"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module", params=["stateful", "stateless"])
def python_peer(
    kind: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[PeerProc, Path]]:
    ledger = tmp_path_factory.mktemp(f"{kind}-{request.param}") / "ledger.jsonl"
    stateless = request.param == "stateless"
    with started(lambda: PYTHON_PEERS[kind](ledger=ledger, stateless=stateless)) as proc:
        yield proc, ledger


async def test_python_peer_serves_the_tool_set(python_peer: tuple[PeerProc, Path]) -> None:
    proc, ledger = python_peer
    async with Client(proc.url) as client:
        assert client.protocol_version == "2025-11-25"
        tools = {tool.name: tool for tool in await client.list_tools()}
        assert set(tools) >= PEER_TOOLS
        add = tools["add"]
        assert add.annotations is not None and add.annotations.idempotent_hint is True

        progress = Progress()
        result = await client.call_tool(
            "progress", {"steps": 3}, progress_handler=progress, meta={"fleet_probe": "p-1"}
        )
        assert value(result) == "done 3"
        assert progress.events == [(i, 3, f"step {i}/3") for i in (1, 2, 3)]
        calls = [e for e in _ledger(ledger) if e["event"] == "call" and e["tool"] == "progress"]
        assert any(e["meta"].get("fleet_probe") == "p-1" for e in calls), calls
        assert all("progressToken" in e["meta"] for e in calls), calls

        assert value(await client.call_tool("add", {"a": 2, "b": 40})) == 42

        with pytest.raises(ToolError, match="boom-42"):
            await client.call_tool("fail", {"message": "boom-42"})
        failed = await client.call_tool("fail", {"message": "boom-43"}, raise_on_error=False)
        assert failed.is_error

        big_progress = Progress()
        big = await client.call_tool("big", {"size": 300_000}, progress_handler=big_progress)
        assert len(value(big)) == 300_000
        assert len(big_progress.events) == 1

        picture = await client.call_tool("image", {})
        kinds = [block.type for block in picture.content]
        assert kinds == ["image", "text"]
        image = picture.content[0]
        assert image.mime_type == "image/png"  # type: ignore[union-attr]
        assert image.data.startswith(PNG_SIGNATURE)  # type: ignore[union-attr]

        done = await client.call_tool("slow", {"seconds": 0.05, "tag": "quick"})
        assert value(done) == "slept 0.05 quick"
        tagged = [(e["event"], e.get("tag")) for e in _ledger(ledger) if e["event"] != "call"]
        assert ("start", "quick") in tagged and ("done", "quick") in tagged


async def test_stateful_python_peer_records_a_cancelled_call(kind: str, tmp_path: Path) -> None:
    """A per-call timeout makes the client send notifications/cancelled; the ledger shows it."""
    ledger = tmp_path / "ledger.jsonl"
    with started(lambda: PYTHON_PEERS[kind](ledger=ledger)) as proc:
        async with Client(proc.url) as client:
            with pytest.raises(Exception, match=r"(?i)time"):
                await client.call_tool("slow", {"seconds": 60, "tag": "c1"}, timeout=0.5)
            await wait_until(
                lambda: {"event": "cancelled", "tag": "c1"} in _ledger(ledger),
                timeout=10,
                message="the peer's ledger to record the cancellation",
            )
            assert {"event": "done", "tag": "c1"} not in _ledger(ledger)
            assert value(await client.call_tool("echo", {"message": "still"})) == "still"


@pytest.mark.parametrize("version", ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"])
@pytest.mark.parametrize("stateless", [False, True], ids=["stateful", "stateless"])
async def test_mcp1_only_version_negotiates_exactly_that_version(
    version: str, stateless: bool, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.jsonl"
    with started(
        lambda: procs.mcp1(ledger=ledger, stateless=stateless, only_version=version)
    ) as proc:
        async with Client(proc.url) as client:
            assert client.protocol_version == version
            assert client.initialize_result is not None
            assert client.initialize_result.protocol_version == version
            progress = Progress()
            result = await client.call_tool("progress", {"steps": 2}, progress_handler=progress)
            assert value(result) == "done 2"
            assert [p for p, _, _ in progress.events] == [1, 2]
