"""Garbage collection by ownerReferences, and namespace deletion."""

from __future__ import annotations

from typing import Any

from .conftest import Api
from .server import Emulator
from .test_watch import watch

CMS = "/api/v1/namespaces/default/configmaps"
SECRETS = "/api/v1/namespaces/default/secrets"


def ref(owner: dict[str, Any], block: bool | None = None) -> dict[str, Any]:
    reference = {"apiVersion": owner["apiVersion"], "kind": owner["kind"],
                 "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"]}
    if block is not None:
        reference["blockOwnerDeletion"] = block
    return reference


async def family(api: Api, children: int = 2, block: bool | None = None,
                 child_finalizers: list[str] | None = None) -> dict[str, Any]:
    _, owner = await api.post(CMS, {"metadata": {"name": "owner"}})
    for n in range(children):
        meta = {"name": f"child-{n}", "ownerReferences": [ref(owner, block)]}
        if child_finalizers:
            meta["finalizers"] = child_finalizers
        status, _ = await api.post(SECRETS, {"metadata": meta})
        assert status == 201
    return owner  # type: ignore[no-any-return]


def secrets(kube: Emulator) -> list[str]:
    return [s["metadata"]["name"] for s in kube.list("v1", "secrets", "default")]


async def test_background_deletion_removes_the_owner_first_then_its_dependents(
        api: Api, kube: Emulator, until: Any) -> None:
    owner = await family(api)
    async with watch(api, "/api/v1/namespaces/default/configmaps",
                     resourceVersion=owner["metadata"]["resourceVersion"]) as owners:
        status, _ = await api.delete(f"{CMS}/owner")
        assert status == 200
        assert (await owners.next())["type"] == "DELETED"
    await until(lambda: secrets(kube) == [], timeout=3)


async def test_foreground_deletion_waits_for_blocking_dependents(
        api: Api, kube: Emulator, until: Any) -> None:
    await family(api, block=True, child_finalizers=["example.com/hold"])
    status, body = await api.delete(f"{CMS}/owner", propagationPolicy="Foreground")
    assert status == 200
    assert body["metadata"]["finalizers"] == ["foregroundDeletion"]
    assert body["metadata"]["deletionTimestamp"]
    await until(lambda: all(s["metadata"].get("deletionTimestamp")
                            for s in kube.list("v1", "secrets", "default")), timeout=3)
    assert kube.get("v1", "configmaps", "owner", "default") is not None
    for n in range(2):
        await api.patch(f"{SECRETS}/child-{n}", {"metadata": {"finalizers": None}})
    await until(lambda: kube.get("v1", "configmaps", "owner", "default") is None, timeout=3)
    assert secrets(kube) == []


async def test_foreground_deletion_does_not_wait_for_non_blocking_dependents(
        api: Api, kube: Emulator, until: Any) -> None:
    await family(api, block=False, child_finalizers=["example.com/hold"])
    await api.delete(f"{CMS}/owner", body={"propagationPolicy": "Foreground"})
    await until(lambda: kube.get("v1", "configmaps", "owner", "default") is None, timeout=3)
    assert len(secrets(kube)) == 2


async def test_orphan_deletion_leaves_dependents_without_the_reference(
        api: Api, kube: Emulator, until: Any) -> None:
    await family(api)
    status, body = await api.delete(f"{CMS}/owner", propagationPolicy="Orphan")
    assert status == 200 and body["metadata"]["finalizers"] == ["orphan"]
    await until(lambda: kube.get("v1", "configmaps", "owner", "default") is None, timeout=3)
    children = kube.list("v1", "secrets", "default")
    assert len(children) == 2
    assert all("ownerReferences" not in c["metadata"] for c in children)


