"""List with selectors, the patch types, delete and deletecollection, events, scale."""

from __future__ import annotations

import pytest

from .conftest import Api
from .test_metadata import DEPLOYS, deployment

CMS = "/api/v1/namespaces/default/configmaps"


async def make(api: Api, name: str, labels: dict[str, str] | None = None,
               namespace: str = "default") -> None:
    status, _ = await api.post(f"/api/v1/namespaces/{namespace}/configmaps",
                               {"metadata": {"name": name, "labels": labels or {}}})
    assert status == 201


async def names(api: Api, path: str = CMS, **params: str) -> list[str]:
    status, body = await api.get(path, **params)
    assert status == 200, body
    return [item["metadata"]["name"] for item in body["items"]]


@pytest.fixture
async def labelled(api: Api) -> Api:
    await make(api, "a", {"tier": "web", "env": "prod"})
    await make(api, "b", {"tier": "db", "env": "prod"})
    await make(api, "c", {"tier": "web"})
    await make(api, "d")
    return api


@pytest.mark.parametrize(("selector", "expected"), [
    ("tier=web", ["a", "c"]),
    ("tier==web", ["a", "c"]),
    ("tier!=web", ["b", "d"]),
    ("tier in (web,db)", ["a", "b", "c"]),
    ("tier notin (web)", ["b", "d"]),
    ("env", ["a", "b"]),
    ("!env", ["c", "d"]),
    ("tier=web,env=prod", ["a"]),
    ("tier in (web, db),!env", ["c"]),
])
async def test_label_selectors_filter_lists(labelled: Api, selector: str, expected: list[str]) -> None:
    assert await names(labelled, labelSelector=selector) == expected


async def test_an_unparsable_label_selector_is_400(api: Api) -> None:
    status, body = await api.get(CMS, labelSelector="tier in web")
    assert status == 400 and body["reason"] == "BadRequest"


async def test_field_selectors_match_name_and_namespace(labelled: Api) -> None:
    assert await names(labelled, fieldSelector="metadata.name=b") == ["b"]
    assert await names(labelled, fieldSelector="metadata.name!=b") == ["a", "c", "d"]
    both = "metadata.namespace=default,metadata.name==a"
    assert await names(labelled, "/api/v1/configmaps", fieldSelector=both) == ["a"]


async def test_an_unknown_field_selector_is_400(api: Api) -> None:
    status, _ = await api.get(CMS, fieldSelector="spec.whatever=1")
    assert status == 400


async def test_pods_can_be_selected_by_phase(api: Api) -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    await api.post("/api/v1/namespaces/default/pods", pod)
    assert await names(api, "/api/v1/pods", fieldSelector="status.phase=Pending") == ["p"]
    assert await names(api, "/api/v1/pods", fieldSelector="status.phase=Running") == []


async def test_lists_across_all_namespaces_cover_every_namespace(api: Api) -> None:
    await api.post("/api/v1/namespaces", {"metadata": {"name": "other"}})
    await make(api, "x")
    await make(api, "y", namespace="other")
    assert await names(api, "/api/v1/configmaps") == ["x", "y"]
    assert await names(api, CMS) == ["x"]


async def test_a_list_carries_its_resource_version_and_typed_items_no_type_meta(api: Api) -> None:
    await make(api, "a")
    _, body = await api.get(CMS)
    assert body["kind"] == "ConfigMapList" and body["apiVersion"] == "v1"
    assert body["metadata"]["resourceVersion"].isdigit()
    assert "kind" not in body["items"][0]


async def test_limit_and_continue_page_through_a_list(api: Api) -> None:
    await api.post("/api/v1/namespaces", {"metadata": {"name": "default-b"}})
    for n in range(5):
        await make(api, f"cm-{n}", namespace="default" if n % 2 else "default-b")
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        params = {"limit": "2", **({"continue": token} if token else {})}
        _, body = await api.get("/api/v1/configmaps", **params)
        seen += [i["metadata"]["name"] for i in body["items"]]
        pages += 1
        token = body["metadata"].get("continue")
        if not token:
            break
    assert seen == ["cm-1", "cm-3", "cm-0", "cm-2", "cm-4"] and pages == 3


async def test_put_replaces_the_whole_object(api: Api) -> None:
    await api.post(CMS, {"metadata": {"name": "a", "labels": {"x": "1"}}, "data": {"a": "1"}})
    status, body = await api.put(f"{CMS}/a", {"metadata": {"name": "a"}, "data": {"b": "2"}})
    assert status == 200
    assert body["data"] == {"b": "2"} and "labels" not in body["metadata"]


