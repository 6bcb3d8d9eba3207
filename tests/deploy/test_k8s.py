"""``deploy/k8s``, rendered offline and checked against the Kubernetes schemas and the code.

There is no kubectl and no cluster here: :mod:`tests.deploy.kube` renders each overlay with
the part of kustomize it uses. Every object is validated against the Kubernetes OpenAPI
schemas (``kubernetes-validate``, strict: an unknown field fails), KEDA's ScaledObject against
:mod:`tests.deploy.keda`. The other tests check that the manifests and the code name the same
things: each container's environment and flags go through its service's own settings parser
and bind check, probes hit routes the apps serve, the scaler reads the queue key and group the
dispatcher uses, the network policies admit exactly who needs each port.
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import os
import re
from collections import Counter
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import httpx
import jsonschema
import pytest
import yaml
from starlette.routing import Match
from starlette.types import ASGIApp

from shared.hosts import allowed_hosts
from shared.protocol import CAPABILITIES_TOOL
from shared.settings import SupervisorSettings, WorkerSettings
from supervisor import server as supervisor_server
from supervisor.app import create_app
from tests.deploy.keda import SCALED_OBJECT_SCHEMA, TRIGGER_AUTHENTICATION_SCHEMA
from tests.deploy.kube import (
    Fleet,
    Manifest,
    UnsupportedKustomization,
    build,
    container_env,
    container_port,
    ingress,
    name,
    pod_spec,
)
from tests.helpers import wait_until
from tests.supervisor.conftest import start_fleet
from workers.kit import MCP_PATH
from workers.kit import parse_settings as parse_worker_settings
from workers.kit.server import check_worker_bind

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = sorted(p.parent.name for p in (K8S / "overlays").glob("*/kustomization.yaml"))
OLDEST_KUBERNETES = "1.29"
"""Validated against this minor and the newest the schemas know: nothing here needs a new API."""
POD_IP = "10.244.3.7"
"""The downward API's ``status.podIP`` of the pod a container is imagined in."""
EXAMPLE_WORKERS = sorted(
    f"workers.{p.name}" for p in (ROOT / "workers").iterdir() if (p / "__main__.py").is_file()
)

Settings = SupervisorSettings | WorkerSettings


@pytest.fixture(scope="module", params=OVERLAYS)
def fleet(request: pytest.FixtureRequest) -> Fleet:
    overlay = str(request.param)
    return Fleet(overlay, build(K8S / "overlays" / overlay))


# -- each service's own settings --------------------------------------------------------------


