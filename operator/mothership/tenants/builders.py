"""Tenant children, built purely: the Namespace and its guard rails (ResourceQuota,
LimitRange, NetworkPolicy, the owners' RoleBinding).

Why pure: the handler server-side-applies whatever comes out of here on create,
update, resume and drift repair alike, so the same Tenant must give the same
bytes. No clock, no randomness, no environment, no API: the operator's own
namespace is an argument.

Owner references follow ``spec.deletionPolicy``, and on purpose apply to every
child, not only the Namespace:

- ``Delete``: every child carries an ownerReference to the Tenant, so deleting
  the Tenant lets the garbage collector remove the Namespace and all in it.
- ``Retain`` (the default): no child carries one. A mistaken ``kubectl delete
  tenant`` must lose nothing, and that includes the guard rails: were the
  NetworkPolicy or RoleBinding owned, the garbage collector would open the
  namespace to every other namespace and lock its owners out while the apps
  keep running. Re-creating the Tenant adopts the children again (same names,
  server-side apply). The ``mothership.dev/tenant`` label, on every child, is
  how the handler finds them either way.

The Namespace is the exception, because a Tenant may adopt one that existed
before it (``spec.adopt``): it carries the ownerReference, and the annotation
``mothership.dev/created-by-tenant``, only when this Tenant created it
(``created``, decided by ``tenants.status.claim``), so neither the garbage
collector nor ``Delete`` ever removes a namespace the Tenant did not make.

The guard rails live inside the tenant's namespace under one fixed name,
``CHILD_NAME``, so a long Tenant name can never push them past a name limit.
What this module must not know: kopf, the kube client, or how status is read.
"""

from __future__ import annotations

from mothership import labels as std
from mothership.api.common import Manifest, Owner
from mothership.api.tenant import DeletionPolicy, IsolationMode, SubjectKind, Tenant

CREATED_BY = "mothership.dev/created-by-tenant"
"""Annotation on a Namespace a Tenant created (not adopted): the Tenant's name. Only then may
``deletionPolicy: Delete`` delete it."""
CHILD_NAME = "mothership"
"""Name of the ResourceQuota, LimitRange, NetworkPolicy and RoleBinding in the tenant's namespace."""
OWNER_ROLE = "edit"
"""The ClusterRole the owners get in their namespace."""
POD_SECURITY_LEVEL = "restricted"
RBAC_GROUP = "rbac.authorization.k8s.io"
APPS_QUOTA_KEY = "count/apps.mothership.dev"

OPTIONAL_CHILDREN: list[tuple[str, str, str]] = [
    ("v1", "ResourceQuota", "resourcequotas"),
    ("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings"),
]
"""(apiVersion, kind, plural) of the children a Tenant has only when its spec asks;
one that ``build_children`` does not return must be deleted."""

QUOTA_KEYS: dict[str, str] = {
    "cpu": "requests.cpu",
    "memory": "requests.memory",
    "pods": "pods",
    "apps": APPS_QUOTA_KEY,
}
"""``spec.quota`` field -> ResourceQuota ``hard`` key, in the order they are written."""


def namespace_name(tenant: Tenant) -> str:
    """The tenant's namespace: ``spec.namespace``, or the Tenant's own name."""
    return tenant.spec.namespace or tenant.metadata["name"]


def tenant_name(tenant: Tenant) -> str:
    return str(tenant.metadata["name"])


def labels(tenant: Tenant) -> dict[str, str]:
    """Labels of every child; keys sorted."""
    return std.ordered({std.MANAGED_BY: std.MANAGER, std.TENANT: tenant_name(tenant)})


def owner_references(tenant: Tenant, owner: Owner) -> list[Manifest]:
    """The Tenant as owner under ``deletionPolicy: Delete``; none under Retain (see the module doc)."""
    if tenant.spec.deletion_policy is DeletionPolicy.DELETE:
        return [owner.reference()]
    return []


def _metadata(tenant: Tenant, owner: Owner) -> Manifest:
    """Metadata of a guard rail: its fixed name in the tenant's namespace, labels, owner per policy."""
    meta: Manifest = {"name": CHILD_NAME, "namespace": namespace_name(tenant), "labels": labels(tenant)}
    refs = owner_references(tenant, owner)
    if refs:
        meta["ownerReferences"] = refs
    return meta


def _pod_security() -> dict[str, str]:
    out = {}
    for mode in ("audit", "enforce", "warn"):
        out[f"pod-security.kubernetes.io/{mode}"] = POD_SECURITY_LEVEL
        out[f"pod-security.kubernetes.io/{mode}-version"] = "latest"
    return out


def namespace_to_create(tenant: Tenant) -> Manifest:
    """The Namespace as first created (a plain create, so two Tenants cannot both make it).

    Only what never changes for this Tenant: its labels (Pod Security included)
    and the ``CREATED_BY`` annotation; no ownerReference, since whoever creates
    an object keeps its fields, and ``deletionPolicy`` may later turn Retain.
    The apply that follows adds the rest.
    """
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": namespace_name(tenant),
            "labels": std.ordered({**labels(tenant), **_pod_security()}),
            "annotations": {CREATED_BY: tenant_name(tenant)},
        },
    }


