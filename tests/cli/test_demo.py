"""``fleet demo`` as a user runs it: one command, exit 0, a summary, no process left behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _port_open(url: str) -> bool:
    try:
        httpx.get(url, timeout=0.5)
        return True
    except httpx.TransportError:
        return False


def _processes_mentioning(ports: list[str]) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "workers." in cmdline and any(f"--port {p}" in cmdline for p in ports):
            found.append(f"{pid}: {cmdline}")
    return found


@pytest.mark.e2e
def test_demo_runs_the_batch_and_leaves_nothing_behind() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env.update(FASTMCP_CHECK_FOR_UPDATES="off", FASTMCP_SHOW_SERVER_BANNER="false")
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "supervisor", "demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "Traceback" not in out + proc.stderr
    assert "demo ok: 13/13 jobs as expected" in out
    assert "invalid input → 422 INVALID_INPUT: input.seconds" in out
    for capability in (
        "profile_dataset",
        "validate_records",
        "transform_records",
        "summarize",
        "extract_keywords",
        "chunk_text",
        "progress",
        "sleep",
        "echo",
        "fail",
        "fleet:workflow",
    ):
        assert re.search(rf"│ {capability}\b.*│ ✓ (succeeded|failed|cancelled)", out), capability
    assert "✓ cancelled" in out and "✓ rejected" in out and "UPSTREAM_DOWN after 2 attempts" in out
    assert "3000 records" in out and "100%  step 40/40" in out
    assert re.search(r"^└─ ✓ summary +summarize ", out, re.M)  # the workflow's tree
    assert took < 60, f"the demo took {took:.1f}s"

    # Every worker it started is gone: ports closed, no process left.
    urls = re.findall(r"(?:echo|data|text) (http://127\.0\.0\.1:(\d+))/mcp", out)
    assert len(urls) == 3, out
    assert not [u for u, _ in urls if _port_open(u + "/health")]
    assert _processes_mentioning([port for _, port in urls]) == []
    supervisor = re.search(r"supervisor (http://127\.0\.0\.1:\d+)", out)
    assert supervisor and not _port_open(supervisor.group(1) + "/healthz")


@pytest.mark.e2e
def test_ctrl_c_stops_the_demo_and_every_child() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env.update(FASTMCP_CHECK_FOR_UPDATES="off", FASTMCP_SHOW_SERVER_BANNER="false")
    proc = subprocess.Popen(
        [sys.executable, "-m", "supervisor", "demo"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    seen = ""
    try:
        for line in proc.stdout:  # until the batch runs: workers, supervisor, jobs all live
            seen += line
            if line.startswith("submitted "):
                break
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, seen + rest + err
    assert "demo interrupted; every process it started is stopped" in err
    assert "Traceback" not in err
    urls = re.findall(r"(?:echo|data|text) (http://127\.0\.0\.1:(\d+))/mcp", seen)
    assert len(urls) == 3, seen
    assert not [u for u, _ in urls if _port_open(u + "/health")]
    assert _processes_mentioning([port for _, port in urls]) == []
