"""Every start-up problem of every service is one line on stderr and its own exit code.

Each service runs as a real process (``python -m supervisor.server``, ``python -m
workers.echo``, and the same through ``fleet``), and the whole of its stderr is compared: one
line, no traceback. The codes are :class:`shared.startup.ExitCode`. A store that cannot be
reached is no exit: the supervisor starts, says why in ``/readyz``, logs one warning however
long the outage lasts, and one ``store.back`` when Redis answers.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, closing, contextmanager
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from shared.serving import free_port, loopback_socket, serving
from shared.startup import ExitCode, StartupError
from tests.helpers import wait_until_sync
from tests.processes import own_redis, process_env, stop

ROOT = Path(__file__).resolve().parents[2]
SUPERVISOR = [sys.executable, "-m", "supervisor.server"]
WORKER = [sys.executable, "-m", "workers.echo"]
FLEET_SUPERVISOR = [sys.executable, "-m", "supervisor", "supervisor"]
FLEET_WORKER = [sys.executable, "-m", "supervisor", "worker", "echo"]


def start(argv: list[str], **env: str) -> tuple[int, str]:
    """Run a service that must refuse to start: its exit code and its whole stderr."""
    done = subprocess.run(
        argv,
        cwd=ROOT,
        env=process_env(FLEET_LOG_FORMAT="console", **env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stderr


def one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@contextmanager
def busy_port() -> Iterator[int]:
    with closing(socket.socket()) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield int(taken.getsockname()[1])


@pytest.mark.parametrize(
    ("argv", "prog"),
    [
        (SUPERVISOR, "python -m supervisor.server"),
        (FLEET_SUPERVISOR, "fleet supervisor"),
        (WORKER, "python -m workers.echo"),
        (FLEET_WORKER, "fleet worker echo"),  # the command typed, not the one it runs
    ],
)
def test_a_busy_port_is_one_line_and_exit_3(argv: list[str], prog: str) -> None:
    with busy_port() as port:
        code, err = start([*argv, "--port", str(port)])
    assert code == ExitCode.CANNOT_BIND
    assert one_line(err) == (
        f"{prog}: port {port} on 127.0.0.1 is already in use: stop the other process or pass "
        "--port (FLEET_PORT) with a free port"
    )


@pytest.mark.parametrize("argv", [SUPERVISOR, WORKER])
def test_an_address_not_of_this_machine_is_exit_3(argv: list[str]) -> None:
    code, err = start([*argv, "--host", "192.0.2.1", "--port", "0", "--insecure"])
    assert code == ExitCode.CANNOT_BIND
    assert "192.0.2.1 is not an address of this machine" in one_line(err)


@pytest.mark.parametrize(
    ("argv", "flags", "env", "says"),
    [
        (SUPERVISOR, ["--redis-url", "foo://x"], {},
         "argument --redis-url: 'foo://x' is not a store URL: use memory://, "
         "redis://host:port/db or redis+cluster://host:port,host:port"),
        (SUPERVISOR, [], {"FLEET_REDIS_URL": "redis://:pw@127.0.0.1:port/0"},
         "FLEET_REDIS_URL: 'redis://***@127.0.0.1:port/0' has a port that is not a number"),
        (WORKER, ["--redis-url", "foo://x"], {}, "argument --redis-url: 'foo://x' is not"),
        (SUPERVISOR, ["--redis-url", "redis+cluster://"], {}, "names no host:port nodes"),
        (SUPERVISOR, [], {"FLEET_WORKERS": "echo=http://127.0.0.1:8701/mcp,localhost:8702"},
         "FLEET_WORKERS: entry 2 ('localhost:8702') is not [service=]URL with an http:// or "
         "https:// URL"),
        (SUPERVISOR, ["--port", "70000"], {}, "argument --port: Input should be less than"),
        (WORKER, ["--bogus"], {}, "unrecognized arguments: --bogus"),
    ],
)  # fmt: skip
def test_a_bad_setting_or_url_is_one_line_and_exit_2(
    argv: list[str], flags: list[str], env: dict[str, str], says: str
) -> None:
    code, err = start([*argv, "--port", "0", *flags], **env)
    assert code == ExitCode.USAGE
    line = one_line(err)
    assert says in line and line.endswith("(see --help)"), line
    assert "pw" not in line  # a password in a URL is never echoed


@pytest.mark.parametrize(
    ("argv", "flags", "env", "says"),
    [
        (SUPERVISOR, [], {"FLEET_API_TOKENS": "t1:jobs:rede"},
         "FLEET_API_TOKENS: API token entry 1 (token-1): scopes must be"),
        (SUPERVISOR, [], {"FLEET_JWKS_URL": "https://issuer/jwks"},
         "FLEET_JWKS_URL and FLEET_JWT_ISSUER go together"),
        (SUPERVISOR, [], {"FLEET_REGISTRATION_SECRET": "short"},
         "FLEET_REGISTRATION_SECRET: String should have at least 16 characters"),
        (SUPERVISOR, ["--host", "0.0.0.0"], {}, "refusing to bind 0.0.0.0:0 without API tokens"),
        (FLEET_SUPERVISOR, ["--host", "0.0.0.0"], {}, "fleet supervisor: refusing to bind"),
        (WORKER, ["--host", "0.0.0.0"], {}, "refusing to bind 0.0.0.0:0 without a worker token"),
        (WORKER, [], {"FLEET_REGISTRATION_SECRET": "short"},
         "FLEET_REGISTRATION_SECRET: String should have at least 16 characters"),
    ],
)  # fmt: skip
def test_bad_token_settings_are_one_line_and_exit_4(
    argv: list[str], flags: list[str], env: dict[str, str], says: str
) -> None:
    code, err = start([*argv, "--port", "0", *flags], **env)
    assert code == ExitCode.AUTH_CONFIG
    assert says in one_line(err)


def test_help_lists_the_exit_codes() -> None:
    for argv in (SUPERVISOR, WORKER):
        out = subprocess.run(
            [*argv, "--help"], cwd=ROOT, env=process_env(), capture_output=True, text=True
        ).stdout
        flat = " ".join(out.split())
        assert "Exit codes: 0 stopped cleanly" in flat
        assert "3 cannot bind (port in use" in flat and "4 bad token settings" in flat


def _events(path: Path) -> list[dict[str, object]]:
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            out.append({"event": "not json", "line": line})
    return out


def test_unreachable_redis_is_one_warning_a_clear_readyz_and_one_store_back(
    tmp_path: Path,
) -> None:
    redis_port, port = free_port(), free_port()
    log = tmp_path / "supervisor.log"
    url = f"http://127.0.0.1:{port}"
    env = process_env(FLEET_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0", FLEET_LOG_FORMAT="json")
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*SUPERVISOR, "--port", str(port)], cwd=ROOT, env=env, stdout=out, stderr=out
        )
    try:

        def readyz() -> httpx.Response | None:
            assert proc.poll() is None, log.read_text()
            try:
                return httpx.get(url + "/readyz", timeout=2)
            except httpx.HTTPError:
                return None

        wait_until_sync(
            lambda: readyz() is not None, timeout=30, message="the supervisor to listen"
        )
        assert httpx.get(url + "/healthz", timeout=2).status_code == 200  # alive, not ready

        def retried(times: int) -> dict[str, object] | None:
            r = readyz()
            if r is None or r.status_code != 503:
                return None
            outage = r.json().get("store_outage") or {}
            return r.json() if int(outage.get("retries", 0)) >= times else None

        body = wait_until_sync(lambda: retried(12), timeout=60, message="a dozen failed tries")
        assert body["status"] == "unavailable" and body["store"] == "unreachable"
        outage = body["store_outage"]
        assert isinstance(outage, dict)
        assert f"127.0.0.1:{redis_port}" in str(outage["reason"])
        assert str(outage["since"]).endswith("Z")
        warnings = [e for e in _events(log) if e.get("level") in ("warning", "error")]
        assert [e["event"] for e in warnings] == ["store.unreachable"], warnings
        assert not [e for e in _events(log) if e["event"] == "not json"]

        with own_redis(redis_port):
            wait_until_sync(
                lambda: (r := readyz()) is not None and r.status_code == 200,
                timeout=60,
                message="/readyz to turn 200 once Redis answers",
            )
            ready = readyz()
            assert ready is not None
            assert ready.json() == {"status": "ready", "store": "ok", "loops": {}}
            back = [e for e in _events(log) if e["event"] == "store.back"]
            assert len(back) == 1 and back[0]["level"] == "info", back
            warnings = [e for e in _events(log) if e.get("level") in ("warning", "error")]
            assert [e["event"] for e in warnings] == ["store.unreachable"], warnings
    finally:
        stop(proc)


def test_a_worker_whose_redis_is_out_warns_once_and_says_when_it_registers_again(
    tmp_path: Path,
) -> None:
    """The worker keeps serving; its heartbeat retries every beat, logged at DEBUG only."""
    redis_port, port = free_port(), free_port()
    log = tmp_path / "worker.log"
    env = process_env(
        FLEET_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        FLEET_ADVERTISE_URL=f"http://127.0.0.1:{port}/mcp",
        FLEET_HEARTBEAT_S="0.2",
        FLEET_LOG_LEVEL="DEBUG",
    )
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*WORKER, "--port", str(port)], cwd=ROOT, env=env, stdout=out, stderr=out
        )
    try:

        def failed(level: str) -> list[dict[str, object]]:
            assert proc.poll() is None, log.read_text()
            return [
                e for e in _events(log)
                if e["event"] == "worker.registration_failed" and e["level"] == level
            ]  # fmt: skip

        wait_until_sync(lambda: len(failed("debug")) >= 5, timeout=60, message="5 failed beats")
        assert len(failed("warning")) == 1
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
        assert health["components"]["registration"]["status"] == "failing"
        with own_redis(redis_port):

            def restored() -> bool:
                return any(e["event"] == "worker.registration_restored" for e in _events(log))

            wait_until_sync(restored, timeout=60, message="the registration to be restored")
            assert len(failed("warning")) == 1
    finally:
        stop(proc)


async def test_a_lifespan_that_fails_raises_out_of_serving_and_uvicorn_logs_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What a service's entrypoint turns into its one line (exit 1 unless a StartupError)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        raise StartupError("the store URL names no store", ExitCode.USAGE)
        yield

    with pytest.raises(StartupError, match="names no store"):
        async with serving(Starlette(lifespan=lifespan), sockets=[loopback_socket()]):
            raise AssertionError("it started")
    assert not [r for r in caplog.records if r.name.startswith("uvicorn")], caplog.text


def test_a_store_that_never_answers_neither_holds_the_start_nor_hangs_readyz() -> None:
    """A port that accepts connections and never replies (a hung Redis, a wrong service)."""
    port = free_port()
    with closing(socket.socket()) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        store = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        proc = subprocess.Popen(
            [*SUPERVISOR, "--port", str(port), "--redis-url", store],
            cwd=ROOT, env=process_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:

            def answered() -> httpx.Response | None:
                assert proc.poll() is None
                try:  # /readyz waits 2 s for the store at most: 10 s is ample
                    return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
                except httpx.ConnectError:
                    return None

            ready = wait_until_sync(answered, timeout=60, message="the supervisor to listen")
            assert ready.status_code == 503
            assert "no answer from the store" in ready.json()["store_outage"]["reason"]
        finally:
            stop(proc, grace_s=30)


@pytest.mark.parametrize(
    ("flags", "code", "starts"),
    [
        (["--bogus"], ExitCode.USAGE, "fleet worker echo: error: unrecognized arguments: --bogus"),
        (["--host", "0.0.0.0"], ExitCode.AUTH_CONFIG, "fleet worker echo: refusing to bind"),
        (["--redis-url", "foo://x"], ExitCode.USAGE, "fleet worker echo: error: argument"),
    ],
)
def test_fleet_worker_names_the_command_typed(
    flags: list[str], code: ExitCode, starts: str
) -> None:
    """What the user typed is what the error names, not ``python -m workers.echo``."""
    got, err = start([*FLEET_WORKER, "--port", "0", *flags])
    assert got == code
    assert one_line(err).startswith(starts), err


def test_fleet_worker_help_is_the_workers_own_under_the_name_typed() -> None:
    done = subprocess.run(
        [*FLEET_WORKER, "--help"], cwd=ROOT, env=process_env(), capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: fleet worker echo ")
    assert "--max-concurrency" in done.stdout and "python -m workers" not in done.stdout
