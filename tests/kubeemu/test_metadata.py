"""System metadata and the status codes of create, read and update."""

from __future__ import annotations

import re
import uuid
from typing import Any

from .conftest import Api

CMS = "/api/v1/namespaces/default/configmaps"
DEPLOYS = "/apis/apps/v1/namespaces/default/deployments"


def deployment(name: str, image: str = "nginx", replicas: int = 1) -> dict[str, Any]:
    labels = {"app": name}
    body: dict[str, Any] = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "app", "image": image}]}}},
    }
    return body


async def test_create_answers_201_with_uid_resource_version_and_timestamp(api: Api) -> None:
    status, body = await api.post(CMS, {"metadata": {"name": "a"}, "data": {"k": "v"}})
    assert status == 201
    meta = body["metadata"]
    assert uuid.UUID(meta["uid"]).version == 4
    assert meta["resourceVersion"].isdigit()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["creationTimestamp"])
    assert meta["namespace"] == "default"
    assert body["apiVersion"] == "v1" and body["kind"] == "ConfigMap"


async def test_resource_versions_increase_across_all_types(api: Api) -> None:
    _, a = await api.post(CMS, {"metadata": {"name": "a"}})
    _, b = await api.post("/api/v1/namespaces/default/secrets", {"metadata": {"name": "b"}})
    _, c = await api.patch(f"{CMS}/a", {"data": {"x": "y"}})
    versions = [int(o["metadata"]["resourceVersion"]) for o in (a, b, c)]
    assert versions == sorted(versions) and len(set(versions)) == 3


async def test_get_answers_200_with_the_stored_object(api: Api) -> None:
    _, created = await api.post(CMS, {"metadata": {"name": "a"}, "data": {"k": "v"}})
    status, body = await api.get(f"{CMS}/a")
    assert status == 200 and body == created


async def test_creating_an_existing_name_is_409_already_exists(api: Api) -> None:
    await api.post(CMS, {"metadata": {"name": "a"}})
    status, body = await api.post(CMS, {"metadata": {"name": "a"}})
    assert status == 409
    assert body["reason"] == "AlreadyExists"
    assert body["details"] == {"name": "a", "kind": "configmaps"}


async def test_a_missing_object_is_404_with_a_status_body(api: Api) -> None:
    status, body = await api.get("/apis/apps/v1/namespaces/default/deployments/ghost")
    assert status == 404
    assert body == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'deployments.apps "ghost" not found', "reason": "NotFound",
        "details": {"name": "ghost", "group": "apps", "kind": "deployments"}, "code": 404,
    }


async def test_creating_in_a_namespace_that_does_not_exist_is_404(api: Api) -> None:
    status, body = await api.post("/api/v1/namespaces/nowhere/configmaps", {"metadata": {"name": "a"}})
    assert status == 404
    assert body["details"] == {"name": "nowhere", "kind": "namespaces"}


async def test_a_name_that_is_not_a_dns_subdomain_is_422_invalid(api: Api) -> None:
    status, body = await api.post(CMS, {"metadata": {"name": "Not_Valid"}})
    assert status == 422
    assert body["reason"] == "Invalid"
    assert body["details"]["kind"] == "ConfigMap"
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    assert "RFC 1123 subdomain" in body["message"]


async def test_a_missing_name_is_422_required(api: Api) -> None:
    status, body = await api.post(CMS, {"metadata": {}})
    assert status == 422
    assert body["details"]["causes"] == [{
        "reason": "FieldValueRequired", "field": "metadata.name",
        "message": "Required value: name or generateName is required",
    }]


async def test_namespace_names_must_be_dns_labels(api: Api) -> None:
    status, body = await api.post("/api/v1/namespaces", {"metadata": {"name": "a.b"}})
    assert status == 422
    assert "RFC 1123 label" in body["message"]


async def test_rbac_names_may_contain_colons(api: Api) -> None:
    status, _ = await api.post("/apis/rbac.authorization.k8s.io/v1/clusterroles",
                               {"metadata": {"name": "system:mothership:edit"}, "rules": []})
    assert status == 201


async def test_a_body_of_another_kind_or_version_is_a_400_bad_request(api: Api) -> None:
    wrong_kind = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "a"}}
    wrong_version = {"apiVersion": "v2", "kind": "ConfigMap", "metadata": {"name": "a"}}
    for body in (wrong_kind, wrong_version):
        status, answer = await api.post(CMS, body)
        assert status == 400 and answer["reason"] == "BadRequest"


async def test_invalid_labels_are_422(api: Api) -> None:
    status, body = await api.post(CMS, {"metadata": {"name": "a", "labels": {"k": "bad value!"}}})
    assert status == 422
    assert body["details"]["causes"][0]["field"] == "metadata.labels"


async def test_generate_name_appends_five_random_characters(api: Api) -> None:
    status, body = await api.post(CMS, {"metadata": {"generateName": "job-"}})
    assert status == 201
    assert re.fullmatch(r"job-[bcdfghjklmnpqrstvwxz2456789]{5}", body["metadata"]["name"])
    assert body["metadata"]["generateName"] == "job-"


