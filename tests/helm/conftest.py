"""Render the chart with the real Helm engine, in-process.

``helm-python-sdk`` binds Helm's Go SDK (``libhelm_c``) through ctypes, so the
templates, ``.Files``, ``values.schema.json`` and the Sprig functions behave as
``helm template`` / ``helm install`` do, with no helm binary and no cluster.

``VARIANTS`` names one values set per toggle; tests parametrize over it so every
template is rendered and validated in every mode a user can switch on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

if os.environ.get("CI") == "true":  # in CI a missing test dependency is a failure, not a skip
    import helm_python as helm
else:
    helm = pytest.importorskip("helm_python", reason="pip install -e '.[test]' brings helm-python-sdk")

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "mothership"
RELEASE = "ms"
NAMESPACE = "mothership-system"

Manifest = dict[str, Any]

VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "service-monitor": {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}},
    "pod-monitor": {"metrics": {"podMonitor": {"enabled": True}}},
    "prometheus-rule": {
        "metrics": {"prometheusRule": {"enabled": True, "alertLabels": {"team": "platform"}}}
    },
    "dashboard-off": {"grafana": {"dashboard": {"enabled": False}}},
    "dashboard-elsewhere": {
        "grafana": {"dashboard": {"namespace": "monitoring", "annotations": {"grafana_folder": "Mothership"}}}
    },
    "peering-cluster-wide": {"replicas": 3},
    "peering-namespaced": {"replicas": 2, "watchNamespaces": ["team-a", "team-b"]},
    "peering-crds-elsewhere": {"replicas": 2, "peering": {"installCRDs": False}},
    "watch-namespaces": {"watchNamespaces": ["team-a"]},
    "targets-and-worker-image": {
        "allowedTargets": ["*.staging.example.com", "10.0.0.7:8080"],
        "workerImage": "registry.example.com/mothership-worker:1.2.3",
    },
    "crds-managed-elsewhere": {"crds": {"install": False}},
    "existing-service-account": {
        "rbac": {"create": False}, "serviceAccount": {"create": False, "name": "ops"}
    },
    "scheduling": {
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}
            ]
        }}},
        "priorityClassName": "system-cluster-critical",
        "podAnnotations": {"example.com/owner": "platform"},
        "podLabels": {"team": "platform"},
    },
    "image-and-pull-secrets": {
        "image": {"repository": "ghcr.io/example/mothership", "tag": "1.0.0", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "extraArgs": ["--verbose"],
        "extraEnv": [{"name": "TZ", "value": "UTC"}],
        "metrics": {"service": {"annotations": {"prometheus.io/scrape": "true"}}},
    },
    "everything-on": {
        "replicas": 2,
        "metrics": {
            "serviceMonitor": {"enabled": True},
            "podMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True},
        },
    },
}


def render_files(values: dict[str, Any] | None = None) -> dict[str, str]:
    """Template path -> rendered text, as ``helm template`` would print it."""
    with helm.Chart.load(str(CHART)) as chart:
        files: dict[str, str] = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return files


def render(values: dict[str, Any] | None = None) -> list[Manifest]:
    """Every object the chart renders (NOTES.txt excluded), in template order."""
    objects: list[Manifest] = []
    for path, text in sorted(render_files(values).items()):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def one(objects: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    """The single object of ``kind`` (and ``name``); fails clearly when absent or ambiguous."""
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    names = [o["metadata"]["name"] for o in found]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {names}"
    return found[0]


def kinds(objects: list[Manifest]) -> list[str]:
    return sorted(o["kind"] for o in objects)


def walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (dotted path, leaf) in a nested dict/list, for readable diffs."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from walk(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from walk(item, f"{path}[{index}]")
    else:
        yield path, value


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Manifest]]:
    """Every variant rendered once per session (Helm renders in a few ms, parsing dominates)."""
    return {name: render(values) for name, values in VARIANTS.items()}


@pytest.fixture(params=sorted(VARIANTS))
def variant(
    request: pytest.FixtureRequest, rendered: dict[str, list[Manifest]]
) -> tuple[str, list[Manifest]]:
    return request.param, rendered[request.param]
