"""The operator's API client and error mapping, against a real kube-apiserver (a namespace per test).

``mothership.kube`` is what every handler writes through, so its verbs are
checked against a server that speaks the real protocol, not against mocks; and
``mothership.errors`` is checked on the errors that server actually returns.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import kopf
import pytest

from mothership import errors
from mothership.kube import KINDS, ApiError, Call, Credentials, Kube, carries, merge_patch
from tests.controlplane import ControlPlane
from tests.operator.harness import namespace_name

NS = ""
"""The test's own namespace (set by ``client``): every object here lives in it."""


@pytest.fixture
async def client(apiserver: ControlPlane, request: pytest.FixtureRequest) -> AsyncIterator[Kube]:
    global NS
    NS = namespace_name("kube-", request.node.name, 40)
    async with Kube.connect(kubeconfig=str(apiserver.kubeconfig)) as k:
        await k.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        k.calls.clear()
        yield k


def config_map(name: str, namespace: str = "", **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace or NS, "labels": {"team": "a"}}, "data": data}


async def test_apply_creates_then_converges_and_returns_the_stored_object(client: Kube) -> None:
    created = await client.apply(config_map("plan", a="1"))
    assert created["metadata"]["uid"]
    assert created["data"] == {"a": "1"}

    updated = await client.apply(config_map("plan", a="2"))
    assert updated["metadata"]["uid"] == created["metadata"]["uid"]
    assert updated["data"] == {"a": "2"}
    assert client.calls[Call("patch", "", "configmaps")] == 2


async def test_get_of_a_missing_object_is_none(client: Kube) -> None:
    assert await client.get("ConfigMap", "nope", NS) is None


async def test_list_filters_by_labels_and_follows_continue(client: Kube) -> None:
    for i in range(5):
        await client.apply(config_map(f"cm-{i}"))
    await client.apply({**config_map("other"), "metadata": {"name": "other", "namespace": NS,
                                                           "labels": {"team": "b"}}})
    found = await client.list("ConfigMap", NS, label_selector={"team": "a"}, page=2)
    assert sorted(o["metadata"]["name"] for o in found) == [f"cm-{i}" for i in range(5)]
    assert client.calls[Call("list", "", "configmaps")] == 3  # pages of 2, 2 and 1


async def test_delete_says_whether_the_object_existed(client: Kube) -> None:
    await client.apply(config_map("doomed"))
    assert await client.delete("ConfigMap", "doomed", NS) is True
    assert await client.delete("ConfigMap", "doomed", NS) is False


async def test_create_of_an_existing_object_is_none_so_retries_are_harmless(client: Kube) -> None:
    assert await client.create(config_map("job-like")) is not None
    assert await client.create(config_map("job-like")) is None


async def test_an_event_is_posted_about_its_object(client: Kube) -> None:
    obj = await client.apply(config_map("thing"))
    event = await client.post_event(obj, reason="SecretNotFound", message="Secret x is missing",
                                    type="Warning")
    assert event is not None
    assert event["involvedObject"]["uid"] == obj["metadata"]["uid"]
    assert event["type"] == "Warning"


async def test_a_child_in_a_missing_namespace_is_a_temporary_error(client: Kube) -> None:
    with pytest.raises(ApiError) as info:
        await client.apply(config_map("x", namespace="not-yet"))
    assert info.value.status == 404
    assert info.value.call == Call("patch", "", "configmaps")
    mapped = errors.classify(info.value)
    assert isinstance(mapped, kopf.TemporaryError)
    assert "not-yet" in str(mapped)


async def test_an_invalid_object_is_a_permanent_error_naming_the_field(client: Kube) -> None:
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "Bad_Name", "namespace": NS},
           "spec": {"ports": [{"port": 80}]}}
    with pytest.raises(ApiError) as info:
        await client.apply(bad)
    assert info.value.status == 422
    mapped = errors.classify(info.value)
    assert isinstance(mapped, kopf.PermanentError)
    assert "metadata.name" in str(mapped)


async def test_an_unreachable_server_is_a_temporary_error() -> None:
    async with Kube(Credentials(server="http://127.0.0.1:9")) as k:
        with pytest.raises(ApiError) as info:
            await k.get("ConfigMap", "x", "default")
    assert info.value.status == 0
    assert isinstance(errors.classify(info.value), kopf.TemporaryError)


def error(status: int, reason: str = "", message: str = "", **kw: Any) -> ApiError:
    return ApiError(status, reason, message, call=Call("patch", "apps", "deployments"),
                    namespace="shop", name="web", **kw)


def test_forbidden_is_permanent_and_names_the_missing_rule() -> None:
    mapped = errors.classify(error(403, "Forbidden", "deployments.apps is forbidden"))
    assert isinstance(mapped, kopf.PermanentError)
    assert "resources: ['deployments']" in str(mapped) and "verbs: ['patch']" in str(mapped)
    assert "apiGroups: ['apps']" in str(mapped)


def test_a_terminating_namespace_and_an_exceeded_quota_are_temporary() -> None:
    terminating = errors.classify(error(403, "Forbidden", "unable to create new content in namespace "
                                        "shop because it is being terminated"))
    quota = errors.classify(error(403, "Forbidden", "exceeded quota: mothership"))
    assert isinstance(terminating, kopf.TemporaryError) and terminating.delay == 10
    assert isinstance(quota, kopf.TemporaryError) and quota.delay == 60


@pytest.mark.parametrize(("status", "kind", "delay"), [
    (409, kopf.TemporaryError, 1), (429, kopf.TemporaryError, 7), (500, kopf.TemporaryError, 7),
    (503, kopf.TemporaryError, 7), (400, kopf.PermanentError, None), (422, kopf.PermanentError, None),
])
def test_each_status_maps_to_its_branch_of_the_tree(status: int, kind: type, delay: float | None) -> None:
    mapped = errors.classify(error(status, retry_after=7))
    assert isinstance(mapped, kind)
    if delay is not None:
        assert isinstance(mapped, kopf.TemporaryError) and mapped.delay == delay


def test_carries_ignores_server_defaults_but_sees_hand_edits() -> None:
    desired = {"spec": {"replicas": 2, "template": {"containers": [{"name": "app", "image": "a:1"}]},
                        "resources": {"cpu": "500m"}}}
    observed = {"spec": {"replicas": 2, "revisionHistoryLimit": 10,
                         "template": {"containers": [{"name": "app", "image": "a:1",
                                                      "imagePullPolicy": "IfNotPresent"}]},
                         "resources": {"cpu": "0.5"}}, "status": {"replicas": 0}}
    assert carries(observed, desired)
    observed["spec"]["replicas"] = 7
    assert not carries(observed, desired)
    observed["spec"]["replicas"] = 2
    observed["spec"]["template"]["containers"].append({"name": "sidecar"})
    assert not carries(observed, desired)


def test_a_merge_patch_nulls_what_vanished() -> None:
    assert merge_patch({"phase": "Ready", "externalUrl": "https://x"}, {"phase": "Ready"}) == {
        "phase": "Ready", "externalUrl": None}


def test_every_kind_knows_its_url() -> None:
    deployment = KINDS["Deployment"].path("ns", "web", "status")
    assert deployment == "/apis/apps/v1/namespaces/ns/deployments/web/status"
    assert KINDS["Namespace"].path(None, "ns") == "/api/v1/namespaces/ns"
    assert KINDS["Tenant"].path("ignored", "acme") == "/apis/mothership.dev/v1alpha1/tenants/acme"
