"""Celery and arq, run side by side with the fleet: their venvs, worker processes and drivers.

Neither is a project dependency. Each gets its own venv under ``~/.cache/mcp-fleet/bench``
(``FLEET_BENCH_CACHE``), built once with ``python -m venv`` and pip (the framework, and the
FastMCP version this project runs, for the task that calls an MCP tool). A venv that cannot be
built makes its systems *unavailable* with the reason; the run goes on without them.

- Celery: prefork, 2 processes (``-c 2``), Redis broker and result backend.
- arq: one process, 10 ms poll, up to 64 jobs at once.

The worker processes and the load driver (``foreign_app/driver.py``) run in that venv; the
driver answers one JSON command per line, so this process samples CPU around each phase.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.chaos.procs import Proc, _env

__all__ = ["CACHE", "Driver", "Unavailable", "build_venvs", "foreign_worker"]

CACHE = Path(os.environ.get("FLEET_BENCH_CACHE", "~/.cache/mcp-fleet/bench")).expanduser()
APP_DIR = Path(__file__).resolve().parent / "foreign_app"
FRAMEWORKS = {"celery": ["celery[redis]>=5.3,<6"], "arq": ["arq>=0.25,<1"]}
_BUILD_S = 900


class Unavailable(Exception):
    """A foreign system cannot run here; the message says why."""


def requirements(kind: str) -> list[str]:
    return [*FRAMEWORKS[kind], f"fastmcp=={version('fastmcp')}"]


def _build(kind: str) -> Path:
    """The venv's python, built (or found cached) for ``kind``; raises :class:`Unavailable`."""
    home = CACHE / kind
    python = home / "bin" / "python"
    marker = home / ".bench-ready"
    want = "\n".join(requirements(kind))
    if python.exists() and marker.exists() and marker.read_text() == want:
        return python
    shutil.rmtree(home, ignore_errors=True)
    home.parent.mkdir(parents=True, exist_ok=True)
    steps = [
        [sys.executable, "-m", "venv", str(home)],
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *want.split()],
    ]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=_BUILD_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise Unavailable(f"{kind} venv: {exc}") from exc
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise Unavailable(f"{kind} venv: {step[2]} failed: {tail[0][:200]}")
    marker.write_text(want)
    return python


def build_venvs() -> dict[str, Path | Unavailable]:
    """Each framework's venv python, or why it is unavailable (built in parallel)."""
    with ThreadPoolExecutor(len(FRAMEWORKS)) as pool:
        futures = {kind: pool.submit(_build, kind) for kind in FRAMEWORKS}
    out: dict[str, Path | Unavailable] = {}
    for kind, future in futures.items():
        exc = future.exception()
        out[kind] = future.result() if exc is None else Unavailable(str(exc))
    return out


def _foreign_env(redis_url: str, mcp_url: str) -> dict[str, str]:
    extra = {"PYTHONPATH": str(APP_DIR), "BENCH_REDIS_URL": redis_url, "BENCH_MCP_URL": mcp_url}
    return _env(extra)


def foreign_worker(kind: str, python: Path, redis_url: str, mcp_url: str, log: Path) -> Proc:
    """The Celery or arq worker process (not started)."""
    if kind == "celery":
        args = [
            str(python), "-m", "celery", "-A", "celery_app", "worker", "-P", "prefork", "-c", "2",
            "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING",
        ]  # fmt: skip
    else:
        args = [str(python.parent / "arq"), "arq_app.WorkerSettings"]
    return Proc(kind, args, _foreign_env(redis_url, mcp_url), log)


class Driver:
    """The load generator in a foreign venv; :meth:`ask` sends one command, returns the answer."""

    def __init__(self, kind: str, task: str, python: Path, redis_url: str, mcp_url: str) -> None:
        self.args = [str(python), str(APP_DIR / "driver.py"), "--kind", kind, "--task", task]
        self.env = _foreign_env(redis_url, mcp_url)
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.args,
            env=self.env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )

    async def ask(self, command: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise Unavailable(f"the driver exited ({self.proc.returncode}) during {command['op']}")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    async def close(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(b'{"op": "quit"}\n')
            await asyncio.wait_for(self.proc.wait(), 10)
        except (TimeoutError, OSError):
            self.proc.kill()
            await self.proc.wait()
