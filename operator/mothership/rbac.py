"""The RBAC rules the operator needs: declared once, reviewed here.

This list is the truth about what the operator may do in a cluster. Two things
are checked against it, so neither can drift:

- the Helm chart's ClusterRole is rendered from it
  (``python -m mothership.rbac`` writes ``helm/mothership/files/rbac-rules.yaml``;
  ``tests/helm`` renders the chart and compares its rules with :data:`RULES`
  exactly, and fails when the generated file is stale);
- the operator's end-to-end tests run it on a real kube-apiserver as its own
  user, bound to a ClusterRole made from these rules, and read the server's
  audit log: no request may be refused, and every one must be covered by
  :func:`allows`, so a rule the chart lacks fails in CI rather than in a cluster.

Where each rule comes from:

- kopf itself: watching and patching our custom resources (progress
  annotations, finalizers, ``status``), posting ``v1`` events, listing and
  watching namespaces when it is given ``--namespace`` (it falls back with a
  warning on 403, but then misses new namespaces), and watching CRDs to notice
  resources that appear while it runs.
- Tenant: its Namespace (labelled for Pod Security ``restricted``),
  ResourceQuota, LimitRange, NetworkPolicy and the owners' RoleBinding. Granting
  ``edit`` in a RoleBinding requires either holding every permission of
  ``edit`` or the ``bind`` verb on it; we take ``bind`` on exactly that
  ClusterRole (RBAC escalation prevention, "Restrictions on role binding
  creation or update" in the Kubernetes RBAC docs).
- App: Deployment, Service, Ingress, HorizontalPodAutoscaler,
  PodDisruptionBudget.
- LoadTest: the plan ConfigMap, the control-token Secret (by name only: no
  list or watch on Secrets), the Indexed Job, reading the worker Pods (IPs,
  readiness, termination messages), an optional PodMonitor, the Tenant's
  ResourceQuota (the quota pre-flight) and the Job's ``FailedCreate`` events
  (a worker pod refused by quota admission).
- Admission, not calls: children's ownerReferences set ``blockOwnerDeletion``,
  which the OwnerReferencesPermissionEnforcement plugin (OpenShift, hardened
  clusters) allows only with ``update`` on the owner's ``finalizers``.

Children are written with server-side apply (an HTTP PATCH), so ``update`` is
only granted on our own resources. :data:`PEERING_RULES` are added only when the
operator runs with ``--peering`` (more than one replica): kopf then keeps a
heartbeat in a ``ClusterKopfPeering`` (all namespaces) or ``KopfPeering``
(per watched namespace) object. kopf does not use Leases.

People get rules too: :data:`TENANT_EDIT_RULES` and :data:`TENANT_VIEW_RULES`
let a Tenant's owners use ``mothership app`` and ``mothership loadtest`` in its
namespace (the chart aggregates them into ``edit``/``admin`` and ``view``).

This module imports nothing from the rest of ``mothership`` and does no I/O
except in ``main``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

Rule = dict[str, list[str]]
"""One PolicyRule: ``apiGroups``, ``resources``, ``verbs`` and optionally ``resourceNames``."""

READ = ["get", "list", "watch"]
MANAGE = ["get", "list", "watch", "create", "patch", "delete"]
BY_NAME = ["get", "create", "patch", "delete"]

RULES: list[Rule] = [
    # Our own resources: kopf watches them and patches annotations, finalizers and status.
    {
        "apiGroups": ["mothership.dev"],
        "resources": ["tenants", "apps", "loadtests"],
        "verbs": ["get", "list", "watch", "patch", "update"],
    },
    {
        "apiGroups": ["mothership.dev"],
        "resources": ["tenants/status", "apps/status", "loadtests/status"],
        "verbs": ["get", "patch", "update"],
    },
    # Children carry ownerReferences with blockOwnerDeletion: where the
    # OwnerReferencesPermissionEnforcement admission plugin is on (OpenShift, hardened
    # clusters), setting it requires update on the owner's finalizers subresource.
    {
        "apiGroups": ["mothership.dev"],
        "resources": ["tenants/finalizers", "apps/finalizers", "loadtests/finalizers"],
        "verbs": ["update"],
    },
    # kopf: resource discovery while running.
    {
        "apiGroups": ["apiextensions.k8s.io"],
        "resources": ["customresourcedefinitions"],
        "verbs": READ,
    },
    # kopf posts events for handler progress and errors; INFO and above reach tenants. A
    # LoadTest lists its Job's FailedCreate events: quota admission refusing a worker pod.
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch", "list"]},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    # Tenant: its namespace (kopf also lists and watches namespaces with --namespace).
    {
        "apiGroups": [""],
        "resources": ["namespaces"],
        "verbs": ["get", "list", "watch", "create", "patch", "delete"],
    },
    {"apiGroups": [""], "resources": ["resourcequotas", "limitranges"], "verbs": MANAGE},
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": MANAGE},
    {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["rolebindings"], "verbs": MANAGE},
    {
        "apiGroups": ["rbac.authorization.k8s.io"],
        "resources": ["clusterroles"],
        "verbs": ["bind"],
        "resourceNames": ["edit"],
    },
    # App: workload, service and the optional ingress, autoscaler and disruption budget.
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": MANAGE},
    {"apiGroups": [""], "resources": ["services"], "verbs": MANAGE},
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": MANAGE},
    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": MANAGE},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": MANAGE},
    # LoadTest: the plan, the control token, the Indexed Job and its worker pods. The plan
    # and the token are read back by name only: no list or watch, so the operator cannot
    # enumerate the cluster's Secrets.
    {"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": BY_NAME},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": MANAGE},
    {"apiGroups": [""], "resources": ["pods"], "verbs": READ},
    {
        "apiGroups": ["monitoring.coreos.com"],
        "resources": ["podmonitors"],
        "verbs": ["get", "create", "patch", "delete"],
    },
]
"""Every rule the operator needs in standalone mode, in the order the ClusterRole lists them."""

PEERING_RULES: list[Rule] = [
    {
        "apiGroups": ["kopf.dev"],
        "resources": ["clusterkopfpeerings", "kopfpeerings"],
        "verbs": ["get", "list", "watch", "patch"],
    },
]
"""Added with ``--peering``: kopf's heartbeat objects, watched and patched by every replica."""