async def test_merge_patch_follows_rfc_7386(api: Api) -> None:
    await api.post(CMS, {"metadata": {"name": "a"}, "data": {"keep": "1", "drop": "2"}})
    status, body = await api.patch(f"{CMS}/a", {"data": {"drop": None, "add": "3"}})
    assert status == 200
    assert body["data"] == {"keep": "1", "add": "3"}


async def test_json_patch_follows_rfc_6902(api: Api) -> None:
    await api.post(CMS, {"metadata": {"name": "a", "finalizers": ["x/a"]}, "data": {"k": "v"}})
    ops = [
        {"op": "add", "path": "/metadata/finalizers/-", "value": "x/b"},
        {"op": "replace", "path": "/data/k", "value": "w"},
        {"op": "copy", "from": "/data/k", "path": "/data/c"},
        {"op": "move", "from": "/data/c", "path": "/data/m"},
        {"op": "remove", "path": "/metadata/finalizers/0"},
    ]
    status, body = await api.patch(f"{CMS}/a", ops, "application/json-patch+json")
    assert status == 200
    assert body["metadata"]["finalizers"] == ["x/b"]
    assert body["data"] == {"k": "w", "m": "w"}
    await api.delete(f"{CMS}/a")


async def test_a_failing_json_patch_test_op_is_422_as_kopf_expects(api: Api) -> None:
    _, body = await api.post(CMS, {"metadata": {"name": "a"}})
    await api.patch(f"{CMS}/a", {"data": {"k": "v"}})
    ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": body["metadata"]["resourceVersion"]},
           {"op": "add", "path": "/data/x", "value": "y"}]
    status, answer = await api.patch(f"{CMS}/a", ops, "application/json-patch+json")
    assert status == 422
    assert answer["reason"] == "Invalid"


async def test_a_json_patch_on_a_missing_path_is_422(api: Api) -> None:
    await api.post(CMS, {"metadata": {"name": "a"}})
    ops = [{"op": "remove", "path": "/data/nothing"}]
    status, _ = await api.patch(f"{CMS}/a", ops, "application/json-patch+json")
    assert status == 422


async def test_an_undecodable_patch_is_400_bad_request(api: Api) -> None:
    await api.post(CMS, {"metadata": {"name": "a"}})
    for content_type in ("application/merge-patch+json", "application/json-patch+json",
                         "application/strategic-merge-patch+json"):
        status, body = await api.patch(f"{CMS}/a", b"{not json", content_type)
        assert status == 400 and body["reason"] == "BadRequest", content_type


async def test_a_body_in_an_unsupported_encoding_is_415(api: Api) -> None:
    status, body = await api.request("POST", CMS, b"k8s\x00...", "application/vnd.kubernetes.protobuf")
    assert status == 415 and body["reason"] == "UnsupportedMediaType"


async def test_an_unknown_patch_content_type_is_415(api: Api) -> None:
    await api.post(CMS, {"metadata": {"name": "a"}})
    status, body = await api.patch(f"{CMS}/a", {"data": {}}, "text/plain")
    assert status == 415 and body["reason"] == "UnsupportedMediaType"


async def test_strategic_merge_patch_merges_containers_by_name(api: Api) -> None:
    await api.post(DEPLOYS, deployment("web"))
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": "app", "env": [{"name": "A", "value": "1"}]},
        {"name": "sidecar", "image": "envoy"},
    ]}}}}
    status, body = await api.patch(f"{DEPLOYS}/web", patch, "application/strategic-merge-patch+json")
    assert status == 200
    containers = body["spec"]["template"]["spec"]["containers"]
    assert containers == [
        {"name": "app", "image": "nginx", "env": [{"name": "A", "value": "1"}]},
        {"name": "sidecar", "image": "envoy"},
    ]
    delete = {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}}
    _, body = await api.patch(f"{DEPLOYS}/web", delete, "application/strategic-merge-patch+json")
    assert [c["name"] for c in body["spec"]["template"]["spec"]["containers"]] == ["app"]


async def test_strategic_merge_patch_merges_finalizers_as_a_set(api: Api) -> None:
    await api.post(CMS, {"metadata": {"name": "a", "finalizers": ["x/a"]}})
    _, body = await api.patch(f"{CMS}/a", {"metadata": {"finalizers": ["x/b"]}},
                              "application/strategic-merge-patch+json")
    assert body["metadata"]["finalizers"] == ["x/a", "x/b"]
    removal = {"metadata": {"$deleteFromPrimitiveList/finalizers": ["x/a", "x/b"]}}
    _, body = await api.patch(f"{CMS}/a", removal, "application/strategic-merge-patch+json")
    assert "finalizers" not in body["metadata"]


