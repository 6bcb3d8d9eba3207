"""``fleet supervisor`` and ``fleet worker``: flags over FLEET_*, refusals without tracebacks,
and real processes that pass their health checks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from shared.serving import free_port
from supervisor.cli import app
from tests.helpers import wait_until_sync

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env.update(FASTMCP_CHECK_FOR_UPDATES="off", FASTMCP_SHOW_SERVER_BANNER="false")
    return env


@contextmanager
def fleet_process(*args: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "supervisor", *args],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        assert proc.stderr is not None
        proc.stderr.close()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_insecure_bind_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLEET_API_TOKENS", raising=False)
    monkeypatch.delenv("FLEET_INSECURE", raising=False)
    result = CliRunner().invoke(app, ["supervisor", "--host", "0.0.0.0", "--port", "1"])
    assert result.exit_code == 4  # a token problem (shared.startup.ExitCode.AUTH_CONFIG)
    assert result.stderr.startswith(
        "fleet supervisor: refusing to bind 0.0.0.0:1 without API tokens"
    )
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_supervisor_flags_are_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    result = CliRunner().invoke(app, ["supervisor", "--log-format", "xml"])
    assert result.exit_code == 2
    assert "fleet supervisor: error: argument --log-format: invalid choice: 'xml'" in result.stderr
    result = CliRunner().invoke(app, ["supervisor", "--port", "70000"])
    assert result.exit_code == 2
    assert "error: argument --port: Input should be less than or equal to 65535" in result.stderr
    monkeypatch.setenv("FLEET_PORT", "x")
    result = CliRunner().invoke(app, ["supervisor"])
    assert result.exit_code == 2 and "error: FLEET_PORT: Input should be a valid integer" in (
        result.stderr
    )


def test_supervisor_help_lists_the_real_flags_with_their_variables() -> None:
    result = CliRunner().invoke(app, ["supervisor", "--help"])
    assert result.exit_code == 0
    out = " ".join(result.stdout.split())
    assert "--port INT Port to bind. [FLEET_PORT; 8700]" in out
    assert "--insecure, --no-insecure Allow a non-loopback bind with no API tokens." in out
    assert "--log-format {auto,json,console}" in out


def test_unknown_worker_is_bad_input() -> None:
    result = CliRunner().invoke(app, ["worker", "nope"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: unknown worker 'nope': choose one of echo, data, text"
    assert CliRunner().invoke(app, ["worker"]).exit_code == 2


def test_fleet_supervisor_and_worker_run_for_real() -> None:
    """Flags win over FLEET_* (the env says port 1; the flag says a free port)."""
    worker_port, sup_port = free_port(), free_port()
    with fleet_process("worker", "echo", "--port", str(worker_port), "--log-level", "WARNING") as w:
        worker_url = f"http://127.0.0.1:{worker_port}"
        wait_until_sync(lambda: _answers(worker_url + "/health"), timeout=30, message="worker")
        with fleet_process(
            "supervisor", "--port", str(sup_port), "--workers", worker_url + "/mcp",
            "--log-level", "WARNING",
        ) as s:  # fmt: skip
            url = f"http://127.0.0.1:{sup_port}"
            wait_until_sync(lambda: _answers(url + "/readyz"), timeout=30, message="supervisor")

            def echo_healthy() -> bool:
                found = httpx.get(url + "/v1/workers", timeout=2).json()["workers"]
                return bool(found) and found[0]["healthy"]

            wait_until_sync(echo_healthy, timeout=20, message="worker registered")
            result = CliRunner().invoke(app, ["--url", url, "submit", "noop", "--watch"])
            assert result.exit_code == 0, result.output
            s.send_signal(signal.SIGTERM)
            # uvicorn drains, then re-raises the SIGTERM it caught: -15 is a clean stop too.
            assert s.wait(15) in (0, -signal.SIGTERM)
        w.send_signal(signal.SIGTERM)
        assert w.wait(15) == 0  # the worker drained and stopped cleanly