async def test_jobs_orphan_their_pods_by_default_as_batch_v1_does(
        api: Api, kube: Emulator, until: Any) -> None:
    job = {"metadata": {"name": "j"}, "spec": {"template": {"spec": {
        "restartPolicy": "Never", "containers": [{"name": "w", "image": "i"}]}}}}
    for policy in (None, "Background"):
        _, created = await api.post("/apis/batch/v1/namespaces/default/jobs", job)
        pod = {"metadata": {"name": "j-0", "ownerReferences": [ref(created, True)]},
               "spec": {"containers": [{"name": "w", "image": "i"}]}}
        await api.post("/api/v1/namespaces/default/pods", pod)
        params = {"propagationPolicy": policy} if policy else {}
        await api.delete("/apis/batch/v1/namespaces/default/jobs/j", **params)
        await until(lambda: kube.get("batch/v1", "jobs", "j", "default") is None, timeout=3)
        if policy is None:
            def orphaned() -> bool:
                pod = kube.get("v1", "pods", "j-0", "default")
                return pod is not None and "ownerReferences" not in pod["metadata"]

            await until(orphaned, timeout=3)
            await api.delete("/api/v1/namespaces/default/pods/j-0")
        else:
            await until(lambda: kube.get("v1", "pods", "j-0", "default") is None, timeout=3)


async def test_dependents_created_for_a_missing_owner_are_collected(
        api: Api, kube: Emulator, until: Any) -> None:
    ghost = {"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost",
             "uid": "00000000-0000-4000-8000-000000000000"}
    status, _ = await api.post(SECRETS, {"metadata": {"name": "orphaned", "ownerReferences": [ghost]}})
    assert status == 201
    await until(lambda: secrets(kube) == [], timeout=3)


async def test_a_dependent_with_another_live_owner_only_loses_the_dead_reference(
        api: Api, kube: Emulator, until: Any) -> None:
    _, first = await api.post(CMS, {"metadata": {"name": "first"}})
    _, second = await api.post(CMS, {"metadata": {"name": "second"}})
    await api.post(SECRETS, {"metadata": {"name": "shared", "ownerReferences": [ref(first), ref(second)]}})
    await api.delete(f"{CMS}/first")

    def refs() -> list[str]:
        shared = kube.get("v1", "secrets", "shared", "default")
        return [r["name"] for r in shared["metadata"]["ownerReferences"]] if shared else []

    await until(lambda: refs() == ["second"], timeout=3)


async def test_collection_cascades_through_generations(
        api: Api, kube: Emulator, until: Any) -> None:
    _, grandparent = await api.post(CMS, {"metadata": {"name": "grandparent"}})
    _, parent = await api.post(CMS, {"metadata": {"name": "parent", "ownerReferences": [ref(grandparent)]}})
    await api.post(CMS, {"metadata": {"name": "child", "ownerReferences": [ref(parent)]}})
    await api.delete(f"{CMS}/grandparent")
    await until(lambda: kube.list("v1", "configmaps", "default") == [], timeout=3)


async def test_an_owner_in_another_namespace_does_not_count(
        api: Api, kube: Emulator, until: Any) -> None:
    await api.post("/api/v1/namespaces", {"metadata": {"name": "elsewhere"}})
    _, owner = await api.post("/api/v1/namespaces/elsewhere/configmaps", {"metadata": {"name": "o"}})
    await api.post(SECRETS, {"metadata": {"name": "stray", "ownerReferences": [ref(owner)]}})
    await until(lambda: secrets(kube) == [], timeout=3)


async def test_namespace_deletion_terminates_then_removes_all_its_content(
        api: Api, kube: Emulator, until: Any) -> None:
    await api.post("/api/v1/namespaces", {"metadata": {"name": "tenant"}})
    for kind in ("configmaps", "secrets"):
        await api.post(f"/api/v1/namespaces/tenant/{kind}",
                       {"metadata": {"name": "x", "finalizers": ["example.com/hold"]}})
    status, body = await api.delete("/api/v1/namespaces/tenant")
    assert status == 200
    assert body["status"]["phase"] == "Terminating"
    assert body["metadata"]["deletionTimestamp"]
    assert body["spec"]["finalizers"] == ["kubernetes"]
    status, refused = await api.post("/api/v1/namespaces/tenant/configmaps", {"metadata": {"name": "new"}})
    assert status == 403 and refused["reason"] == "Forbidden"
    await until(lambda: all(o["metadata"].get("deletionTimestamp")
                            for o in kube.list("v1", "configmaps", "tenant")), timeout=3)
    assert kube.get("v1", "namespaces", "tenant") is not None
    for kind in ("configmaps", "secrets"):
        await api.patch(f"/api/v1/namespaces/tenant/{kind}/x", {"metadata": {"finalizers": None}})
    await until(lambda: kube.get("v1", "namespaces", "tenant") is None, timeout=3)
