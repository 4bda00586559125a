"""Tenant manifests the Tenant tests share: one that sets every field, one that sets nothing."""

from __future__ import annotations

import copy
from typing import Any

from mothership.api.common import Owner
from mothership.api.tenant import Tenant

UID = "7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f"
OPERATOR_NAMESPACE = "mothership-system"


def manifest(spec: dict[str, Any], name: str = "acme") -> dict[str, Any]:
    return {
        "apiVersion": "mothership.dev/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": name, "uid": UID, "generation": 2},
        "spec": copy.deepcopy(spec),
    }


MINIMAL: dict[str, Any] = {}

FULL: dict[str, Any] = {
    "namespace": "team-acme",
    "owners": [
        {"kind": "User", "name": "alice@example.com"},
        {"kind": "Group", "name": "acme-devs"},
        {"kind": "ServiceAccount", "name": "deployer"},
        {"kind": "ServiceAccount", "name": "argocd", "namespace": "argocd"},
    ],
    "quota": {"cpu": "8", "memory": "16Gi", "pods": 50, "apps": 10},
    "defaults": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
    "isolation": {
        "mode": "strict",
        "allowFrom": [
            {"kubernetes.io/metadata.name": "ingress-nginx"},
            {"team": "observability", "kubernetes.io/metadata.name": "monitoring"},
        ],
    },
    "loadTests": {"maxWorkers": 20, "maxVirtualUsers": 50000, "allowedTargets": ["*.example.com"]},
    "deletionPolicy": "Delete",
}


def tenant(spec: dict[str, Any] | None = None, **changes: Any) -> Tenant:
    """A Tenant from ``spec`` (default MINIMAL) with top-level spec fields replaced by ``changes``."""
    return Tenant.model_validate(manifest({**(MINIMAL if spec is None else spec), **changes}))


def owner(name: str = "acme") -> Owner:
    return Owner(api_version="mothership.dev/v1alpha1", kind="Tenant", name=name, uid=UID)
