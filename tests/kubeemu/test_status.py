"""The status subresource splits an object between its users and its controllers."""

from __future__ import annotations

from .conftest import Api
from .test_metadata import DEPLOYS, deployment

CMS = "/api/v1/namespaces/default/configmaps"


async def test_status_sent_on_create_is_dropped_when_a_status_subresource_exists(api: Api) -> None:
    body = {**deployment("web"), "status": {"replicas": 9}}
    _, created = await api.post(DEPLOYS, body)
    assert "replicas" not in created.get("status", {})


async def test_the_main_endpoint_ignores_status_changes(api: Api) -> None:
    await api.post(DEPLOYS, deployment("web"))
    patch = {"status": {"replicas": 3}, "metadata": {"labels": {"a": "b"}}}
    _, body = await api.patch(f"{DEPLOYS}/web", patch)
    assert "replicas" not in body.get("status", {})
    assert body["metadata"]["labels"] == {"a": "b"}
    body["status"] = {"readyReplicas": 3}
    _, replaced = await api.put(f"{DEPLOYS}/web", body)
    assert "readyReplicas" not in replaced.get("status", {})


async def test_the_status_endpoint_changes_only_status(api: Api) -> None:
    await api.post(DEPLOYS, deployment("web"))
    patch = {"status": {"replicas": 1, "readyReplicas": 1}, "spec": {"replicas": 7},
             "metadata": {"labels": {"ignored": "yes"}}}
    status, body = await api.patch(f"{DEPLOYS}/web/status", patch)
    assert status == 200
    assert body["status"] == {"replicas": 1, "readyReplicas": 1}
    assert body["spec"]["replicas"] == 1
    assert "labels" not in body["metadata"]
    body["status"] = {"replicas": 2}
    body["spec"]["replicas"] = 5
    _, replaced = await api.put(f"{DEPLOYS}/web/status", body)
    assert replaced["status"] == {"replicas": 2} and replaced["spec"]["replicas"] == 1


async def test_status_can_be_read_through_the_subresource(api: Api) -> None:
    await api.post(DEPLOYS, deployment("web"))
    await api.patch(f"{DEPLOYS}/web/status", {"status": {"replicas": 1}})
    status, body = await api.get(f"{DEPLOYS}/web/status")
    assert status == 200 and body["status"] == {"replicas": 1}


async def test_status_updates_respect_optimistic_concurrency(api: Api) -> None:
    _, created = await api.post(DEPLOYS, deployment("web"))
    await api.patch(f"{DEPLOYS}/web", {"spec": {"replicas": 2}})
    created["status"] = {"replicas": 1}
    status, _ = await api.put(f"{DEPLOYS}/web/status", created)
    assert status == 409


async def test_types_without_a_status_subresource_have_no_status_endpoint(api: Api) -> None:
    await api.post(CMS, {"metadata": {"name": "a"}})
    status, _ = await api.get(f"{CMS}/a/status")
    assert status == 404


async def test_pods_start_pending_and_a_kubelet_stand_in_can_report_them_running(api: Api) -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    _, created = await api.post("/api/v1/namespaces/default/pods", pod)
    assert created["status"]["phase"] == "Pending"
    running = {"status": {"phase": "Running", "podIP": "127.0.0.2",
                          "conditions": [{"type": "Ready", "status": "True"}]}}
    _, body = await api.patch("/api/v1/namespaces/default/pods/p/status", running)
    assert body["status"]["phase"] == "Running" and body["status"]["podIP"] == "127.0.0.2"
