"""Start-up times beside their targets: the CLI, the client import, and each service's time from
start to listening. ``./run bench startup`` (``--quick``: fewer runs; ``--runs N``).

Each row is the median of N runs of a fresh process, then the fastest run and, for a command,
its median CPU time (user + system): on a busy machine those two tell the program's own cost
from the wait for a core. The verdict is on the median:

    fleet --help                    < 150 ms
    fleet --version                 < 150 ms   (when the CLI has it)
    fleet status ID                 < 300 ms   against a supervisor this bench starts
    import the client (FleetClient)            (no target: what a program pays for
                                               ``from supervisor.client import FleetClient``)
    floor: python + the CLI's libraries        (no target: typer, rich, httpx, asyncio alone)
    supervisor listening, memory:// < 2 s      start the process, poll its port
    supervisor listening, redis://  < 2 s      (the Redis at FLEET_TEST_REDIS_URL)
    worker NAME listening           < 2 s      each example worker

Our sources are compiled to bytecode first, as an install does (and ``PYTHONDONTWRITEBYTECODE``
is dropped for the bench's processes), and each command runs once more, uncounted: the rows are
what a user's every later call costs, not a first run's compiling.

The header says when, on which commit and under what load it ran: numbers from a busy
machine are slower than the program is.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
WORKERS = ("echo", "data", "text")
REDIS_URL = os.environ.get("FLEET_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
FLOOR = (
    "import sys; sys.modules['httpx._main'] = None; "
    "import typer, rich.console, rich.table, httpx, asyncio"
)
"""What ``fleet status`` imports besides our own modules (the CLI keeps httpx's own command line
out the same way): no such command can start faster. pydantic is not in it: a command that
prints the API's answers needs none (``tests/cli/test_startup_imports.py``)."""
LISTEN_DEADLINE_S = 60.0
"""A service that does not listen within this is a failed run (its row says so)."""


@dataclass
class Row:
    what: str
    target_s: float | None
    runs: list[float]
    note: str = ""
    cpu: list[float] = field(default_factory=list)
    """CPU seconds (user + system) of each run of a command: what the program itself cost,
    which a busy machine inflates less than the wall time."""

    @property
    def median(self) -> float | None:
        return statistics.median(self.runs) if self.runs else None

    @property
    def verdict(self) -> str:
        if self.median is None:
            return "n/a"
        if self.target_s is None:
            return "-"
        return "PASS" if self.median < self.target_s else "MISS"


