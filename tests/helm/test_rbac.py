"""The chart's ClusterRole is the operator's declared RBAC, nothing more, nothing less.

``mothership.rbac.RULES`` is the reviewed list; the operator's end-to-end tests
check every API call they make against it (``rbac.allows``). Here we check the
other side: the chart grants exactly that list, and its generated copy is fresh.
"""

from __future__ import annotations

import yaml

from mothership import rbac

from .conftest import CHART, NAMESPACE, RELEASE, Manifest, one

OPERATOR_ROLE = f"{RELEASE}-mothership"
"""The operator's ClusterRole; the chart's other ClusterRoles are people's (``-edit``, ``-view``)."""


def test_the_generated_rules_file_is_not_stale() -> None:
    """Regenerate with `python -m mothership.rbac` after editing operator/mothership/rbac.py."""
    assert (CHART / "files" / "rbac-rules.yaml").read_text() == rbac.to_yaml()


def test_the_clusterrole_holds_exactly_the_declared_rules(rendered: dict[str, list[Manifest]]) -> None:
    assert one(rendered["defaults"], "ClusterRole", OPERATOR_ROLE)["rules"] == rbac.RULES


def test_with_peering_the_clusterrole_adds_exactly_kopfs_peering_rules(
    rendered: dict[str, list[Manifest]],
) -> None:
    for variant in ("peering-cluster-wide", "peering-namespaced"):
        role = one(rendered[variant], "ClusterRole", OPERATOR_ROLE)
        assert role["rules"] == rbac.RULES + rbac.PEERING_RULES


def test_the_binding_grants_the_clusterrole_to_the_operator_service_account(
    rendered: dict[str, list[Manifest]],
) -> None:
    objects = rendered["defaults"]
    binding = one(objects, "ClusterRoleBinding")
    role = one(objects, "ClusterRole", OPERATOR_ROLE)
    account = one(objects, "ServiceAccount")
    deployment = one(objects, "Deployment")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}
    ]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]


def test_tenant_owners_get_apps_and_loadtests_through_the_aggregated_edit_and_view_roles(
    rendered: dict[str, list[Manifest]],
) -> None:
    edit = one(rendered["defaults"], "ClusterRole", f"{OPERATOR_ROLE}-edit")
    view = one(rendered["defaults"], "ClusterRole", f"{OPERATOR_ROLE}-view")
    assert edit["rules"] == rbac.TENANT_EDIT_RULES and view["rules"] == rbac.TENANT_VIEW_RULES
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert all(set(rule["verbs"]) <= {"get", "list", "watch"} for rule in view["rules"])


def test_no_rule_uses_wildcards_or_grants_escalation() -> None:
    for rule in [*rbac.rules(peering=True), *rbac.TENANT_EDIT_RULES, *rbac.TENANT_VIEW_RULES]:
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], rule
        assert not {"escalate", "impersonate"} & set(rule["verbs"]), rule
        if "bind" in rule["verbs"]:
            assert rule.get("resourceNames") == ["edit"], "bind is granted on the edit ClusterRole only"


def test_rules_are_well_formed_policy_rules() -> None:
    for rule in rbac.rules(peering=True):
        assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}
        assert rule["apiGroups"] and rule["resources"] and rule["verbs"]
        assert len(set(rule["verbs"])) == len(rule["verbs"])


def test_allows_covers_what_the_operator_does_and_nothing_else() -> None:
    assert rbac.allows("watch", "loadtests", api_group="mothership.dev")
    assert rbac.allows("patch", "apps", api_group="mothership.dev", subresource="status")
    assert rbac.allows("create", "jobs", api_group="batch")
    assert rbac.allows("patch", "deployments", api_group="apps")  # server-side apply
    assert rbac.allows("create", "events")
    assert rbac.allows("bind", "clusterroles", api_group="rbac.authorization.k8s.io", name="edit")
    assert not rbac.allows("bind", "clusterroles", api_group="rbac.authorization.k8s.io", name="admin")
    assert not rbac.allows("bind", "clusterroles", api_group="rbac.authorization.k8s.io")
    assert not rbac.allows("create", "pods")
    assert not rbac.allows("delete", "pods")
    assert not rbac.allows("get", "nodes")
    assert not rbac.allows("update", "deployments", api_group="apps")
    assert not rbac.allows("patch", "clusterkopfpeerings", api_group="kopf.dev")
    assert rbac.allows("patch", "clusterkopfpeerings", api_group="kopf.dev", peering=True)


def test_main_writes_the_file_the_chart_reads(tmp_path: object) -> None:
    from pathlib import Path

    out = Path(str(tmp_path)) / "rules.yaml"
    assert rbac.main([str(out)]) == 0
    assert yaml.safe_load(out.read_text()) == {
        "rules": rbac.RULES, "peeringRules": rbac.PEERING_RULES,
        "tenantEditRules": rbac.TENANT_EDIT_RULES, "tenantViewRules": rbac.TENANT_VIEW_RULES}
