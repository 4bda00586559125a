"""Tenants end to end: the namespace and its guard rails, status, deletionPolicy Retain vs Delete,
and whose namespace it is (no takeover between Tenants, adoption, the LoadTest policy's owner)."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from mothership.kube import KINDS, Kube
from tests.loadtests.test_e2e import loadtest
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
    assert types == {"Ready": "True", "Accepted": "True", "NamespaceReady": "True", "QuotaReady": "True",
                     "LimitsReady": "True", "IsolationReady": "True", "AccessReady": "True"}

    ns = await api.get("Namespace", name)
    assert ns is not None
    labels = ns["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["app.kubernetes.io/managed-by"] == "mothership"
    assert ns["metadata"]["annotations"]["mothership.dev/created-by-tenant"] == name
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


# --- Whose namespace it is ----------------------------------------------------------------------


async def condition(api: Kube, name: str, type_: str, reason: str) -> dict[str, Any] | None:
    """The Tenant's ``type_`` condition once it has ``reason``."""
    st = ((await api.get("Tenant", name)) or {}).get("status") or {}
    cond = next((c for c in st.get("conditions") or [] if c["type"] == type_), {})
    return cond if cond.get("reason") == reason else None


async def events(api: Kube, name: str, reason: str) -> list[dict[str, Any]]:
    """Events about the (cluster-scoped) Tenant ``name``: they live in ``default``."""
    return [e for e in await api.list("Event", "default")
            if e["involvedObject"].get("name") == name and e.get("reason") == reason]


async def test_a_second_tenant_naming_a_taken_namespace_is_refused_changes_nothing_and_deletes_nothing(
        api: Kube, until: Until) -> None:
    victim = unique("acme")
    await create(api, tenant(victim, owners=[{"name": "alice@example.com"}], deletionPolicy="Delete"))
    await until(lambda: ready(api, victim), timeout=5, what="the first Tenant Ready")
    before = await api.get("Namespace", victim)
    assert before is not None

    thief = unique("thief")
    await create(api, tenant(thief, namespace=victim, owners=[{"name": "mallory@example.com"}],
                             deletionPolicy="Delete"))
    accepted = await until(lambda: condition(api, thief, "Accepted", "NamespaceTaken"), timeout=5,
                           what="the thief's Accepted=False NamespaceTaken")
    assert accepted["status"] == "False"
    assert f"belongs to Tenant {victim}" in accepted["message"]
    st = ((await api.get("Tenant", thief)) or {})["status"]
    assert {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]} == {
        "Ready": ("False", "NamespaceTaken"), "Accepted": ("False", "NamespaceTaken")}
    assert "namespace" not in st
    assert len(await until(lambda: events(api, thief, "NamespaceTaken"), timeout=5, what="the Event")) == 1

    binding = await api.get("RoleBinding", "mothership", victim)
    assert binding is not None and [s["name"] for s in binding["subjects"]] == ["alice@example.com"]
    ns = await api.get("Namespace", victim)
    assert ns is not None
    assert ns["metadata"]["labels"] == before["metadata"]["labels"]
    assert ns["metadata"]["annotations"] == before["metadata"]["annotations"]
    assert [r["name"] for r in ns["metadata"]["ownerReferences"]] == [victim]
    assert await ready(api, victim) is not None

    # The thief's deletionPolicy Delete must not take the namespace with it.
    await api.delete("Tenant", thief)
    await until(lambda: _gone(api.get("Tenant", thief)), timeout=5, what="the thief gone")
    ns = await api.get("Namespace", victim)
    assert ns is not None and not ns["metadata"].get("deletionTimestamp")
    assert ns["metadata"]["labels"]["mothership.dev/tenant"] == victim