def _env(**extra: str) -> dict[str, str]:
    """This environment without FLEET_* (a bench must not join a real fleet) and with bytecode
    written (as a user's Python does), plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FLEET_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    env.update(
        FASTMCP_CHECK_FOR_UPDATES="off",
        FASTMCP_SHOW_SERVER_BANNER="false",
        FLEET_LOG_FORMAT="json",
        FLEET_LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


def fleet_argv() -> list[str]:
    """The installed ``fleet`` script beside this interpreter (what a user runs), run by this
    interpreter; else the same entry point through ``-c``."""
    script = Path(sys.executable).parent / "fleet"
    if script.is_file():
        return [sys.executable, str(script)]
    return [sys.executable, "-c", "import sys; from supervisor.cli import app; sys.exit(app())"]


def time_command(argv: list[str], runs: int, ok: Callable[[int], bool] = lambda rc: rc == 0) -> Row:
    row = Row(" ".join(argv), None, [])
    subprocess.run(argv, env=_env(), cwd=ROOT, capture_output=True)  # warm-up: not counted
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(
            argv, env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        took = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if not ok(done.returncode):
            row.note = (
                f"exit {done.returncode}: {done.stderr.decode(errors='replace').strip()[-200:]}"
            )
            row.runs, row.cpu = [], []
            return row
        row.runs.append(took)
        row.cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return row


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def started(argv: list[str], port: int, env: dict[str, str]) -> Iterator[float]:
    """Start a service; yield the seconds from start until its port accepted a connection."""
    log = open(os.devnull, "wb")  # noqa: SIM115  # closed in finally, after the process
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = start + LISTEN_DEADLINE_S
        while not _listening(port):
            if proc.poll() is not None:
                raise RuntimeError(f"{' '.join(argv)} exited with {proc.returncode}")
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{' '.join(argv)} not listening after {LISTEN_DEADLINE_S}s")
            time.sleep(0.005)  # polling the port, not waiting for it: the deadline bounds it
        yield time.perf_counter() - start
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def supervisor_argv(port: int) -> list[str]:
    return [sys.executable, "-m", "supervisor.server", "--host", "127.0.0.1", "--port", str(port)]


def worker_argv(name: str, port: int) -> list[str]:
    return [sys.executable, "-m", f"workers.{name}", "--host", "127.0.0.1", "--port", str(port)]


def time_listening(what: str, argv_for: Callable[[int], list[str]], runs: int, **env: str) -> Row:
    row = Row(what, 2.0, [])
    for _ in range(runs):
        port = free_port()
        try:
            with started(argv_for(port), port, _env(**env)) as took:
                row.runs.append(took)
        except RuntimeError as exc:
            row.note = str(exc)
            return row
    return row


def redis_reachable() -> bool:
    try:
        import redis
    except ImportError:
        return False
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def drop_keys(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def status_row(runs: int) -> Row:
    """``fleet status ID`` against a running supervisor (memory://) with an echo worker."""
    worker_port, port = free_port(), free_port()
    worker_url = f"http://127.0.0.1:{worker_port}/mcp"
    with (
        started(worker_argv("echo", worker_port), worker_port, _env()),
        started(supervisor_argv(port), port, _env(FLEET_WORKERS=worker_url)),
    ):
        url = f"http://127.0.0.1:{port}"
        job_id = submitted_job(url)
        row = time_command([*fleet_argv(), "--url", url, "status", job_id], runs)
    row.what, row.target_s = "fleet status ID", 0.3
    return row


def submitted_job(url: str) -> str:
    """A job that ran: submitted (noop, ?wait) once the echo worker is known."""
    deadline = time.monotonic() + LISTEN_DEADLINE_S
    with httpx.Client(base_url=url, timeout=30) as http:
        while True:
            answer = http.post("/v1/jobs", params={"wait": 10}, json={"capability": "noop"})
            if answer.status_code in (200, 202):
                return str(answer.json()["id"])
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not submit a job: {answer.text[:200]}")
            time.sleep(0.1)  # the worker is being discovered; the deadline bounds the loop


def measure(runs: int, service_runs: int) -> list[Row]:
    # Our sources as bytecode, as after an install (pip compiles them): the services' first
    # start would otherwise count the compiling too.
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "shared", "supervisor", "workers"],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.DEVNULL,
        check=False,
    )
    fleet = fleet_argv()
    rows = []
    help_row = time_command([*fleet, "--help"], runs)
    help_row.what, help_row.target_s = "fleet --help", 0.15
    rows.append(help_row)
    version = time_command([*fleet, "--version"], runs)
    version.what, version.target_s = "fleet --version", 0.15
    if version.note:
        version.note = "not in this CLI"
    rows.append(version)
    rows.append(status_row(runs))
    # The package's names load on first use: what a program pays is for the client it takes.
    client_code = "from supervisor.client import FleetClient"
    client = time_command([sys.executable, "-c", client_code], runs)
    client.what = "import the client (FleetClient)"
    rows.append(client)
    floor = time_command([sys.executable, "-c", FLOOR], runs)
    floor.what = "floor: python + the CLI's libraries"
    rows.append(floor)
    rows.append(time_listening("supervisor listening, memory://", supervisor_argv, service_runs))
    if redis_reachable():
        prefix = f"bench-startup-{uuid.uuid4().hex[:8]}"
        try:
            rows.append(
                time_listening(
                    "supervisor listening, redis://",
                    supervisor_argv,
                    service_runs,
                    FLEET_REDIS_URL=REDIS_URL,
                    FLEET_KEY_PREFIX=prefix,
                )
            )
        finally:
            drop_keys(prefix)
    else:
        rows.append(Row("supervisor listening, redis://", 2.0, [], f"no Redis at {REDIS_URL}"))
    for name in WORKERS:
        argv = lambda port, name=name: worker_argv(name, port)  # noqa: E731
        rows.append(time_listening(f"worker {name} listening", argv, service_runs))
    return rows


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def report(rows: list[Row], runs: int, service_runs: int) -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [
        f"startup bench  {now}  commit {_commit()}  load average {load}  cpus {os.cpu_count()}",
        f"median of {runs} runs (commands), {service_runs} (services); then the fastest run and "
        "the median CPU time (user + system) of a command",
        "",
        f"{'what':<34}{'median':>10}{'fastest':>10}{'cpu':>10}{'target':>10}  verdict",
    ]
    for row in rows:
        fastest = min(row.runs) if row.runs else None
        cpu = statistics.median(row.cpu) if row.cpu else None
        line = (
            f"{row.what:<34}{_ms(row.median):>10}{_ms(fastest):>10}{_ms(cpu):>10}"
            f"{_ms(row.target_s) if row.target_s else '-':>10}  {row.verdict}"
        )
        if row.note:
            line += f"  ({row.note})"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./run bench startup", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 runs a command, 1 a service")
    parser.add_argument("--runs", type=int, help="runs of each command (default 10)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write every number here")
    args = parser.parse_args(argv)
    runs = args.runs or (2 if args.quick else 10)
    service_runs = max(1, runs // 2) if not args.quick else 1
    try:
        rows = measure(runs, service_runs)
    except KeyboardInterrupt:
        return 130
    print(report(rows, runs, service_runs))
    if args.json:
        data = [{**asdict(row), "median": row.median, "verdict": row.verdict} for row in rows]
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
