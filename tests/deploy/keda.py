"""The shape of a KEDA ScaledObject, as far as ``deploy/k8s`` uses it.

KEDA's CRDs are not among the Kubernetes schemas ``kubernetes-validate`` bundles: this schema
(JSON Schema 2020-12) stands in. It closes every object it names (an unknown field is a typo)
and requires every trigger to be a ``metrics-api`` one with a URL, a value location and a
target (its metadata closed to KEDA's keys for it); KEDA's trigger metadata is
``map[string]string``, so a bare number fails. ``TRIGGER_AUTHENTICATION_SCHEMA``: the
``TriggerAuthentication`` those triggers name, secrets by reference only.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SCALED_OBJECT_SCHEMA", "TRIGGER_AUTHENTICATION_SCHEMA"]

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_COUNT = {"type": "string", "pattern": "^[1-9][0-9]*$"}
SCALED_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string"},
                "namespace": {"type": "string"},
                "labels": _STRING_MAP,
                "annotations": _STRING_MAP,
            },
            "additionalProperties": False,
        },
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string"},
                        "kind": {"const": "Deployment"},
                        "apiVersion": {"const": "apps/v1"},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "initialCooldownPeriod": {"type": "integer", "minimum": 0},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "fallback": {"type": "object"},
                "advanced": {"type": "object"},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "useCachedMetrics": {"type": "boolean"},
                            # KEDA's trigger metadata is map[string]string: a bare 8 is refused
                            "metadata": _STRING_MAP,
                            "authenticationRef": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {"name": {"type": "string"}},
                            },
                        },
                    },
                    # every trigger is a metrics-api one on a JSON answer of the supervisor
                    "allOf": [
                        {
                            "items": {
                                "properties": {
                                    "type": {"const": "metrics-api"},
                                    "metadata": {
                                        "required": ["url", "valueLocation", "targetValue"],
                                        "additionalProperties": False,
                                        "properties": {
                                            "url": {"pattern": r"^https?://[a-z0-9.-]+:[0-9]+/"},
                                            "valueLocation": {"pattern": r"^[A-Za-z0-9_.\\-]+$"},
                                            "targetValue": _COUNT,
                                            "activationTargetValue": {"pattern": "^[0-9]+$"},
                                            "format": {"enum": ["json"]},
                                            "authMode": {
                                                "enum": ["bearer", "apiKey", "basic", "tls"]
                                            },
                                            "unsafeSsl": {"enum": ["true", "false"]},
                                        },
                                    },
                                },
                            }
                        }
                    ],
                },
            },
        },
    },
}

TRIGGER_AUTHENTICATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "TriggerAuthentication"},
        "metadata": SCALED_OBJECT_SCHEMA["properties"]["metadata"],
        "spec": {
            "type": "object",
            "required": ["secretTargetRef"],
            "additionalProperties": False,
            "properties": {
                "secretTargetRef": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["parameter", "name", "key"],
                        "additionalProperties": False,
                        "properties": {
                            "parameter": {"type": "string"},
                            "name": {"type": "string"},
                            "key": {"type": "string"},
                        },
                    },
                }
            },
        },
    },
}
