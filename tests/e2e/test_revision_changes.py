"""A connection remembers each endpoint's protocol revision and looks again when it changes.

Real servers take turns on one port: our FastMCP 4.1 worker (2026-07-28, sessionless) and an
mcp 1.x server (2025-11-25, with sessions). Each call after a swap or a restart must succeed
without anyone telling the pool: the refused request (an HTTP 4xx that never reached a tool)
makes the connection detect the revision again, or re-establish the forgotten session.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from shared.serving import free_port
from supervisor.calls import WorkerPool
from tests.peers import procs
from tests.peers.install import PeerUnavailable
from tests.processes import worker

pytestmark = pytest.mark.e2e


@contextmanager
def _mcp1(port: int, ledger: Path) -> Iterator[procs.PeerProc]:
    try:
        with procs.mcp1(port=port, ledger=ledger) as proc:
            yield proc
    except PeerUnavailable as exc:
        pytest.fail(str(exc))


async def test_modern_worker_replaced_by_a_legacy_server_and_back(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    async with WorkerPool() as pool:
        with worker("echo", port=port):
            assert (await pool.call(url, "echo", {"value": 1}, timeout=10)).value == {"value": 1}
            assert (await pool.connect(url)).dialect == "modern"
        with _mcp1(port, tmp_path / "ledger.jsonl"):
            out = await pool.call(url, "echo", {"message": "now legacy"}, timeout=10)
            assert out.value == {"result": "now legacy"}
            info = await pool.connect(url)
            assert (info.dialect, info.protocol, info.stateful) == ("legacy", "2025-11-25", True)
        with worker("echo", port=port):
            assert (await pool.call(url, "echo", {"value": 2}, timeout=10)).value == {"value": 2}
            assert (await pool.connect(url)).dialect == "modern"


async def test_a_restarted_legacy_server_gets_a_new_session(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    async with WorkerPool() as pool:
        with _mcp1(port, tmp_path / "a.jsonl") as first:
            assert (await pool.call(url, "add", {"a": 1, "b": 2}, timeout=10)).value == {
                "result": 3
            }
            first.kill()
        with _mcp1(port, tmp_path / "b.jsonl"):
            # The old session id is unknown to the new process (404): a new handshake, and
            # the refused call is sent again (it never reached a tool).
            assert (await pool.call(url, "add", {"a": 2, "b": 2}, timeout=10)).value == {
                "result": 4
            }
            calls = (tmp_path / "b.jsonl").read_text().count('"tool": "add"')
            assert calls == 1