def build_namespace(tenant: Tenant, owner: Owner, *, created: bool) -> Manifest:
    """The Namespace, enforcing Pod Security ``restricted`` (and auditing and warning on it).

    ``created``: this Tenant made the namespace (it did not adopt it). Only then
    does it carry the ``CREATED_BY`` annotation and, under ``Delete``, the
    Tenant's ownerReference.
    """
    meta: Manifest = {
        "name": namespace_name(tenant),
        "labels": std.ordered({**labels(tenant), **_pod_security()}),
    }
    if created:
        meta["annotations"] = {CREATED_BY: tenant_name(tenant)}
        refs = owner_references(tenant, owner)
        if refs:
            meta["ownerReferences"] = refs
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def build_resource_quota(tenant: Tenant, owner: Owner) -> Manifest | None:
    """The ResourceQuota of what ``spec.quota`` sets (None when it sets nothing)."""
    quota = tenant.spec.quota
    hard = {
        QUOTA_KEYS[field]: str(value)
        for field, value in (("cpu", quota.cpu), ("memory", quota.memory), ("pods", quota.pods),
                             ("apps", quota.apps))
        if value is not None
    }
    if not hard:
        return None
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": _metadata(tenant, owner),
        "spec": {"hard": hard},
    }


def build_limit_range(tenant: Tenant, owner: Owner) -> Manifest:
    """The LimitRange giving containers that say nothing ``spec.defaults`` requests and limits."""
    defaults = tenant.spec.defaults
    limit: Manifest = {"type": "Container"}
    for key, amounts in (("default", defaults.limits), ("defaultRequest", defaults.requests)):
        values = {k: str(v) for k, v in (("cpu", amounts.cpu), ("memory", amounts.memory)) if v is not None}
        if values:
            limit[key] = values
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": _metadata(tenant, owner),
        "spec": {"limits": [limit]},
    }


def build_network_policy(tenant: Tenant, owner: Owner, operator_namespace: str) -> Manifest | None:
    """Under ``isolation.mode: strict``, deny ingress from other namespaces except the allowed ones.

    One ingress rule whose peers are ORed: the tenant's own pods, the
    operator's namespace (it probes and load-tests the apps) and each
    ``isolation.allowFrom`` namespace selector (the ingress controller and
    monitoring by default). Egress is left open. None when the mode is ``none``.
    """
    isolation = tenant.spec.isolation
    if isolation.mode is IsolationMode.NONE:
        return None
    peers: list[Manifest] = [
        {"podSelector": {}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": operator_namespace}}},
    ]
    peers += [{"namespaceSelector": {"matchLabels": std.ordered(sel)}} for sel in isolation.allow_from]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(tenant, owner),
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": peers}]},
    }


def build_role_binding(tenant: Tenant, owner: Owner) -> Manifest | None:
    """The owners bound to ClusterRole ``edit`` in the namespace (None when there are no owners).

    A ServiceAccount without a namespace is taken to live in the tenant's namespace.
    """
    if not tenant.spec.owners:
        return None
    subjects: list[Manifest] = []
    for subject in tenant.spec.owners:
        if subject.kind is SubjectKind.SERVICE_ACCOUNT:
            subjects.append({
                "kind": subject.kind.value,
                "name": subject.name,
                "namespace": subject.namespace or namespace_name(tenant),
            })
        else:
            subjects.append({"apiGroup": RBAC_GROUP, "kind": subject.kind.value, "name": subject.name})
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(tenant, owner),
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": OWNER_ROLE},
        "subjects": subjects,
    }


def wanted_kinds(tenant: Tenant) -> list[str]:
    """The kinds ``build_children`` returns for this Tenant, in the same order."""
    quota = tenant.spec.quota
    wanted = {
        "Namespace": True,
        "ResourceQuota": any(v is not None for v in (quota.cpu, quota.memory, quota.pods, quota.apps)),
        "LimitRange": True,
        "NetworkPolicy": tenant.spec.isolation.mode is not IsolationMode.NONE,
        "RoleBinding": bool(tenant.spec.owners),
    }
    return [kind for kind, yes in wanted.items() if yes]


def build_children(tenant: Tenant, owner: Owner, operator_namespace: str, *, created: bool) -> list[Manifest]:
    """The Namespace first (the rest live in it), then ResourceQuota, LimitRange,
    NetworkPolicy and RoleBinding, the optional ones only when the spec asks.
    ``created`` shapes the Namespace alone (see :func:`build_namespace`)."""
    children = [build_namespace(tenant, owner, created=created)]
    for child in (
        build_resource_quota(tenant, owner),
        build_limit_range(tenant, owner),
        build_network_policy(tenant, owner, operator_namespace),
        build_role_binding(tenant, owner),
    ):
        if child is not None:
            children.append(child)
    return children
