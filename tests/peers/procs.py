"""Run foreign MCP peers as real processes, wait until they listen, and reap them.

``peer(argv, env, port=P)`` starts any command; ``everything``, ``mcp1`` and ``fastmcp2`` build
the command for one peer (installing it first, cached). Startup waits on a TCP connect to
127.0.0.1:P with a deadline; a peer that exits or never listens raises ``PeerUnavailable`` with
the tail of its output (tests ``pytest.fail(str(exc))`` on it).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shared.serving import free_port
from tests.helpers import wait_until_sync
from tests.peers import install
from tests.peers.install import PeerUnavailable

SERVERS = Path(__file__).resolve().parent / "servers"
STARTUP_TIMEOUT = 60.0


def _peer_env(extra: dict[str, str] | None) -> dict[str, str]:
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__", "NODE_OPTIONS"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("FLEET_")}
    env.update(
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",  # keep __pycache__ out of tests/peers/servers
        FASTMCP_CHECK_FOR_UPDATES="off",
        FASTMCP_SHOW_SERVER_BANNER="false",
    )
    env.update(extra or {})
    return env


class PeerProc:
    """A started peer process. ``url`` is its MCP endpoint, ``http://127.0.0.1:P/mcp``."""

    def __init__(self, argv: list[str], env: dict[str, str], port: int, workdir: Path) -> None:
        self.argv = argv
        self.port = port
        self.url = f"http://127.0.0.1:{port}/mcp"
        self.workdir = workdir
        self.log_path = workdir / "peer.log"
        self._log = self.log_path.open("wb")
        # Its own session: a Ctrl-C at the terminal reaches pytest, which then stops the peer.
        self.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=workdir,  # not the repo: a stray .env there must not configure a foreign SDK
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        """Everything the peer printed so far (stdout and stderr)."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def listening(self) -> bool:
        """True once 127.0.0.1:port accepts a connection; raises if the peer has exited."""
        if not self.alive():
            raise PeerUnavailable(
                f"peer exited with code {self.proc.returncode} before listening on {self.port}",
                argv=self.argv,
                returncode=self.proc.returncode,
                output=self.output(),
                lines=40,
            )
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def wait_listening(self, timeout: float = STARTUP_TIMEOUT) -> PeerProc:
        try:
            wait_until_sync(self.listening, timeout=timeout, interval=0.02)
        except AssertionError as exc:
            raise PeerUnavailable(
                f"peer not listening on 127.0.0.1:{self.port} after {timeout:.0f}s",
                argv=self.argv,
                output=self.output(),
                lines=40,
            ) from exc
        return self

    def kill(self) -> None:
        """SIGKILL, no goodbye (a crash as the client sees it)."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


@contextmanager
def peer(
    argv: list[str],
    env: dict[str, str] | None = None,
    *,
    port: int,
    startup_timeout: float = STARTUP_TIMEOUT,
) -> Iterator[PeerProc]:
    """Start ``argv`` (``env`` added to a cleaned copy of ours) and yield once ``port`` listens.

    Output goes to ``PeerProc.log_path`` in a temporary working directory, removed on exit.
    """
    with tempfile.TemporaryDirectory(prefix="fleet-peer-") as workdir:
        proc = PeerProc(argv, _peer_env(env), port, Path(workdir))
        try:
            yield proc.wait_listening(startup_timeout)
        finally:
            proc.stop()


@contextmanager
def everything(port: int | None = None) -> Iterator[PeerProc]:
    """``@modelcontextprotocol/server-everything`` (TypeScript SDK), session-based, on node."""
    port = port or free_port()
    argv, env = install.server_everything_argv(port)
    with peer(argv, env, port=port) as proc:
        yield proc


def _python_peer_argv(
    python: Path,
    script: str,
    port: int,
    ledger: Path | None,
    stateless: bool,
    only_version: str | None,
    name: str | None,
) -> list[str]:
    argv = [str(python), str(SERVERS / script), "--port", str(port)]
    if ledger is not None:
        argv += ["--ledger", str(ledger)]
    if stateless:
        argv.append("--stateless")
    if only_version:
        argv += ["--only-version", only_version]
    if name:
        argv += ["--name", name]
    return argv


@contextmanager
def mcp1(
    port: int | None = None,
    ledger: Path | None = None,
    stateless: bool = False,
    only_version: str | None = None,
    name: str = "mcp1-peer",
) -> Iterator[PeerProc]:
    """``servers/mcp1_server.py`` on the mcp 1.x SDK's ``FastMCP``."""
    port = port or free_port()
    argv = _python_peer_argv(
        install.mcp1_python(), "mcp1_server.py", port, ledger, stateless, only_version, name
    )
    with peer(argv, port=port) as proc:
        yield proc


@contextmanager
def fastmcp2(
    port: int | None = None,
    ledger: Path | None = None,
    stateless: bool = False,
    name: str = "fastmcp2-peer",
    only_version: str | None = None,
) -> Iterator[PeerProc]:
    """``servers/fastmcp2_server.py`` on FastMCP 2.x."""
    port = port or free_port()
    argv = _python_peer_argv(
        install.fastmcp2_python(),
        "fastmcp2_server.py",
        port,
        ledger,
        stateless,
        only_version,
        name,
    )
    with peer(argv, port=port) as proc:
        yield proc
