"""Discovery documents, as kopf's scanner and kubectl read them."""

from __future__ import annotations

from .conftest import Api

BUILTINS = {
    "v1": {"namespaces", "pods", "services", "configmaps", "secrets", "events",
           "serviceaccounts", "resourcequotas", "limitranges", "endpoints"},
    "apps/v1": {"deployments"},
    "batch/v1": {"jobs"},
    "networking.k8s.io/v1": {"ingresses", "networkpolicies"},
    "rbac.authorization.k8s.io/v1": {"roles", "rolebindings", "clusterroles",
                                     "clusterrolebindings"},
    "autoscaling/v2": {"horizontalpodautoscalers"},
    "policy/v1": {"poddisruptionbudgets"},
    "coordination.k8s.io/v1": {"leases"},
    "events.k8s.io/v1": {"events"},
    "apiextensions.k8s.io/v1": {"customresourcedefinitions"},
}


async def test_version_reports_a_kubernetes_release(api: Api) -> None:
    status, body = await api.get("/version")
    assert status == 200
    assert body["major"] == "1" and body["gitVersion"].startswith("v1.")


async def test_core_group_is_listed_at_api_and_not_among_apis(api: Api) -> None:
    _, core = await api.get("/api")
    _, groups = await api.get("/apis")
    assert core["kind"] == "APIVersions" and core["versions"] == ["v1"]
    assert groups["kind"] == "APIGroupList"
    assert "" not in {g["name"] for g in groups["groups"]}


async def test_every_builtin_resource_is_discoverable_in_its_group_version(api: Api) -> None:
    _, groups = await api.get("/apis")
    served = {v["groupVersion"] for g in groups["groups"] for v in g["versions"]}
    for group_version, plurals in BUILTINS.items():
        if group_version != "v1":
            assert group_version in served
        path = f"/api/{group_version}" if group_version == "v1" else f"/apis/{group_version}"
        status, body = await api.get(path)
        assert status == 200, path
        assert body["kind"] == "APIResourceList" and body["groupVersion"] == group_version
        assert plurals <= {r["name"] for r in body["resources"]}


async def test_api_resources_carry_what_kopf_and_kubectl_read(api: Api) -> None:
    _, body = await api.get("/apis/apps/v1")
    entries = {r["name"]: r for r in body["resources"]}
    deployments = entries["deployments"]
    assert deployments["singularName"] == "deployment"
    assert deployments["kind"] == "Deployment"
    assert deployments["namespaced"] is True
    assert deployments["shortNames"] == ["deploy"]
    assert deployments["categories"] == ["all"]
    assert set(deployments["verbs"]) == {"create", "delete", "deletecollection", "get", "list",
                                         "patch", "update", "watch"}
    assert entries["deployments/status"]["verbs"] == ["get", "patch", "update"]
    assert entries["deployments/scale"]["kind"] == "Scale"


async def test_namespaces_are_cluster_scoped_with_status_and_finalize_subresources(api: Api) -> None:
    _, body = await api.get("/api/v1")
    entries = {r["name"]: r for r in body["resources"]}
    assert entries["namespaces"]["namespaced"] is False
    assert "deletecollection" not in entries["namespaces"]["verbs"]
    assert {"namespaces/status", "namespaces/finalize"} <= set(entries)
    assert "configmaps/status" not in entries


async def test_a_group_document_names_its_preferred_version(api: Api) -> None:
    status, body = await api.get("/apis/batch")
    assert status == 200
    assert body["kind"] == "APIGroup"
    assert body["preferredVersion"] == {"groupVersion": "batch/v1", "version": "v1"}


async def test_unknown_groups_and_versions_are_404(api: Api) -> None:
    assert (await api.get("/apis/nope.example.com"))[0] == 404
    assert (await api.get("/apis/apps/v9"))[0] == 404
    status, body = await api.get("/apis/apps/v1/nothings")
    assert status == 404 and body["kind"] == "Status" and body["reason"] == "NotFound"


async def test_initial_namespaces_exist_like_on_a_new_cluster(api: Api) -> None:
    _, body = await api.get("/api/v1/namespaces")
    names = {ns["metadata"]["name"] for ns in body["items"]}
    assert names == {"default", "kube-system", "kube-public", "kube-node-lease"}
    default = next(ns for ns in body["items"] if ns["metadata"]["name"] == "default")
    assert default["status"] == {"phase": "Active"}
    assert default["metadata"]["labels"] == {"kubernetes.io/metadata.name": "default"}