async def test_adopt_cannot_take_a_namespace_another_tenant_owns(api: Kube, until: Until) -> None:
    owner = unique("owner")
    await create(api, tenant(owner, owners=[{"name": "alice@example.com"}]))
    await until(lambda: ready(api, owner), timeout=5, what="the owner Ready")

    thief = unique("adopter")
    await create(api, tenant(thief, namespace=owner, adopt=True, owners=[{"name": "mallory@example.com"}]))
    accepted = await until(lambda: condition(api, thief, "Accepted", "NamespaceTaken"), timeout=5,
                           what="the adopter refused")
    assert f"belongs to Tenant {owner}" in accepted["message"]
    binding = await api.get("RoleBinding", "mothership", owner)
    assert binding is not None and [s["name"] for s in binding["subjects"]] == ["alice@example.com"]
    ns = await api.get("Namespace", owner)
    assert ns is not None and ns["metadata"]["labels"]["mothership.dev/tenant"] == owner


async def test_a_tenant_takes_an_existing_namespace_only_with_adopt_and_delete_then_keeps_it(
        api: Kube, until: Until, namespace: str) -> None:
    name = unique("adopt")
    await create(api, tenant(name, namespace=namespace, deletionPolicy="Delete",
                             owners=[{"name": "alice@example.com"}]))
    refused = await until(lambda: condition(api, name, "Accepted", "NamespaceTaken"), timeout=5,
                          what="refused without adopt")
    assert "belongs to no Tenant" in refused["message"] and "spec.adopt: true" in refused["message"]
    ns = await api.get("Namespace", namespace)
    assert ns is not None and "mothership.dev/tenant" not in ns["metadata"]["labels"]

    await api.patch("Tenant", name, None, {"spec": {"adopt": True}})
    await until(lambda: ready(api, name, generation=2), timeout=5, what="Ready once adopted")
    accepted = await condition(api, name, "Accepted", "NamespaceClaimed")
    assert accepted is not None and "adopted" in accepted["message"]
    ns = await api.get("Namespace", namespace)
    assert ns is not None
    assert ns["metadata"]["labels"]["mothership.dev/tenant"] == name
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert "mothership.dev/created-by-tenant" not in (ns["metadata"].get("annotations") or {})
    assert not ns["metadata"].get("ownerReferences")
    assert await api.get("RoleBinding", "mothership", namespace) is not None

    await api.delete("Tenant", name)
    await until(lambda: _gone(api.get("Tenant", name)), timeout=5, what="the Tenant gone")
    # Its guard rails were the Tenant's: once the garbage collector has taken them, it has run.
    await until(lambda: _gone(api.get("LimitRange", "mothership", namespace)), timeout=10, what="GC done")
    ns = await api.get("Namespace", namespace)
    assert ns is not None and not ns["metadata"].get("deletionTimestamp")


async def test_a_loadtest_gets_the_owning_tenants_limits_even_when_another_tenant_names_its_namespace(
        api: Kube, until: Until) -> None:
    owner = unique("lt-owner")
    await create(api, tenant(owner, loadTests={"maxWorkers": 1, "allowedTargets": ["127.0.0.1:*"]}))
    await until(lambda: ready(api, owner), timeout=5, what="the owner Ready")
    # Named to be listed first: "the first Tenant found" would be this one.
    thief = unique("a-thief")
    await create(api, tenant(thief, namespace=owner,
                             loadTests={"maxWorkers": 50, "allowedTargets": ["127.0.0.1:*"]}))
    await until(lambda: condition(api, thief, "Accepted", "NamespaceTaken"), timeout=5,
                what="the thief refused")

    await create(api, loadtest("greedy", owner, "http://127.0.0.1:9", workers=3, virtualUsers=3))

    async def refused() -> dict[str, Any] | None:
        lt = await api.get("LoadTest", "greedy", owner) or {}
        conds = (lt.get("status") or {}).get("conditions") or []
        cond = next((c for c in conds if c["type"] == "Accepted"), {})
        return cond if cond.get("status") == "False" else None

    accepted = await until(refused, timeout=10, what="the LoadTest refused")
    assert accepted["reason"] == "TooManyWorkers"
    assert "at most 1" in accepted["message"]