def image_env() -> dict[str, str]:
    """The Dockerfile's ``ENV``: every container starts with it."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    env: dict[str, str] = {}
    for line in re.findall(r"^ENV (.+)$", text, re.M):
        env.update(pair.split("=", 1) for pair in line.split())
    return env


def settings_of(
    container: dict[str, Any], module: str, *, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """The settings the container's service builds at start, by its own flag parser, from the
    image's and the manifest's environment; its bind check must pass."""
    with monkeypatch.context() as patch:
        for key in [k for k in os.environ if k.startswith("FLEET_")]:
            patch.delenv(key)
        given = {**image_env(), **container_env(container, namespace=namespace, pod_ip=POD_IP)}
        for key, value in given.items():
            patch.setenv(key, value)
        args = [str(arg) for arg in container.get("args", [])]
        settings: Settings
        if module == "supervisor.server":
            settings = supervisor_server.parse_settings(args)
            supervisor_server.check_bind(settings)
        else:
            assert module in EXAMPLE_WORKERS, f"{module} is not an example worker"
            settings = parse_worker_settings(args, prog=f"python -m {module}")
            check_worker_bind(settings)
    return settings


def env_names(cls: type[Settings]) -> set[str]:
    prefix = str(cls.model_config.get("env_prefix") or "")
    return {(prefix + field).upper() for field in cls.model_fields}


def serves(app: ASGIApp, path: str) -> bool:
    """Whether a GET of ``path`` reaches a route of the app (matched, not run)."""
    scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "headers": []}
    return any(route.matches(scope)[0] is Match.FULL for route in getattr(app, "routes", []))


@pytest.fixture(scope="module")
def supervisor_app() -> ASGIApp:
    return create_app(SupervisorSettings(redis_url="memory://"))


# -- rendering and schemas --------------------------------------------------------------------


def _kubernetes_validate() -> ModuleType:
    try:
        import kubernetes_validate
    except ImportError as exc:
        pytest.fail(
            f"kubernetes-validate is needed to check deploy/k8s against the Kubernetes schemas "
            f"(it is in the dev extra: pip install -e '.[dev]'): {exc}"
        )
    return kubernetes_validate


def schema_errors(obj: Manifest, kubernetes_validate: ModuleType) -> list[str]:
    """Why the object does not match its schema, for each version checked; empty when it does."""
    keda = {
        "ScaledObject": SCALED_OBJECT_SCHEMA,
        "TriggerAuthentication": TRIGGER_AUTHENTICATION_SCHEMA,
    }
    if obj["kind"] in keda:
        validator = jsonschema.Draft202012Validator(keda[obj["kind"]])
        return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(obj)]
    errors = []
    for version in (OLDEST_KUBERNETES, kubernetes_validate.latest_version()):
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{version} {list(exc.absolute_path)}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{version}: {exc.message}")
    return errors


def test_every_overlay_renders_into_one_namespace(fleet: Fleet) -> None:
    assert {"dev", "hpa"} <= set(OVERLAYS)
    kinds = Counter(o["kind"] for o in fleet.objects)
    assert kinds["Deployment"] == 1 + len(EXAMPLE_WORKERS) and kinds["StatefulSet"] == 1
    (namespace,) = fleet.of("Namespace")
    assert name(namespace) == fleet.namespace  # the overlay creates the namespace it fills
    for obj in fleet.objects:
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "mcp-fleet", name(obj)


def test_manifests_match_the_kubernetes_schemas(fleet: Fleet) -> None:
    kubernetes_validate = _kubernetes_validate()
    failures = {
        f"{o['kind']}/{name(o)}": errors
        for o in fleet.objects
        if (errors := schema_errors(o, kubernetes_validate))
    }
    assert not failures, failures


@pytest.mark.parametrize(
    ("kind", "spoil"),
    [
        ("Deployment", lambda o: o["spec"]["template"]["spec"].update(securityContxt={})),
        ("Service", lambda o: o["spec"]["ports"][0].update(port="8700")),
        ("ScaledObject", lambda o: o["spec"]["triggers"][0]["metadata"].update(targetValue=8)),
        ("ScaledObject", lambda o: o["spec"]["triggers"][-1].update(type="redis-streams")),
        ("ScaledObject", lambda o: o["spec"]["triggers"][1]["metadata"].pop("valueLocation")),
        ("ScaledObject", lambda o: o["spec"]["triggers"][0]["metadata"].update(valuLocation="x")),
        ("ScaledObject", lambda o: o["spec"].update(maxReplicas=3)),
        ("TriggerAuthentication", lambda o: o["spec"]["secretTargetRef"][0].pop("key")),
        ("TriggerAuthentication", lambda o: o["spec"].update(secretTargetRefs=[])),
    ],
)
def test_the_schemas_refuse_a_spoiled_manifest(
    kind: str, spoil: Callable[[Manifest], object]
) -> None:
    """The validation above is not vacuous: a typo or a wrong type fails it."""
    objects = build(K8S / "overlays" / "dev")
    obj = copy.deepcopy(next(o for o in objects if o["kind"] == kind))
    spoil(obj)
    assert schema_errors(obj, _kubernetes_validate())


def test_the_renderer_refuses_what_it_does_not_render(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    kustomization = tmp_path / "kustomization.yaml"
    kustomization.write_text("resources: [a.yaml]\npatches: [{path: p.yaml}]\n")
    with pytest.raises(UnsupportedKustomization, match="patches"):
        build(tmp_path)
    kustomization.write_text(
        "resources: [a.yaml]\nlabels: [{pairs: {x: y}, includeSelectors: true}]\n"
    )
    with pytest.raises(UnsupportedKustomization, match="labels"):
        build(tmp_path)
    kustomization.write_text("resources: [a.yaml, a.yaml]\n")
    with pytest.raises(UnsupportedKustomization, match="more than once"):
        build(tmp_path)
    kustomization.write_text("namespace: n\nresources: [a.yaml]\n")
    assert build(tmp_path)[0]["metadata"] == {"name": "a", "namespace": "n"}


# -- the manifests against the code -----------------------------------------------------------


def test_every_example_worker_has_a_deployment(fleet: Fleet) -> None:
    modules = Counter(module for _, _, module in fleet.fleet_containers())
    assert modules == Counter(["supervisor.server", *EXAMPLE_WORKERS])
    for workload, _, module in fleet.fleet_containers():
        assert workload["kind"] == "Deployment", module


def test_fleet_variables_are_settings_of_the_service(fleet: Fleet) -> None:
    """pydantic-settings ignores an unknown FLEET_* (extra="ignore"): a typo would pass silently."""
    for workload, container, module in fleet.fleet_containers():
        cls = SupervisorSettings if module == "supervisor.server" else WorkerSettings
        names = {var["name"] for var in container["env"] if var["name"].startswith("FLEET_")}
        assert names, name(workload)
        assert names <= env_names(cls), (name(workload), sorted(names - env_names(cls)))


def test_each_service_starts_from_its_manifest(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Flags and environment through the service's own parser: valid, the bind check passes,
    the port is the container's, its Service's names are allowed Hosts."""
    for workload, container, module in fleet.fleet_containers():
        settings = settings_of(
            container, module, namespace=fleet.namespace, monkeypatch=monkeypatch
        )
        assert settings.host == "0.0.0.0", name(workload)
        (declared,) = container["ports"]
        assert settings.port == declared["containerPort"], name(workload)
        service = fleet.service_for(workload)
        advertise = settings.advertise_url if isinstance(settings, WorkerSettings) else None
        hosts = allowed_hosts(settings.allowed_hosts, advertise_url=advertise, bind_host="0.0.0.0")
        svc = f"{name(service)}.{fleet.namespace}.svc"
        assert {name(service), svc, f"{svc}.cluster.local"} <= set(hosts), name(workload)
        assert "*" not in hosts


