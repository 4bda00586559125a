"""App manifests the App tests share: one that sets every field, one that sets almost nothing."""

from __future__ import annotations

import copy
from typing import Any

from mothership.api.app import App
from mothership.api.common import Owner

UID = "0b8f3a52-6f1e-4c2a-9d57-1f4f2b1c9e01"


def manifest(spec: dict[str, Any], name: str = "shop", namespace: str = "acme") -> dict[str, Any]:
    return {
        "apiVersion": "mothership.dev/v1alpha1",
        "kind": "App",
        "metadata": {"name": name, "namespace": namespace, "uid": UID, "generation": 3},
        "spec": copy.deepcopy(spec),
    }


MINIMAL: dict[str, Any] = {"image": "ghcr.io/acme/shop:1.4.2"}

FULL: dict[str, Any] = {
    "image": "ghcr.io/acme/shop:1.4.2",
    "port": 8080,
    "replicas": 3,
    "env": [
        {"name": "LOG_LEVEL", "value": "info"},
        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
        {"name": "FEATURES", "valueFrom": {"configMapKeyRef": {"name": "flags", "key": "features"}}},
    ],
    "envFrom": [{"secretRef": "shop-secrets"}, {"configMapRef": "shop-config", "prefix": "CFG_"}],
    "command": ["/app/shop"],
    "args": ["serve", "--verbose"],
    "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": 1, "memory": "512Mi"}},
    "healthCheck": {
        "path": "/healthz",
        "port": 9090,
        "initialDelay": "5s",
        "period": "10s",
        "timeout": "500ms",
        "failureThreshold": 5,
    },
    "expose": {
        "host": "shop.example.com",
        "path": "/",
        "tls": True,
        "clusterIssuer": "letsencrypt",
        "ingressClassName": "nginx",
    },
    "protocol": "websocket",
    "strategy": {"type": "RollingUpdate", "maxSurge": 1, "maxUnavailable": 0},
    "securityContext": {
        "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001, "readOnlyRootFilesystem": True,
    },
}


def app(spec: dict[str, Any] | None = None, **changes: Any) -> App:
    """An App from ``spec`` (default MINIMAL) with top-level spec fields replaced by ``changes``."""
    body = manifest({**(MINIMAL if spec is None else spec), **changes})
    return App.model_validate(body)


def owner(name: str = "shop", namespace: str | None = "acme") -> Owner:
    return Owner(api_version="mothership.dev/v1alpha1", kind="App", name=name, uid=UID, namespace=namespace)