async def test_setting_a_resource_version_on_create_is_rejected(api: Api) -> None:
    status, _ = await api.post(CMS, {"metadata": {"name": "a", "resourceVersion": "7"}})
    assert status == 400


async def test_client_supplied_system_fields_are_replaced_on_create(api: Api) -> None:
    status, body = await api.post(CMS, {"metadata": {
        "name": "a", "uid": "mine", "creationTimestamp": "2000-01-01T00:00:00Z",
        "deletionTimestamp": "2000-01-01T00:00:00Z"}})
    assert status == 201
    assert body["metadata"]["uid"] != "mine"
    assert body["metadata"]["creationTimestamp"] != "2000-01-01T00:00:00Z"
    assert "deletionTimestamp" not in body["metadata"]


async def test_generation_starts_at_1_and_grows_only_with_the_spec(api: Api) -> None:
    _, created = await api.post(DEPLOYS, deployment("web"))
    assert created["metadata"]["generation"] == 1
    _, labelled = await api.patch(f"{DEPLOYS}/web", {"metadata": {"labels": {"x": "y"}}})
    assert labelled["metadata"]["generation"] == 1
    _, status_set = await api.patch(f"{DEPLOYS}/web/status", {"status": {"replicas": 1}})
    assert status_set["metadata"]["generation"] == 1
    _, scaled = await api.patch(f"{DEPLOYS}/web", {"spec": {"replicas": 3}})
    assert scaled["metadata"]["generation"] == 2


async def test_update_with_a_stale_resource_version_is_409_conflict(api: Api) -> None:
    _, created = await api.post(CMS, {"metadata": {"name": "a"}, "data": {"v": "1"}})
    await api.patch(f"{CMS}/a", {"data": {"v": "2"}})
    status, body = await api.put(f"{CMS}/a", {**created, "data": {"v": "3"}})
    assert status == 409
    assert body["reason"] == "Conflict"
    assert "the object has been modified" in body["message"]
    stale = {"resourceVersion": created["metadata"]["resourceVersion"]}
    status, _ = await api.patch(f"{CMS}/a", {"metadata": stale, "data": {"v": "4"}})
    assert status == 409


async def test_update_without_a_resource_version_is_unconditional(api: Api) -> None:
    await api.post(CMS, {"metadata": {"name": "a"}, "data": {"v": "1"}})
    status, body = await api.put(f"{CMS}/a", {"metadata": {"name": "a"}, "data": {"v": "2"}})
    assert status == 200 and body["data"] == {"v": "2"}


async def test_update_keeps_uid_and_creation_timestamp(api: Api) -> None:
    _, created = await api.post(CMS, {"metadata": {"name": "a"}})
    _, updated = await api.put(f"{CMS}/a", {"metadata": {
        "name": "a", "creationTimestamp": "2000-01-01T00:00:00Z"}, "data": {"k": "v"}})
    assert updated["metadata"]["uid"] == created["metadata"]["uid"]
    assert updated["metadata"]["creationTimestamp"] == created["metadata"]["creationTimestamp"]


async def test_update_of_a_missing_object_is_404(api: Api) -> None:
    status, _ = await api.put(f"{CMS}/ghost", {"metadata": {"name": "ghost"}})
    assert status == 404


async def test_a_name_in_the_body_that_differs_from_the_url_is_400(api: Api) -> None:
    await api.post(CMS, {"metadata": {"name": "a"}})
    status, _ = await api.put(f"{CMS}/a", {"metadata": {"name": "b"}})
    assert status == 400


async def test_a_no_op_update_keeps_the_resource_version(api: Api) -> None:
    _, created = await api.post(CMS, {"metadata": {"name": "a"}, "data": {"k": "v"}})
    _, same = await api.patch(f"{CMS}/a", {"data": {"k": "v"}})
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


async def test_deployments_need_a_selector_that_matches_the_template(api: Api) -> None:
    body = deployment("web")
    body["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    status, answer = await api.post(DEPLOYS, body)
    assert status == 422
    assert answer["details"]["causes"][0]["field"] == "spec.template.metadata.labels"


async def test_jobs_get_a_generated_selector_and_need_a_restart_policy(api: Api) -> None:
    job: dict[str, Any] = {"metadata": {"name": "j"}, "spec": {"template": {"spec": {
        "containers": [{"name": "w", "image": "busybox"}]}}}}
    status, body = await api.post("/apis/batch/v1/namespaces/default/jobs", job)
    assert status == 422
    assert body["details"]["causes"][0]["field"] == "spec.template.spec.restartPolicy"
    job["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    status, body = await api.post("/apis/batch/v1/namespaces/default/jobs", job)
    assert status == 201
    uid = body["metadata"]["uid"]
    assert body["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    assert body["spec"]["template"]["metadata"]["labels"]["job-name"] == "j"


async def test_services_get_a_cluster_ip_that_survives_updates(api: Api) -> None:
    svc = {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}], "selector": {"a": "b"}}}
    _, created = await api.post("/api/v1/namespaces/default/services", svc)
    ip = created["spec"]["clusterIP"]
    assert re.fullmatch(r"10\.96\.\d+\.\d+", ip)
    assert created["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    _, replaced = await api.put("/api/v1/namespaces/default/services/web", svc)
    assert replaced["spec"]["clusterIP"] == ip