async def test_delete_answers_a_success_status_for_most_types(api: Api) -> None:
    _, created = await api.post(CMS, {"metadata": {"name": "a"}})
    status, body = await api.delete(f"{CMS}/a")
    assert status == 200
    assert body["kind"] == "Status" and body["status"] == "Success"
    assert body["details"] == {"name": "a", "kind": "configmaps", "uid": created["metadata"]["uid"]}
    assert (await api.get(f"{CMS}/a"))[0] == 404
    assert (await api.delete(f"{CMS}/a"))[0] == 404


async def test_delete_answers_the_object_for_pods(api: Api) -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    await api.post("/api/v1/namespaces/default/pods", pod)
    status, body = await api.delete("/api/v1/namespaces/default/pods/p")
    assert status == 200 and body["kind"] == "Pod"


async def test_delete_preconditions_guard_against_races(api: Api) -> None:
    await api.post(CMS, {"metadata": {"name": "a"}})
    status, _ = await api.delete(f"{CMS}/a", {"preconditions": {"uid": "someone-else"}})
    assert status == 409


async def test_deletecollection_deletes_what_the_selector_selects(labelled: Api) -> None:
    status, body = await labelled.delete(CMS, labelSelector="tier=web")
    assert status == 200 and body["kind"] == "ConfigMapList"
    assert sorted(i["metadata"]["name"] for i in body["items"]) == ["a", "c"]
    assert await names(labelled) == ["b", "d"]


async def test_an_unknown_propagation_policy_is_422(api: Api) -> None:
    await api.post(CMS, {"metadata": {"name": "a"}})
    status, _ = await api.delete(f"{CMS}/a", propagationPolicy="Sometimes")
    assert status == 422


async def test_core_and_events_k8s_io_events_are_accepted(api: Api) -> None:
    core = {"metadata": {"generateName": "kopf-event-"}, "type": "Normal", "reason": "Logging",
            "message": "hello", "involvedObject": {"kind": "ConfigMap", "name": "a",
                                                   "namespace": "default"}}
    status, body = await api.post("/api/v1/namespaces/default/events", core)
    assert status == 201 and body["metadata"]["name"].startswith("kopf-event-")
    modern = {"metadata": {"name": "e1"}, "eventTime": "2024-01-01T00:00:00.000000Z",
              "reportingController": "mothership", "reportingInstance": "x", "action": "Apply",
              "reason": "Applied", "type": "Normal", "regarding": {"kind": "ConfigMap", "name": "a"}}
    status, _ = await api.post("/apis/events.k8s.io/v1/namespaces/default/events", modern)
    assert status == 201
    selected = await names(api, "/api/v1/events", fieldSelector="involvedObject.name=a,reason=Logging")
    assert selected == [body["metadata"]["name"]]


async def test_the_scale_subresource_reads_and_writes_replicas(api: Api) -> None:
    await api.post(DEPLOYS, deployment("web", replicas=2))
    status, scale = await api.get(f"{DEPLOYS}/web/scale")
    assert status == 200 and scale["kind"] == "Scale" and scale["spec"] == {"replicas": 2}
    assert scale["status"]["selector"] == "app=web"
    status, scale = await api.patch(f"{DEPLOYS}/web/scale", {"spec": {"replicas": 5}})
    assert status == 200 and scale["spec"]["replicas"] == 5
    _, body = await api.get(f"{DEPLOYS}/web")
    assert body["spec"]["replicas"] == 5 and body["metadata"]["generation"] == 2


async def test_tables_are_served_to_clients_that_ask_for_them(api: Api) -> None:
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    async with api.session.get("/api/v1/namespaces", headers={"Accept": accept}) as response:
        body = await response.json()
    assert body["kind"] == "Table"
    assert [c["name"] for c in body["columnDefinitions"]] == ["Name", "Status", "Age"]
    assert body["rows"][0]["cells"][:2] == ["default", "Active"]


async def test_calls_are_counted_by_rbac_verb_without_growing_per_request(api: Api, kube) -> None:  # type: ignore[no-untyped-def]
    await make(api, "a")
    for _ in range(20):
        await api.get(f"{CMS}/a")
    await api.get(CMS)
    await api.patch(f"{CMS}/a", {"data": {"x": "y"}})
    assert kube.calls[("get", "", "configmaps", "")] == 20
    assert kube.calls[("list", "", "configmaps", "")] == 1
    assert kube.calls[("create", "", "configmaps", "")] == 1
    assert kube.calls[("patch", "", "configmaps", "")] == 1
    assert len(kube.calls) == 4