def test_workers_register_their_pod_address(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    """Self-registration is on (Redis and an advertised URL), the URL is this pod's MCP
    endpoint, and the credentials are the ones the supervisor presents."""
    settings = {
        module: settings_of(container, module, namespace=fleet.namespace, monkeypatch=monkeypatch)
        for _, container, module in fleet.fleet_containers()
    }
    supervisor = settings.pop("supervisor.server")
    assert isinstance(supervisor, SupervisorSettings)
    assert supervisor.registration_secret and supervisor.worker_token and supervisor.api_tokens
    for module, worker in settings.items():
        assert isinstance(worker, WorkerSettings)
        assert worker.redis_url == supervisor.redis_url, module
        assert worker.key_prefix == supervisor.key_prefix, module
        assert worker.advertise_url, module
        url = urlsplit(worker.advertise_url)
        assert (url.hostname, url.port, url.path) == (POD_IP, worker.port, MCP_PATH), module
        app = importlib.import_module(module).build(worker).http_app()
        assert serves(app, url.path), module
        # the same Secret keys on both sides: the token presented is the token required
        assert worker.worker_token == supervisor.worker_token, module
        assert worker.registration_secret == supervisor.registration_secret, module


def test_probes_hit_routes_the_apps_serve(fleet: Fleet, supervisor_app: ASGIApp) -> None:
    assert not serves(supervisor_app, "/no-such-probe")  # the matcher can say no
    for workload, container, module in fleet.fleet_containers():
        if module == "supervisor.server":
            app = supervisor_app
            expected = {"readinessProbe": "/readyz", "livenessProbe": "/healthz"}
        else:
            app = importlib.import_module(module).build(WorkerSettings()).http_app()
            expected = {"readinessProbe": "/health"}
        probes = {k: v for k, v in container.items() if k.endswith("Probe")}
        assert {"readinessProbe", "livenessProbe"} <= set(probes), name(workload)
        for kind, path in expected.items():
            assert probes[kind]["httpGet"]["path"] == path, (name(workload), kind)
        for kind, probe in probes.items():
            get = probe["httpGet"]
            assert serves(app, get["path"]), (name(workload), kind, get["path"])
            assert container_port(container, get["port"]) == container["ports"][0]["containerPort"]


def test_services_reach_the_ports_the_pods_listen_on(fleet: Fleet) -> None:
    for service in fleet.of("Service"):
        (workload,) = fleet.behind(service)
        (container,) = pod_spec(workload)["containers"]
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert container_port(container, target) == port["port"], name(service)
    for workload in fleet.workloads:
        fleet.service_for(workload)  # every workload has its own Service


def redis_service(fleet: Fleet) -> Manifest:
    (redis,) = fleet.of("StatefulSet")
    return fleet.service_for(redis)


def test_the_fleet_reaches_redis_through_its_service(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = redis_service(fleet)
    for workload, container, module in fleet.fleet_containers():
        settings = settings_of(
            container, module, namespace=fleet.namespace, monkeypatch=monkeypatch
        )
        assert settings.redis_url, name(workload)
        url = urlsplit(settings.redis_url)
        assert (url.scheme, url.hostname) == ("redis", name(service)), name(workload)
        assert url.port == service["spec"]["ports"][0]["port"], name(workload)


def worker_capabilities(module: str) -> list[str]:
    """The capabilities an example worker serves, from its own tool list."""
    worker = importlib.import_module(module).build()
    tools = asyncio.run(worker.server.list_tools())
    return sorted(t.name for t in tools if t.name != CAPABILITIES_TOOL)


def test_keda_scales_each_worker_on_its_own_capabilities_backlog(
    fleet: Fleet, supervisor_app: ASGIApp
) -> None:
    scaled = fleet.of("ScaledObject")
    if fleet.overlay == "hpa":
        assert not scaled and not fleet.of("TriggerAuthentication")
        return
    assert scaled, f"{fleet.overlay} has no ScaledObject"
    service = fleet.named("Service", "fleet-supervisor")
    base = f"http://{name(service)}.{fleet.namespace}.svc:{service['spec']['ports'][0]['port']}"
    (auth,) = fleet.of("TriggerAuthentication")
    assert [r["parameter"] for r in auth["spec"]["secretTargetRef"]] == ["token"]
    modules = {name(w): m for w, _, m in fleet.fleet_containers() if m in EXAMPLE_WORKERS}
    for obj in scaled:
        module = modules[obj["spec"]["scaleTargetRef"]["name"]]
        triggers = obj["spec"]["triggers"]
        located = [t["metadata"]["valueLocation"] for t in triggers]
        # one trigger per capability the worker serves: its own backlog, nothing else's
        assert located == [f"backlog.{c}" for c in worker_capabilities(module)], name(obj)
        for trigger in triggers:
            url = urlsplit(trigger["metadata"]["url"])
            # read from the KEDA operator's namespace: the Service's name needs the fleet's
            assert f"{url.scheme}://{url.netloc}" == base, name(obj)
            assert serves(supervisor_app, url.path), url.path
            assert trigger["metadata"]["authMode"] == "bearer", name(obj)
            assert trigger["authenticationRef"]["name"] == name(auth), name(obj)
            assert trigger["metricType"] == "AverageValue", name(obj)
        # a capability with no worker is refused (UNKNOWN_CAPABILITY): zero never wakes
        assert obj["spec"]["minReplicaCount"] >= 1, name(obj)


async def test_the_backlog_the_triggers_read_is_the_supervisors_answer() -> None:
    """What KEDA reads: `valueLocation` on GET /v1/queues of a real supervisor with a
    jobs:read token (the scope the README's KEDA token gets) is each capability's backlog."""
    async with AsyncExitStack() as stack:
        fleet = await start_fleet(
            stack, workers=1, api_tokens="ops=o-tok:admin,keda=k-tok:jobs:read"
        )
        held = [await fleet.submit("hold") for _ in range(3)]
        keda = await stack.enter_async_context(
            httpx.AsyncClient(base_url=fleet.url, headers={"Authorization": "Bearer k-tok"})
        )

        async def backlog() -> dict[str, Any] | None:
            body: dict[str, Any] = (await keda.get("/v1/queues")).json()
            return body if body["backlog"].get("hold") == 3 else None

        body = await wait_until(backlog, timeout=20, message="3 hold jobs in the backlog")
        value: Any = body
        for part in ["backlog", "hold"]:  # KEDA's GJSON path, dotted
            value = value[part]
        assert value == 3 and body["backlog"]["noop"] == 0
        for seen in fleet.seen.values():
            seen.release.set()
        for job in held:
            assert (await fleet.wait(job["id"]))["status"] == "succeeded"


def test_each_worker_has_exactly_one_autoscaler(fleet: Fleet) -> None:
    workers = {name(w) for w, _, m in fleet.fleet_containers() if m in EXAMPLE_WORKERS}
    targets: Counter[str] = Counter()
    for obj in [*fleet.of("ScaledObject"), *fleet.of("HorizontalPodAutoscaler")]:
        ref = obj["spec"]["scaleTargetRef"]
        assert ref.get("kind", "Deployment") == "Deployment", name(obj)
        targets[ref["name"]] += 1
    assert targets == Counter(workers)  # one each, KEDA or HPA, never both; no supervisor
    for hpa in fleet.of("HorizontalPodAutoscaler"):
        deployment = fleet.named("Deployment", hpa["spec"]["scaleTargetRef"]["name"])
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
        for container in pod_spec(deployment)["containers"]:  # utilization is of the requests
            assert container["resources"]["requests"]["cpu"], name(hpa)
    for deployment_name in workers:  # an apply must not reset what the autoscaler set
        assert "replicas" not in fleet.named("Deployment", deployment_name)["spec"]


def test_supervisor_survives_a_drain(fleet: Fleet) -> None:
    supervisors = [w for w, _, m in fleet.fleet_containers() if m == "supervisor.server"]
    (supervisor,) = supervisors
    (budget,) = fleet.of("PodDisruptionBudget")
    assert fleet.selected(budget["spec"]["selector"]) == [supervisor]
    # at least one stays, and a drain can still evict the other
    assert 1 <= budget["spec"]["minAvailable"] < supervisor["spec"]["replicas"]


def test_network_policies_admit_only_who_needs_each_port(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    supervisors = {name(w) for w, _, m in fleet.fleet_containers() if m == "supervisor.server"}
    redis_users = set()
    for workload, container, module in fleet.fleet_containers():
        settings = settings_of(
            container, module, namespace=fleet.namespace, monkeypatch=monkeypatch
        )
        if settings.redis_url:
            redis_users.add(name(workload))
    (redis,) = fleet.of("StatefulSet")
    for workload in fleet.workloads:
        allowed = ingress(fleet, workload)
        (container,) = pod_spec(workload)["containers"]
        (port,) = [p["containerPort"] for p in container["ports"]]
        assert set(allowed) == {port}, name(workload)  # isolated, and nothing else is open
        if name(workload) in supervisors:
            assert allowed[port] == {"*"}  # the API's port: it authenticates callers itself
        elif workload is redis:  # fleet pods only: KEDA reads the API, not Redis
            assert allowed[port] == redis_users
        else:
            assert allowed[port] == supervisors, name(workload)


def test_pods_run_unprivileged(fleet: Fleet) -> None:
    uid = re.search(r"useradd .*--uid (\d+)", (ROOT / "Dockerfile").read_text())
    assert uid, "the Dockerfile's user"
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    fleet_workloads = {name(w) for w, _, _ in fleet.fleet_containers()}
    for workload in fleet.workloads:
        spec = pod_spec(workload)
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name(workload)
        user = pod["runAsUser"]
        assert type(user) is int and user > 0, name(workload)
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", name(workload)
        assert spec["automountServiceAccountToken"] is False, name(workload)
        if name(workload) in fleet_workloads:
            assert user == int(uid.group(1)), name(workload)  # the image's own user
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name(workload)
            assert context["capabilities"] == {"drop": ["ALL"]}, name(workload)
            assert context["readOnlyRootFilesystem"] is True, name(workload)
            assert "runAsUser" not in context and "privileged" not in context, name(workload)
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), name(workload)
            if name(workload) in fleet_workloads:
                assert container["image"] == compose["x-fleet"]["image"], name(workload)


def test_service_links_cannot_reach_the_settings(fleet: Fleet) -> None:
    """Kubernetes injects ``<SERVICE>_SERVICE_HOST``, ``<SERVICE>_PORT``… for each Service in
    the namespace; for ``fleet-*`` Services they carry the settings' prefix."""
    settings = env_names(SupervisorSettings) | env_names(WorkerSettings)
    for workload, _, _ in fleet.fleet_containers():
        assert pod_spec(workload)["enableServiceLinks"] is False, name(workload)
    for service in fleet.of("Service"):
        base = name(service).upper().replace("-", "_")
        injected = {f"{base}_SERVICE_HOST", f"{base}_SERVICE_PORT", f"{base}_PORT"}
        for port in service["spec"]["ports"]:
            injected.add(f"{base}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}")
        assert not injected & settings, name(service)


def test_the_secrets_used_are_the_ones_the_readme_creates(fleet: Fleet) -> None:
    readme = re.sub(r"\\\n\s*", " ", (K8S / "README.md").read_text())
    created = {
        (secret, key)
        for secret, rest in re.findall(r"create secret generic (\S+)([^\n]*)", readme)
        for key in re.findall(r"--from-literal=([\w.-]+)=", rest)
    }
    used = {
        (ref["name"], ref["key"])
        for workload in fleet.workloads
        for container in pod_spec(workload)["containers"]
        for var in container.get("env", [])
        if (ref := var.get("valueFrom", {}).get("secretKeyRef"))
    }
    used |= {  # KEDA's (overlays/dev): the token of its triggers
        (ref["name"], ref["key"])
        for auth in fleet.of("TriggerAuthentication")
        for ref in auth["spec"]["secretTargetRef"]
    }
    assert used and used <= created
    # every Secret the README creates is used (the hpa overlay has no KEDA to read fleet-keda)
    assert created - used <= ({("fleet-keda", "token")} if fleet.overlay == "hpa" else set())
