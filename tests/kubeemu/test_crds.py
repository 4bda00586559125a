"""CustomResourceDefinitions: registration, serving, structural schemas, removal."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from .conftest import Api
from .server import Emulator
from .test_watch import watch

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
WIDGETS = "/apis/example.com/v1/namespaces/default/widgets"

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["size"],
            "properties": {
                "size": {"type": "integer", "minimum": 1, "maximum": 10},
                "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
                "name": {"type": "string", "maxLength": 5, "pattern": "^[a-z]+$"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "ports": {"type": "array", "x-kubernetes-list-type": "map",
                          "x-kubernetes-list-map-keys": ["name"],
                          "items": {"type": "object", "required": ["name"], "properties": {
                              "name": {"type": "string"}, "port": {"type": "integer"}}}},
                "limits": {"type": "object", "additionalProperties": {"type": "integer"}},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
        },
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    },
}


def widget_crd(scope: str = "Namespaced", status: bool = True,
               versions: tuple[str, ...] = ("v1",)) -> dict[str, Any]:
    served = []
    for n, name in enumerate(versions):
        version: dict[str, Any] = {
            "name": name, "served": True, "storage": n == 0,
            "schema": {"openAPIV3Schema": SCHEMA},
            "additionalPrinterColumns": [
                {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            ],
        }
        if status:
            version["subresources"] = {"status": {}}
        served.append(version)
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": scope, "versions": served, "names": {
            "plural": "widgets", "singular": "widget", "kind": "Widget",
            "shortNames": ["wd"], "categories": ["toys"]}},
    }


def widget(name: str = "w", /, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name},
            "spec": {"size": 1, **spec}}


async def register(api: Api, **options: Any) -> dict[str, Any]:
    status, body = await api.post(CRDS, widget_crd(**options))
    assert status == 201, body
    return body  # type: ignore[no-any-return]


async def test_a_created_crd_is_established_and_served(api: Api) -> None:
    crd = await register(api)
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True" and conditions["NamesAccepted"] == "True"
    assert crd["status"]["acceptedNames"]["kind"] == "Widget"
    assert crd["status"]["storedVersions"] == ["v1"]
    status, body = await api.post(WIDGETS, widget())
    assert status == 201
    assert body["metadata"]["generation"] == 1
    assert body["apiVersion"] == "example.com/v1" and body["kind"] == "Widget"


async def test_a_crd_appears_in_discovery_with_its_names_and_status_subresource(api: Api) -> None:
    assert (await api.get("/apis/example.com/v1"))[0] == 404
    await register(api)
    _, groups = await api.get("/apis")
    assert "example.com" in {g["name"] for g in groups["groups"]}
    _, body = await api.get("/apis/example.com/v1")
    entries = {r["name"]: r for r in body["resources"]}
    assert entries["widgets"]["kind"] == "Widget"
    assert entries["widgets"]["namespaced"] is True
    assert entries["widgets"]["shortNames"] == ["wd"]
    assert entries["widgets"]["categories"] == ["toys"]
    assert entries["widgets"]["singularName"] == "widget"
    assert "widgets/status" in entries


async def test_the_status_subresource_exists_only_if_declared(api: Api) -> None:
    await register(api, status=False)
    _, body = await api.get("/apis/example.com/v1")
    assert "widgets/status" not in {r["name"] for r in body["resources"]}
    _, created = await api.post(WIDGETS, {**widget(), "status": {"seen": True}})
    assert created["status"] == {"seen": True}
    assert (await api.patch(f"{WIDGETS}/w/status", {"status": {}}))[0] == 404
    _, changed = await api.patch(f"{WIDGETS}/w", {"status": {"seen": False}})
    assert changed["status"] == {"seen": False}
    assert changed["metadata"]["generation"] == 2


async def test_with_a_status_subresource_the_main_endpoint_ignores_status(api: Api) -> None:
    await register(api)
    _, created = await api.post(WIDGETS, {**widget(), "status": {"seen": True}})
    assert "status" not in created
    _, body = await api.patch(f"{WIDGETS}/w", {"status": {"seen": True}})
    assert "status" not in body
    _, body = await api.patch(f"{WIDGETS}/w/status", {"status": {"seen": True}})
    assert body["status"] == {"seen": True} and body["metadata"]["generation"] == 1


async def test_cluster_scoped_custom_resources_live_outside_namespaces(api: Api) -> None:
    await register(api, scope="Cluster")
    status, body = await api.post("/apis/example.com/v1/widgets", widget())
    assert status == 201 and "namespace" not in body["metadata"]
    assert (await api.post(WIDGETS, widget("x")))[0] == 404


async def test_all_served_versions_share_the_objects(api: Api) -> None:
    await register(api, versions=("v1", "v2"))
    await api.post(WIDGETS, widget())
    status, body = await api.get("/apis/example.com/v2/namespaces/default/widgets/w")
    assert status == 200 and body["apiVersion"] == "example.com/v2"


async def test_invalid_custom_resources_are_422_with_field_paths(api: Api) -> None:
    await register(api)
    bad = widget(size=0, color="green", name="TooLongName", tags=[1], limits={"cpu": "x"})
    del bad["spec"]["size"]
    bad["spec"]["size"] = "big"
    status, body = await api.post(WIDGETS, bad)
    assert status == 422 and body["reason"] == "Invalid"
    assert body["details"]["kind"] == "Widget" and body["details"]["group"] == "example.com"
    causes = {c["field"]: c["reason"] for c in body["details"]["causes"]}
    assert causes == {
        "spec.size": "FieldValueTypeInvalid",
        "spec.color": "FieldValueNotSupported",
        "spec.name": "FieldValueInvalid",
        "spec.tags[0]": "FieldValueTypeInvalid",
        "spec.limits.cpu": "FieldValueTypeInvalid",
    }
    status, body = await api.post(WIDGETS, widget(size=11))
    assert status == 422
    assert "should be less than or equal to 10" in body["details"]["causes"][0]["message"]
    status, body = await api.post(WIDGETS, {**widget(), "spec": {}})
    assert body["details"]["causes"] == [{"reason": "FieldValueRequired", "field": "spec.size",
                                          "message": "Required value"}]


async def test_updates_are_validated_too(api: Api) -> None:
    await register(api)
    await api.post(WIDGETS, widget())
    status, body = await api.patch(f"{WIDGETS}/w", {"spec": {"size": 100}})
    assert status == 422 and body["details"]["causes"][0]["field"] == "spec.size"


async def test_defaults_are_applied_and_unknown_fields_pruned(api: Api) -> None:
    await register(api)
    body = widget(unknown="dropped", extra={"anything": {"goes": 1}})
    body["topLevel"] = "dropped"
    _, created = await api.post(WIDGETS, body)
    assert created["spec"] == {"size": 1, "color": "red", "extra": {"anything": {"goes": 1}}}
    assert "topLevel" not in created


async def test_strict_field_validation_rejects_unknown_fields_instead_of_pruning(api: Api) -> None:
    await register(api)
    status, body = await api.post(WIDGETS, widget(unknown="x"), fieldValidation="Strict")
    assert status == 400
    assert body["message"] == 'strict decoding error: unknown field "spec.unknown"'
    status, _ = await api.post(WIDGETS, widget(unknown="x"), fieldValidation="Ignore")
    assert status == 201


async def test_map_lists_merge_by_key_in_server_side_apply(api: Api) -> None:
    await register(api)
    first = widget(ports=[{"name": "http", "port": 80}])
    await api.patch(f"{WIDGETS}/w", json.dumps(first), "application/apply-patch+yaml",
                    fieldManager="a")
    second = widget(ports=[{"name": "metrics", "port": 9090}])
    _, body = await api.patch(f"{WIDGETS}/w", json.dumps(second), "application/apply-patch+yaml",
                              fieldManager="b")
    assert [p["name"] for p in body["spec"]["ports"]] == ["http", "metrics"]


async def test_strategic_merge_patch_is_unsupported_for_custom_resources(api: Api) -> None:
    await register(api)
    await api.post(WIDGETS, widget())
    status, _ = await api.patch(f"{WIDGETS}/w", {"spec": {"size": 2}},
                                "application/strategic-merge-patch+json")
    assert status == 415


async def test_a_crd_name_must_be_plural_dot_group(api: Api) -> None:
    crd = widget_crd()
    crd["metadata"]["name"] = "gadgets.example.com"
    status, body = await api.post(CRDS, crd)
    assert status == 422 and body["details"]["causes"][0]["field"] == "metadata.name"


async def test_printer_columns_are_served_as_a_table(api: Api) -> None:
    await register(api)
    await api.post(WIDGETS, widget(size=3))
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    async with api.session.get(WIDGETS, headers={"Accept": accept}) as response:
        table = await response.json()
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Size", "Age"]
    assert table["rows"][0]["cells"][:2] == ["w", 3]


async def test_deleting_a_crd_deletes_its_objects_and_stops_serving_it(
        api: Api, kube: Emulator, until: Any) -> None:
    await register(api)
    await api.post(WIDGETS, widget())
    held = widget("held")
    held["metadata"]["finalizers"] = ["example.com/hold"]
    _, held = await api.post(WIDGETS, held)
    async with watch(api, WIDGETS, resourceVersion=held["metadata"]["resourceVersion"]) as stream:
        status, body = await api.delete(f"{CRDS}/widgets.example.com")
        assert status == 200
        assert "customresourcecleanup.apiextensions.k8s.io" in body["metadata"]["finalizers"]
        events = {(e["type"], e["object"]["metadata"]["name"]) for e in
                  [await stream.next(), await stream.next()]}
        assert events == {("DELETED", "w"), ("MODIFIED", "held")}
        assert (await api.post(WIDGETS, widget("late")))[0] == 405
        await api.patch(f"{WIDGETS}/held", {"metadata": {"finalizers": None}})
        assert (await stream.next())["type"] == "DELETED"
        line = await asyncio.wait_for(stream.response.content.readline(), 3)
        assert line == b""  # the watch ends with the resource
    await until(lambda: kube.get("apiextensions.k8s.io/v1", "customresourcedefinitions",
                                 "widgets.example.com") is None, timeout=3)
    assert (await api.get(WIDGETS))[0] == 404
    assert (await api.get("/apis/example.com/v1"))[0] == 404
