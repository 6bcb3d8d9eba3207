"""``compose.yaml``, the Dockerfile and the collector config, checked without a Docker engine.

The structure is checked as data; then each fleet service's real command and environment run
on this host — ``redis`` becomes the test Redis under a private key prefix, container ports
become free ports, the container address becomes 127.0.0.1 — and must pass the service's own
healthcheck probe, self-register, and run a job.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
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
from workers.kit.hosts import allowed_hosts

ROOT = Path(__file__).resolve().parents[2]
FLEET_SERVICES = ("supervisor", "worker-data", "worker-text")
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
    for name in ("worker-data", "worker-text"):  # scalable: no fixed host port or name
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
    for name in ("worker-data", "worker-text"):
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


def test_dockerfile() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.startswith("#") and "\nFROM python:3.11-slim\n" in text
    assert re.search(r"^RUN pip install \.", text, re.M)
    user = re.search(r"^USER (\S+)", text, re.M)
    assert user and user.group(1) not in ("root", "0")
    assert "\nHEALTHCHECK " in text and "/healthz" in text
    assert text.rstrip().endswith('CMD ["fleet", "supervisor", "--host", "0.0.0.0"]')
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests"} <= set(ignored)
    for copied in re.findall(r"^COPY (\S+)", text, re.M):
        assert (ROOT / copied).exists(), copied


def _compose_cli() -> list[str] | None:
    for argv in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(argv[0]) is None:
            continue
        probe = subprocess.run([*argv, "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return argv
    return None


def test_docker_compose_config_accepts_it() -> None:
    argv = _compose_cli()
    if argv is None:
        pytest.skip("no docker compose here")
    for profile in ([], ["--profile", "tracing"]):
        done = subprocess.run(
            [*argv, "-f", str(ROOT / "compose.yaml"), *profile, "config", "--quiet"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr


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

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        assert self.proc.stderr is not None
        self.proc.stderr.close()


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
        for name in ("worker-data", "worker-text", "supervisor"):  # workers deregister first
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
def test_services_start_pass_healthchecks_and_self_register(
    host_fleet: dict[str, HostService],
) -> None:
    for service in host_fleet.values():
        wait_until_sync(service.healthy, timeout=40, interval=0.2, message=f"{service.name}")
    url = f"http://127.0.0.1:{host_fleet['supervisor'].port}"
    expected = {
        f"http://127.0.0.1:{host_fleet[name].port}/mcp" for name in ("worker-data", "worker-text")
    }

    def registered() -> bool:
        found = httpx.get(url + "/v1/workers", timeout=5).json()["workers"]
        urls = {w["url"] for w in found if w["healthy"] and w["source"] == "registered"}
        return urls == expected

    wait_until_sync(registered, timeout=30, interval=0.2, message="workers self-registered")
    for name in ("worker-data", "worker-text"):  # called by service name, as inside compose
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
