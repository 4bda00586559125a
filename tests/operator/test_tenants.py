"""Tenants end to end: the namespace and its guard rails, status, and deletionPolicy Retain vs Delete."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from mothership.kube import KINDS, Kube
from tests.operator.harness import OPERATOR_NAMESPACE, app, tenant

Until = Callable[..., Awaitable[Any]]
GUARD_RAILS = ("ResourceQuota", "LimitRange", "NetworkPolicy", "RoleBinding")
_n = itertools.count(1)
_run = secrets.token_hex(2)  # so a real cluster's leftovers from an earlier run never collide


def unique(prefix: str) -> str:
    return f"{prefix}-{_run}-{next(_n)}"


async def create(api: Kube, manifest: dict[str, Any]) -> dict[str, Any]:
    return await api.request("create", KINDS[manifest["kind"]],
                             namespace=manifest["metadata"].get("namespace"), body=manifest)


async def ready(api: Kube, name: str, generation: int = 0) -> dict[str, Any] | None:
    """The Tenant's status once it is Ready (having observed ``generation``, when given)."""
    obj = await api.get("Tenant", name) or {}
    st = obj.get("status") or {}
    cond = next((c for c in st.get("conditions") or [] if c["type"] == "Ready"), {})
    return st if cond.get("status") == "True" and st.get("observedGeneration", 0) >= generation else None


async def test_a_tenant_gets_a_restricted_namespace_and_its_guard_rails(api: Kube, until: Until) -> None:
    name = unique("acme")
    created = await create(api, tenant(name, owners=[{"name": "alice@example.com"}],
                                       quota={"cpu": "4", "pods": 20}, deletionPolicy="Delete"))
    st = await until(lambda: ready(api, name), timeout=5, what="Ready=True")
    assert st["namespace"] == name
    assert st["observedGeneration"] == 1
    types = {c["type"]: c["status"] for c in st["conditions"]}
    assert types == {"Ready": "True", "NamespaceReady": "True", "QuotaReady": "True", "LimitsReady": "True",
                     "IsolationReady": "True", "AccessReady": "True"}

    ns = await api.get("Namespace", name)
    assert ns is not None
    labels = ns["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["app.kubernetes.io/managed-by"] == "mothership"
    # Delete policy: everything is owned by the Tenant, so the garbage collector can remove it.
    assert ns["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
    for kind in GUARD_RAILS:
        child = await api.get(kind, "mothership", name)
        assert child is not None, kind
        assert child["metadata"]["ownerReferences"][0]["kind"] == "Tenant"
    quota = await api.get("ResourceQuota", "mothership", name)
    assert quota is not None and quota["spec"]["hard"]["pods"] == "20"  # a quantity, as the server stores it
    binding = await api.get("RoleBinding", "mothership", name)
    assert binding is not None
    assert binding["roleRef"]["name"] == "edit"
    assert binding["subjects"][0]["name"] == "alice@example.com"
    policy = await api.get("NetworkPolicy", "mothership", name)
    assert policy is not None
    assert OPERATOR_NAMESPACE in str(policy["spec"]["ingress"])


async def test_deleting_a_retain_tenant_keeps_the_namespace_its_apps_and_guard_rails(
        api: Kube, until: Until) -> None:
    name = unique("keep")
    owner = await create(api, tenant(name))  # Retain is the default
    await until(lambda: ready(api, name), timeout=5, what="Ready=True")
    await create(api, app("shop", name))
    await until(lambda: api.get("Deployment", "shop", name), timeout=5, what="the App's Deployment")
    # A canary the garbage collector must take with the Tenant: once it is gone, GC has run.
    await api.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "canary", "namespace": name, "ownerReferences": [{
            "apiVersion": "mothership.dev/v1alpha1", "kind": "Tenant", "name": name,
            "uid": owner["metadata"]["uid"]}]}})

    await api.delete("Tenant", name)
    await until(lambda: _gone(api.get("Tenant", name)), timeout=5, what="the Tenant gone")
    await until(lambda: _gone(api.get("ConfigMap", "canary", name)), timeout=10, what="GC done")

    assert await api.get("Namespace", name) is not None
    assert await api.get("App", "shop", name) is not None
    assert await api.get("Deployment", "shop", name) is not None
    assert await api.get("LimitRange", "mothership", name) is not None
    assert await api.get("NetworkPolicy", "mothership", name) is not None


