"""``pip install mcp-fleet`` (no extras) is the client and the CLI, without the server stack.

The project is pip-installed from this checkout into a venv of its own, cached per machine and
keyed by a hash of ``pyproject.toml`` (the dependencies are what it decides; see
``tests/peers/install.py`` for the cache). The CLI then runs from that venv with this checkout
first on ``PYTHONPATH``, so the code under test is today's, and the packages are only what the
base install brought. It talks to a real supervisor started from the full environment.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import wait_until_sync
from tests.peers.install import PeerUnavailable, _cached, _run
from tests.processes import ROOT, supervisor, worker

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

SERVER_MODULES = ("fastmcp", "redis", "structlog", "uvicorn")
HINT = "error: fleet {} needs the server parts: pip install 'mcp-fleet[{}]'"


def base_venv() -> Path:
    """The python of a venv holding ``pip install <this checkout>`` and nothing else."""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    spec = {
        "pyproject": digest,
        "python": list(sys.version_info[:2]),
        "machine": platform.machine(),
    }

    def build(tmp: Path) -> None:
        log = tmp / "install.log"
        _run([sys.executable, "-m", "venv", str(tmp)], log=log, what="python -m venv failed")
        _run(
            [str(tmp / "bin" / "python"), "-m", "pip", "install", "--no-input", str(ROOT)],
            log=log,
            what=f"pip install {ROOT} (no extras) failed",
        )

    return _cached("venv-base-install", spec, build) / "bin" / "python"


@pytest.fixture(scope="module")
def python() -> Path:
    try:
        return base_venv()
    except PeerUnavailable as exc:
        pytest.fail(f"could not build the base-install venv: {exc}")


def run(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``args`` in the base venv with this checkout's code (``fleet`` is its console script,
    run by its python: a cached venv was moved, so the script's shebang is stale)."""
    if args[0] == "fleet":
        args = (str(python.parent / "fleet"), *args[1:])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "VIRTUAL_ENV"))}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [str(python), *args], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT
    )


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    """A real supervisor and echo worker, from the full environment."""
    import httpx

    def healthy(url: str) -> bool:
        found = httpx.get(f"{url}/v1/workers", timeout=5).json()["workers"]
        return bool(found) and all(w["healthy"] for w in found)

    with worker("echo") as echo, supervisor(FLEET_WORKERS=echo.url) as sup:
        wait_until_sync(lambda: healthy(sup.url), timeout=30, message="echo healthy")
        yield sup.url


@pytest.mark.parametrize("module", SERVER_MODULES)
def test_the_server_stack_is_not_installed(python: Path, module: str) -> None:
    done = run(python, "-c", f"import {module}")
    assert done.returncode == 1 and "ModuleNotFoundError" in done.stderr, done.stderr


def test_the_client_imports(python: Path) -> None:
    done = run(python, "-c", "from supervisor.client import AsyncFleetClient, FleetClient")
    assert done.returncode == 0, done.stderr


def test_fleet_help(python: Path) -> None:
    done = run(python, "fleet", "--help")
    assert done.returncode == 0, done.stderr
    assert "submit" in done.stdout and "status" in done.stdout


def test_the_cli_talks_to_a_real_supervisor(python: Path, url: str) -> None:
    submitted = run(python, "fleet", "--url", url, "submit", "noop")
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    watched = run(python, "fleet", "--url", url, "submit", "echo", "-i", '{"value": 7}', "--watch")
    assert watched.returncode == 0, watched.stderr
    assert '"value": 7' in watched.stdout
    status = run(python, "fleet", "--url", url, "status", job_id, "--wait", "20")
    assert status.returncode == 0, status.stderr
    assert "succeeded" in status.stdout
    listed = run(python, "fleet", "--url", url, "jobs")
    assert listed.returncode == 0, listed.stderr
    assert job_id[:12] in listed.stdout


@pytest.mark.parametrize(
    ("argv", "extras"),
    [
        (["supervisor"], "supervisor"),
        (["supervisor", "--port", "8799"], "supervisor"),
        (["worker", "echo"], "worker"),
        (["demo"], "supervisor,worker"),
    ],
)
def test_server_commands_say_which_extra_they_need(
    python: Path, argv: list[str], extras: str
) -> None:
    done = run(python, "fleet", *argv)
    assert done.returncode == 2
    assert done.stderr.strip() == HINT.format(argv[0], extras)
    assert done.stdout == ""