USER_VERBS = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]

TENANT_EDIT_RULES: list[Rule] = [
    {"apiGroups": ["mothership.dev"], "resources": ["apps", "loadtests"], "verbs": USER_VERBS},
    {"apiGroups": ["mothership.dev"], "resources": ["apps/status", "loadtests/status"], "verbs": READ[:1]},
]
"""What a Tenant's owners may do with our resources in its namespace: ``mothership app`` and
``mothership loadtest``. The chart's ``<release>-edit`` ClusterRole carries these, labelled to
aggregate into ``edit`` and ``admin``: the Tenant binds its owners to ``edit`` (which already
covers the pods, logs, events and Deployments the CLI reads or restarts)."""

TENANT_VIEW_RULES: list[Rule] = [
    {"apiGroups": ["mothership.dev"], "resources": ["apps", "loadtests"], "verbs": READ},
    {"apiGroups": ["mothership.dev"], "resources": ["apps/status", "loadtests/status"], "verbs": READ[:1]},
]
"""Read-only: aggregated into ``view`` by the chart's ``<release>-view`` ClusterRole."""

RULES_FILE = Path("helm/mothership/files/rbac-rules.yaml")
"""Where ``python -m mothership.rbac`` writes the rules for the chart, relative to the repo root."""

_HEADER = (
    "# Generated by `python -m mothership.rbac` from operator/mothership/rbac.py. Do not edit.\n"
    "# templates/clusterrole.yaml renders `rules`, plus `peeringRules` when peering is on;\n"
    "# templates/userroles.yaml renders `tenantEditRules` and `tenantViewRules`.\n"
)


def rules(*, peering: bool = False) -> list[Rule]:
    """The ClusterRole's rules: :data:`RULES`, plus :data:`PEERING_RULES` with ``--peering``."""
    return [*RULES, *(PEERING_RULES if peering else [])]


def allows(
    verb: str,
    resource: str,
    *,
    api_group: str = "",
    subresource: str = "",
    name: str = "",
    peering: bool = False,
) -> bool:
    """Whether the rules grant ``verb`` on ``resource`` (``apps``, group ``mothership.dev``).

    Matches the way the API server's RBAC authorizer does for the forms used
    here: exact group, ``resource`` or ``resource/subresource``, and
    ``resourceNames`` (a rule with names grants only requests that name one of
    them, so never a plain ``list``, ``watch`` or ``create``). For a watch request pass ``watch``; for
    a server-side apply pass ``patch``.
    """
    full = f"{resource}/{subresource}" if subresource else resource
    for rule in rules(peering=peering):
        if api_group not in rule["apiGroups"] or full not in rule["resources"]:
            continue
        if verb not in rule["verbs"]:
            continue
        names = rule.get("resourceNames")
        if names and (not name or name not in names):
            continue
        return True
    return False


def to_yaml() -> str:
    """The generated chart file: the header, then ``rules`` and ``peeringRules``."""
    import yaml

    class _Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:  # READ and MANAGE are shared lists
            return True

    body: dict[str, Any] = {"rules": RULES, "peeringRules": PEERING_RULES,
                            "tenantEditRules": TENANT_EDIT_RULES, "tenantViewRules": TENANT_VIEW_RULES}
    return _HEADER + yaml.dump(body, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def main(argv: list[str] | None = None) -> int:
    """Write :data:`RULES_FILE` (or the path given), relative to the current directory."""
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else RULES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_yaml(), encoding="utf-8")
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