async def test_deleting_a_delete_tenant_deletes_its_namespace(api: Kube, until: Until) -> None:
    name = unique("gone")
    await create(api, tenant(name, deletionPolicy="Delete"))
    await until(lambda: ready(api, name), timeout=5, what="Ready=True")
    await create(api, app("shop", name))
    await until(lambda: api.get("Deployment", "shop", name), timeout=5)

    await api.delete("Tenant", name)

    await until(lambda: _gone(api.get("Namespace", name)), timeout=30, what="the namespace deleted")
    await until(lambda: _gone(api.get("Tenant", name)), timeout=5, what="the Tenant gone")


async def test_dropping_the_owners_deletes_the_role_binding(api: Kube, until: Until) -> None:
    name = unique("owners")
    await create(api, tenant(name, owners=[{"name": "bob"}]))
    await until(lambda: api.get("RoleBinding", "mothership", name), timeout=5, what="the RoleBinding")

    await api.patch("Tenant", name, None, {"spec": {"owners": []}})

    await until(lambda: _gone(api.get("RoleBinding", "mothership", name)), timeout=5,
                what="the RoleBinding deleted")
    # The RoleBinding may go before the status is written: wait for the status of generation 2.
    st = await until(lambda: ready(api, name, generation=2), timeout=5, what="Ready at generation 2")
    assert st["observedGeneration"] == 2


async def test_a_tenant_may_not_claim_a_system_namespace(api: Kube, until: Until) -> None:
    name = unique("sneaky")
    await create(api, tenant(name, namespace="kube-system", deletionPolicy="Delete"))

    async def refused() -> dict[str, Any] | None:
        st = ((await api.get("Tenant", name)) or {}).get("status") or {}
        cond = next((c for c in st.get("conditions") or [] if c["type"] == "Ready"), {})
        return cond if cond.get("reason") == "InvalidSpec" else None

    cond = await until(refused, timeout=5, what="InvalidSpec")
    assert "kube-system" in cond["message"]
    ns = await api.get("Namespace", "kube-system")
    assert ns is not None and not ns["metadata"].get("ownerReferences")


async def _gone(value: Awaitable[Any]) -> bool:
    return (await value) is None



async def test_a_guard_rail_deleted_or_edited_by_hand_is_put_back_within_5_seconds(
        api: Kube, until: Until) -> None:
    name = unique("drift")
    await create(api, tenant(name, owners=[{"name": "alice@example.com"}], quota={"pods": 20}))
    await until(lambda: ready(api, name), timeout=5, what="Ready=True")

    await api.delete(KINDS["ResourceQuota"], "mothership", name)

    async def quota_back() -> bool:
        quota = await api.get("ResourceQuota", "mothership", name)
        return quota is not None and quota["spec"]["hard"].get("pods") == "20"

    await until(quota_back, timeout=5, what="the deleted ResourceQuota back")

    await api.patch(KINDS["RoleBinding"], "mothership", name,
                    {"subjects": [{"kind": "User", "name": "mallory@example.com",
                                   "apiGroup": "rbac.authorization.k8s.io"}]})

    async def owners_back() -> bool:
        binding = await api.get("RoleBinding", "mothership", name)
        return binding is not None and [s["name"] for s in binding["subjects"]] == ["alice@example.com"]

    await until(owners_back, timeout=5, what="the hand-edited RoleBinding's subjects put back")
