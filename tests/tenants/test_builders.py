"""Tenant builders: the full example against whole expected objects, then one small
test per spec option (quota keys, isolation, owners, deletion policy).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from mothership.api.tenant import Tenant
from mothership.tenants import builders
from tests.apps import kubeschemas
from tests.tenants.examples import FULL, MINIMAL, OPERATOR_NAMESPACE, UID, owner, tenant

LABELS = {"app.kubernetes.io/managed-by": "mothership", "mothership.dev/tenant": "acme"}
OWNER_REF = {
    "apiVersion": "mothership.dev/v1alpha1",
    "kind": "Tenant",
    "name": "acme",
    "uid": UID,
    "controller": True,
    "blockOwnerDeletion": True,
}
NAME = "kubernetes.io/metadata.name"
META = {"name": "mothership", "namespace": "team-acme", "labels": LABELS, "ownerReferences": [OWNER_REF]}


def build(t: Tenant, operator_namespace: str = OPERATOR_NAMESPACE) -> list[dict[str, Any]]:
    """The children of a Tenant that created its namespace (as one does unless it adopts)."""
    return builders.build_children(t, owner(), operator_namespace, created=True)


def by_kind(spec: dict[str, Any] | None = None, **changes: Any) -> dict[str, dict[str, Any]]:
    children = build(tenant(spec, **changes))
    return {m["kind"]: m for m in children}


# --- The full example, whole ---------------------------------------------------------------------


def test_the_full_example_builds_this_namespace() -> None:
    assert builders.build_namespace(tenant(FULL), owner(), created=True) == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": "team-acme",
            "labels": {
                "app.kubernetes.io/managed-by": "mothership",
                "mothership.dev/tenant": "acme",
                "pod-security.kubernetes.io/audit": "restricted",
                "pod-security.kubernetes.io/audit-version": "latest",
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
                "pod-security.kubernetes.io/warn": "restricted",
                "pod-security.kubernetes.io/warn-version": "latest",
            },
            "annotations": {"mothership.dev/created-by-tenant": "acme"},
            "ownerReferences": [OWNER_REF],
        },
    }


def test_the_full_example_builds_this_resource_quota() -> None:
    assert builders.build_resource_quota(tenant(FULL), owner()) == {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": META,
        "spec": {
            "hard": {
                "requests.cpu": "8",
                "requests.memory": "16Gi",
                "pods": "50",
                "count/apps.mothership.dev": "10",
            }
        },
    }


def test_the_full_example_builds_this_limit_range() -> None:
    assert builders.build_limit_range(tenant(FULL), owner()) == {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": META,
        "spec": {
            "limits": [
                {
                    "type": "Container",
                    "default": {"cpu": "500m", "memory": "256Mi"},
                    "defaultRequest": {"cpu": "50m", "memory": "64Mi"},
                }
            ]
        },
    }


def test_the_full_example_builds_this_network_policy() -> None:
    assert builders.build_network_policy(tenant(FULL), owner(), OPERATOR_NAMESPACE) == {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": META,
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {"podSelector": {}},
                        {"namespaceSelector": {"matchLabels": {NAME: "mothership-system"}}},
                        {"namespaceSelector": {"matchLabels": {NAME: "ingress-nginx"}}},
                        {"namespaceSelector": {"matchLabels": {
                            NAME: "monitoring", "team": "observability",
                        }}},
                    ]
                }
            ],
        },
    }


def test_the_full_example_builds_this_role_binding() -> None:
    assert builders.build_role_binding(tenant(FULL), owner()) == {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": META,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice@example.com"},
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "acme-devs"},
            {"kind": "ServiceAccount", "name": "deployer", "namespace": "team-acme"},
            {"kind": "ServiceAccount", "name": "argocd", "namespace": "argocd"},
        ],
    }


def test_the_minimal_tenant_builds_a_namespace_limits_and_isolation_named_after_it() -> None:
    children = build(tenant(MINIMAL))
    assert [c["kind"] for c in children] == ["Namespace", "LimitRange", "NetworkPolicy"]
    assert children[0]["metadata"]["name"] == "acme"
    assert {c["metadata"].get("namespace") for c in children[1:]} == {"acme"}
    assert children[1]["spec"]["limits"] == [{
        "type": "Container",
        "default": {"cpu": "1", "memory": "512Mi"},
        "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
    }]


# --- Shape every child shares ---------------------------------------------------------------------


def test_children_come_namespace_first_then_quota_limits_isolation_access() -> None:
    kinds = [c["kind"] for c in build(tenant(FULL))]
    assert kinds == ["Namespace", "ResourceQuota", "LimitRange", "NetworkPolicy", "RoleBinding"]


@pytest.mark.parametrize("spec", [
    FULL, MINIMAL, {"quota": {"pods": 1}}, {"isolation": {"mode": "none"}}, {"owners": [{"name": "bob"}]},
])
def test_wanted_kinds_are_exactly_the_kinds_built(spec: dict[str, Any]) -> None:
    built = [c["kind"] for c in build(tenant(spec))]
    assert builders.wanted_kinds(tenant(spec)) == built


def test_optional_children_lists_exactly_the_kinds_a_tenant_may_not_have() -> None:
    assert [k for _, k, _ in builders.OPTIONAL_CHILDREN] == ["ResourceQuota", "NetworkPolicy", "RoleBinding"]
    full = {c["kind"]: c["apiVersion"] for c in build(tenant(FULL), "x")}
    assert all(full[kind] == version for version, kind, _ in builders.OPTIONAL_CHILDREN)


def test_every_child_carries_sorted_labels_naming_the_tenant() -> None:
    for child in build(tenant(FULL)):
        labels = child["metadata"]["labels"]
        assert list(labels) == sorted(labels)
        assert labels["mothership.dev/tenant"] == "acme"
        assert labels["app.kubernetes.io/managed-by"] == "mothership"


def test_the_same_tenant_gives_the_same_bytes() -> None:
    first = json.dumps(build(tenant(FULL)))
    assert json.dumps(build(tenant(FULL))) == first


# --- One option at a time ----------------------------------------------------------------------


def test_the_namespace_defaults_to_the_tenants_name() -> None:
    assert builders.namespace_name(tenant(MINIMAL)) == "acme"
    assert builders.namespace_name(tenant(namespace="team-a")) == "team-a"


def test_given_deletion_policy_delete_every_child_is_owned_by_the_tenant() -> None:
    for child in build(tenant(FULL)):
        assert child["metadata"]["ownerReferences"] == [OWNER_REF], child["kind"]


def test_given_deletion_policy_retain_no_child_is_owned_so_deleting_the_tenant_leaves_them() -> None:
    retained = tenant({**FULL, "deletionPolicy": "Retain"})
    for child in build(retained):
        assert "ownerReferences" not in child["metadata"], child["kind"]


def test_retain_is_the_default() -> None:
    assert "ownerReferences" not in by_kind()["Namespace"]["metadata"]


def test_an_adopted_namespace_is_never_owned_nor_marked_created_so_delete_cannot_take_it() -> None:
    children = builders.build_children(tenant(FULL), owner(), OPERATOR_NAMESPACE, created=False)
    namespace = children[0]["metadata"]
    assert "ownerReferences" not in namespace
    assert "annotations" not in namespace
    assert namespace["labels"]["mothership.dev/tenant"] == "acme"
    # The guard rails are still the Tenant's, under Delete as ever.
    assert all(c["metadata"]["ownerReferences"] == [OWNER_REF] for c in children[1:])


def test_a_namespace_is_first_created_with_its_labels_and_the_created_mark_but_no_owner() -> None:
    created = builders.namespace_to_create(tenant(FULL))
    applied = builders.build_namespace(tenant(FULL), owner(), created=True)
    assert created["metadata"] == {
        "name": "team-acme",
        "labels": applied["metadata"]["labels"],
        "annotations": {"mothership.dev/created-by-tenant": "acme"},
    }


@pytest.mark.parametrize(("quota", "hard"), [
    ({"cpu": "500m"}, {"requests.cpu": "500m"}),
    ({"memory": "4Gi"}, {"requests.memory": "4Gi"}),
    ({"pods": 20}, {"pods": "20"}),
    ({"apps": 3}, {"count/apps.mothership.dev": "3"}),
    ({"cpu": 4, "apps": 0}, {"requests.cpu": "4", "count/apps.mothership.dev": "0"}),
])
def test_given_a_quota_field_only_its_key_is_in_the_hard_limits(
    quota: dict[str, Any], hard: dict[str, str]
) -> None:
    assert by_kind(quota=quota)["ResourceQuota"]["spec"]["hard"] == hard


def test_given_no_quota_there_is_no_resource_quota() -> None:
    assert builders.build_resource_quota(tenant(MINIMAL), owner()) is None


def test_given_defaults_with_only_requests_the_limit_range_sets_only_default_requests() -> None:
    limits = by_kind(defaults={"requests": {"cpu": "10m"}, "limits": {}})["LimitRange"]["spec"]["limits"]
    assert limits == [{"type": "Container", "defaultRequest": {"cpu": "10m"}}]


def test_given_isolation_none_there_is_no_network_policy() -> None:
    open_tenant = tenant(isolation={"mode": "none"})
    assert builders.build_network_policy(open_tenant, owner(), OPERATOR_NAMESPACE) is None
    assert "NetworkPolicy" not in by_kind(isolation={"mode": "none"})


def test_strict_isolation_by_default_admits_its_namespace_the_operator_ingress_and_monitoring() -> None:
    peers = by_kind()["NetworkPolicy"]["spec"]["ingress"][0]["from"]
    assert peers == [
        {"podSelector": {}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": OPERATOR_NAMESPACE}}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
    ]


def test_given_an_empty_allow_from_only_the_namespace_and_the_operator_get_in() -> None:
    peers = by_kind(isolation={"allowFrom": []})["NetworkPolicy"]["spec"]["ingress"][0]["from"]
    assert len(peers) == 2


def test_strict_isolation_selects_every_pod_and_leaves_egress_open() -> None:
    spec = by_kind()["NetworkPolicy"]["spec"]
    assert (spec["podSelector"], spec["policyTypes"]) == ({}, ["Ingress"])


def test_given_no_owners_there_is_no_role_binding() -> None:
    assert builders.build_role_binding(tenant(MINIMAL), owner()) is None


def test_given_owners_each_becomes_a_subject_of_edit_in_declaration_order() -> None:
    owners = [{"kind": "Group", "name": "b"}, {"name": "a"}]
    binding = by_kind(owners=owners)["RoleBinding"]
    assert binding["roleRef"]["name"] == "edit"
    assert [(s["kind"], s["name"]) for s in binding["subjects"]] == [("Group", "b"), ("User", "a")]


def test_a_service_account_owner_defaults_to_the_tenants_namespace() -> None:
    binding = by_kind(namespace="team-a", owners=[{"kind": "ServiceAccount", "name": "ci"}])["RoleBinding"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "ci", "namespace": "team-a"}]


def test_a_service_account_owner_keeps_its_own_namespace() -> None:
    owners = [{"kind": "ServiceAccount", "name": "argocd", "namespace": "argocd"}]
    assert by_kind(owners=owners)["RoleBinding"]["subjects"][0]["namespace"] == "argocd"


# --- Kubernetes' own schemas ---------------------------------------------------------------------


@pytest.mark.parametrize("version", kubeschemas.VERSIONS)
@pytest.mark.parametrize("spec", [FULL, MINIMAL], ids=["full", "minimal"])
def test_every_child_validates_against_kubernetes_own_schema(spec: dict[str, Any], version: str) -> None:
    for child in build(tenant(spec)):
        kubeschemas.validate(child, version)
