"""Server-side apply: create-or-update, field ownership, conflicts and removal."""

from __future__ import annotations

import json
from typing import Any

from .conftest import Api
from .test_metadata import DEPLOYS, deployment

APPLY = "application/apply-patch+yaml"
CMS = "/api/v1/namespaces/default/configmaps"


def config_map(data: dict[str, str], labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "a"}
    if labels is not None:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


async def apply(api: Api, path: str, body: Any, manager: str = "mothership",
                **params: Any) -> tuple[int, Any]:
    raw = body if isinstance(body, str) else json.dumps(body)
    return await api.patch(path, raw, APPLY, fieldManager=manager, **params)


async def test_apply_creates_a_missing_object_with_201_then_updates_with_200(api: Api) -> None:
    status, created = await apply(api, f"{CMS}/a", config_map({"k": "v"}))
    assert status == 201 and created["data"] == {"k": "v"}
    status, updated = await apply(api, f"{CMS}/a", config_map({"k": "w"}))
    assert status == 200 and updated["data"] == {"k": "w"}


async def test_apply_accepts_yaml(api: Api) -> None:
    body = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: v\n"
    status, created = await apply(api, f"{CMS}/a", body)
    assert status == 201 and created["data"] == {"k": "v"}


async def test_apply_requires_a_field_manager(api: Api) -> None:
    status, body = await api.patch(f"{CMS}/a", json.dumps(config_map({})), APPLY)
    assert status == 422
    assert body["details"]["causes"][0]["field"] == "fieldManager"


async def test_force_is_only_for_apply(api: Api) -> None:
    await api.post(CMS, {"metadata": {"name": "a"}})
    status, _ = await api.patch(f"{CMS}/a", {"data": {}}, force=True)
    assert status == 422


async def test_reapplying_the_same_configuration_changes_nothing(api: Api) -> None:
    _, first = await apply(api, f"{CMS}/a", config_map({"k": "v"}))
    _, again = await apply(api, f"{CMS}/a", config_map({"k": "v"}))
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


async def test_a_field_no_longer_applied_is_removed(api: Api) -> None:
    await apply(api, f"{CMS}/a", config_map({"keep": "1", "drop": "2"}, {"x": "1", "y": "2"}))
    _, body = await apply(api, f"{CMS}/a", config_map({"keep": "1"}, {"x": "1"}))
    assert body["data"] == {"keep": "1"}
    assert body["metadata"]["labels"] == {"x": "1"}


async def test_fields_set_by_other_managers_survive_an_apply(api: Api) -> None:
    await apply(api, f"{CMS}/a", config_map({"mine": "1"}))
    await api.patch(f"{CMS}/a", {"data": {"theirs": "2"}, "metadata": {"labels": {"t": "1"}}},
                    fieldManager="kubectl-edit")
    _, body = await apply(api, f"{CMS}/a", config_map({"mine": "3"}))
    assert body["data"] == {"mine": "3", "theirs": "2"}
    assert body["metadata"]["labels"] == {"t": "1"}


async def test_a_field_shared_with_another_applier_stays_until_both_drop_it(api: Api) -> None:
    await apply(api, f"{CMS}/a", config_map({"shared": "1"}), manager="one")
    await apply(api, f"{CMS}/a", config_map({"shared": "1"}), manager="two")
    _, body = await apply(api, f"{CMS}/a", config_map({}), manager="one")
    assert body["data"] == {"shared": "1"}
    _, body = await apply(api, f"{CMS}/a", config_map({}), manager="two")
    assert "shared" not in (body.get("data") or {})


async def test_changing_another_managers_field_conflicts_unless_forced(api: Api) -> None:
    await apply(api, DEPLOYS + "/web", deployment("web", replicas=2), manager="operator")
    await api.patch(f"{DEPLOYS}/web", {"spec": {"replicas": 5}}, fieldManager="human")
    status, body = await apply(api, DEPLOYS + "/web", deployment("web", replicas=2), manager="operator")
    assert status == 409 and body["reason"] == "Conflict"
    assert body["details"]["causes"] == [{"type": "FieldManagerConflict",
                                          "message": 'conflict with "human"',
                                          "field": ".spec.replicas"}]
    assert body["message"].startswith("Apply failed with 1 conflict")
    status, body = await apply(api, DEPLOYS + "/web", deployment("web", replicas=2),
                               manager="operator", force=True)
    assert status == 200 and body["spec"]["replicas"] == 2


async def test_keyed_lists_merge_by_key_and_atomic_lists_are_replaced(api: Api) -> None:
    base = deployment("web")
    base["spec"]["template"]["spec"]["containers"][0]["args"] = ["--a", "--b"]
    await apply(api, f"{DEPLOYS}/web", base, manager="operator")
    sidecar = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
               "spec": {"template": {"spec": {"containers": [{"name": "proxy", "image": "envoy"}]}}}}
    _, body = await apply(api, f"{DEPLOYS}/web", sidecar, manager="mesh")
    assert [c["name"] for c in body["spec"]["template"]["spec"]["containers"]] == ["app", "proxy"]
    base["spec"]["template"]["spec"]["containers"][0]["args"] = ["--c"]
    _, body = await apply(api, f"{DEPLOYS}/web", base, manager="operator")
    assert body["spec"]["template"]["spec"]["containers"][0]["args"] == ["--c"]
    status, body = await apply(api, f"{DEPLOYS}/web", {**sidecar, "spec": {}}, manager="mesh")
    assert status == 200, body
    assert [c["name"] for c in body["spec"]["template"]["spec"]["containers"]] == ["app"]


async def test_apply_on_the_main_endpoint_ignores_status_and_the_status_endpoint_applies_it(
        api: Api) -> None:
    body = {**deployment("web"), "status": {"replicas": 4}}
    _, created = await apply(api, f"{DEPLOYS}/web", body)
    assert "replicas" not in created.get("status", {})
    status_only = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                   "status": {"replicas": 4}, "spec": {"replicas": 9}}
    _, updated = await apply(api, f"{DEPLOYS}/web/status", status_only, manager="controller")
    assert updated["status"] == {"replicas": 4} and updated["spec"]["replicas"] == 1


async def test_apply_with_a_stale_resource_version_is_409(api: Api) -> None:
    _, created = await apply(api, f"{CMS}/a", config_map({"k": "v"}))
    await api.patch(f"{CMS}/a", {"data": {"k": "w"}})
    stale = config_map({"k": "x"})
    stale["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"]
    status, _ = await apply(api, f"{CMS}/a", stale)
    assert status == 409


async def test_apply_needs_kind_and_api_version(api: Api) -> None:
    status, _ = await apply(api, f"{CMS}/a", {"metadata": {"name": "a"}, "data": {}})
    assert status == 400
