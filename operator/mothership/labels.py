"""The labels Mothership stamps on what it creates: one spelling, keys sorted.

Why a module of its own: the builders of every kind, the handlers that list
children by label, and the tests must agree on the exact keys, and a label
selector that drifts by one character silently matches nothing. Keys follow
Kubernetes' recommended labels (``app.kubernetes.io/*``); ``managed-by`` is
always ``mothership`` so ``kubectl get all -l app.kubernetes.io/managed-by=mothership``
shows everything the operator owns. Keys are returned sorted so that built
manifests are byte-for-byte stable. Pure; imports nothing but the standard library.
"""

from __future__ import annotations

from collections.abc import Mapping

NAME = "app.kubernetes.io/name"
INSTANCE = "app.kubernetes.io/instance"
COMPONENT = "app.kubernetes.io/component"
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "mothership"
"""The value of ``app.kubernetes.io/managed-by`` on everything the operator creates."""
TENANT = "mothership.dev/tenant"
"""On a Tenant's Namespace and its other children: the Tenant's name."""


def ordered(labels: Mapping[str, str]) -> dict[str, str]:
    """The same labels with keys sorted, so that built manifests compare and diff quietly."""
    return {key: labels[key] for key in sorted(labels)}


def standard(name: str, instance: str, component: str | None = None) -> dict[str, str]:
    """Kubernetes' recommended labels: name, instance, managed-by and, if given, component."""
    out = {NAME: name, INSTANCE: instance, MANAGED_BY: MANAGER}
    if component is not None:
        out[COMPONENT] = component
    return ordered(out)
