"""Kubernetes manifests as data, for tests that have no kubectl and no cluster.

:func:`build` renders a kustomization with the part of kustomize ``deploy/k8s`` uses
(``resources``, ``namespace``, ``labels``) and refuses any other field, so a kustomization
that outgrows it fails loudly instead of rendering wrong. :class:`Fleet` holds one rendered
overlay with the look-ups the tests share: label selection as the API server does it, ports by
name or number, a container's environment as the kubelet builds it, who a NetworkPolicy admits.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "Fleet",
    "Manifest",
    "UnsupportedKustomization",
    "build",
    "container_env",
    "container_port",
    "ingress",
    "name",
    "placeholder",
    "pod_labels",
    "pod_spec",
    "selects",
]

Manifest = dict[str, Any]


# -- the kustomize subset ---------------------------------------------------------------------


class UnsupportedKustomization(AssertionError):
    """A kustomization uses what :func:`build` does not render: extend it, or simplify that."""


_KUSTOMIZATION_FIELDS = frozenset({"apiVersion", "kind", "resources", "namespace", "labels"})
_LABEL_FIELDS = frozenset({"pairs", "includeTemplates", "includeSelectors"})
_POD_TEMPLATE_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"})
_CLUSTER_SCOPED = frozenset({"Namespace"})


def build(directory: Path) -> list[Manifest]:
    """What ``kubectl kustomize directory`` renders, for the fields it accepts."""
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    beyond = set(spec) - _KUSTOMIZATION_FIELDS
    if beyond:
        raise UnsupportedKustomization(f"{directory}: {sorted(beyond)} is not rendered here")
    objects: list[Manifest] = []
    for entry in spec.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            objects += build(path)
        elif path.is_relative_to(directory.resolve()):
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
        else:  # kustomize's default load restrictor refuses it
            raise UnsupportedKustomization(f"{directory}: the file {entry} is outside it")
    for rule in spec.get("labels", []):
        if set(rule) - _LABEL_FIELDS or rule.get("includeSelectors"):
            raise UnsupportedKustomization(f"{directory}: labels {rule} is not rendered here")
        for obj in objects:
            obj["metadata"].setdefault("labels", {}).update(rule["pairs"])
            if rule.get("includeTemplates") and obj["kind"] in _POD_TEMPLATE_KINDS:
                template = obj["spec"]["template"]["metadata"]
                template.setdefault("labels", {}).update(rule["pairs"])
    if "namespace" in spec:
        for obj in objects:
            if obj["kind"] not in _CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = spec["namespace"]
    ids = Counter(
        (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects
    )
    twice = [key for key, count in ids.items() if count > 1]
    if twice:  # kustomize refuses two objects with one id
        raise UnsupportedKustomization(f"{directory}: {twice} defined more than once")
    return objects


# -- the rendered fleet -----------------------------------------------------------------------


@dataclass
class Fleet:
    """One rendered overlay, with the look-ups the tests share."""

    overlay: str
    objects: list[Manifest]

    def of(self, kind: str) -> list[Manifest]:
        return [o for o in self.objects if o["kind"] == kind]

    def named(self, kind: str, wanted: str) -> Manifest:
        found = [o for o in self.of(kind) if name(o) == wanted]
        assert len(found) == 1, f"{self.overlay}: no single {kind} {wanted}"
        return found[0]

    @property
    def namespace(self) -> str:
        (namespace,) = {o["metadata"].get("namespace") for o in self.objects} - {None}
        return str(namespace)

    @property
    def workloads(self) -> list[Manifest]:
        return [o for o in self.objects if o["kind"] in _POD_TEMPLATE_KINDS]

    def selected(self, selector: dict[str, Any]) -> list[Manifest]:
        """The workloads whose pods a label selector picks."""
        return [w for w in self.workloads if selects(selector, pod_labels(w))]

    def service_for(self, workload: Manifest) -> Manifest:
        found = [s for s in self.of("Service") if self.behind(s) == [workload]]
        assert len(found) == 1, f"{name(workload)}: not exactly one Service selects it alone"
        return found[0]

    def behind(self, service: Manifest) -> list[Manifest]:
        """The workloads a Service sends to (its selector is a bare label map)."""
        return self.selected({"matchLabels": service["spec"]["selector"]})

    def fleet_containers(self) -> Iterator[tuple[Manifest, dict[str, Any], str]]:
        """(workload, container, module) for each container running a fleet service."""
        for workload in self.workloads:
            for container in pod_spec(workload)["containers"]:
                command = container.get("command", [])
                if command[:2] == ["python", "-m"]:
                    yield workload, container, command[2]


def name(obj: Manifest) -> str:
    return str(obj["metadata"]["name"])


def pod_spec(workload: Manifest) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def pod_labels(workload: Manifest) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes LabelSelector: ``matchLabels`` and ``matchExpressions``; empty picks all."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, values = expression["key"], expression.get("values", [])
        present = key in labels
        ok = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[expression["operator"]]
        if not ok:
            return False
    return True


def container_port(container: dict[str, Any], port: int | str) -> int:
    """A port as a probe, Service or policy names it (number or name), as a number."""
    for entry in container.get("ports", []):
        if port in (entry["containerPort"], entry.get("name")):
            return int(entry["containerPort"])
    raise AssertionError(f"{container['name']} declares no port {port!r}")


# -- what a container is given ----------------------------------------------------------------


def placeholder(secret: str, key: str) -> str:
    """A Secret's value: one per (Secret, key), so equal values mean the same reference. It
    reads as one API token and is long enough for a registration secret."""
    return f"placeholder.{secret}.{key}.0123456789abcdef"


def container_env(container: dict[str, Any], *, namespace: str, pod_ip: str) -> dict[str, str]:
    """The container's environment as the kubelet builds it: values in order, ``$(VAR)`` of an
    earlier variable expanded (``$$`` is a literal ``$``), Secrets as placeholders, the
    downward API's fields from a pod at ``pod_ip`` in ``namespace``."""
    env: dict[str, str] = {}
    downward = {"status.podIP": pod_ip, "metadata.namespace": namespace}

    def expand(value: str) -> str:
        return re.sub(
            r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
            lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)),
            value,
        )

    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = expand(str(var["value"]))
            continue
        source = var["valueFrom"]
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            env[var["name"]] = placeholder(ref["name"], ref["key"])
        else:
            env[var["name"]] = downward[source["fieldRef"]["fieldPath"]]
    return env


# -- who may connect --------------------------------------------------------------------------


def ingress(fleet: Fleet, workload: Manifest) -> dict[int, set[str]]:
    """Who may connect to each port of the workload's pods under the overlay's policies:
    workload names of this namespace, ``*`` for anyone, ``other-namespaces`` for peers picked
    by a namespaceSelector."""
    (container,) = pod_spec(workload)["containers"]
    listening = [p["containerPort"] for p in container["ports"]]
    allowed: dict[int, set[str]] = {}
    for policy in fleet.of("NetworkPolicy"):
        spec = policy["spec"]
        if not selects(spec["podSelector"], pod_labels(workload)):
            continue
        assert "Ingress" in spec["policyTypes"], name(policy)
        for rule in spec.get("ingress", []):
            ports = [container_port(container, p["port"]) for p in rule.get("ports", [])]
            peers: set[str] = set()
            if "from" not in rule:
                peers.add("*")
            for peer in rule.get("from", []):
                if "namespaceSelector" in peer:
                    peers.add("other-namespaces")
                else:
                    peers |= {name(w) for w in fleet.selected(peer["podSelector"])}
            for port in ports or listening:
                allowed.setdefault(port, set()).update(peers)
    return allowed
