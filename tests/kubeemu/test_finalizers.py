"""Finalizers hold deletion; deletionTimestamp marks it; the last finalizer ends it."""

from __future__ import annotations

from .conftest import Api
from .test_watch import watch

CMS = "/api/v1/namespaces/default/configmaps"


async def test_delete_of_an_object_with_finalizers_only_marks_it(api: Api) -> None:
    _, created = await api.post(CMS, {"metadata": {"name": "a", "finalizers": ["example.com/x"]}})
    async with watch(api, resourceVersion=created["metadata"]["resourceVersion"]) as stream:
        status, body = await api.delete(f"{CMS}/a")
        assert status == 200
        assert body["metadata"]["deletionTimestamp"]
        assert body["metadata"]["deletionGracePeriodSeconds"] == 0
        event = await stream.next()
        assert event["type"] == "MODIFIED" and event["object"]["metadata"]["deletionTimestamp"]
        status, still = await api.get(f"{CMS}/a")
        assert status == 200 and still["metadata"]["finalizers"] == ["example.com/x"]


async def test_removing_the_last_finalizer_deletes_the_object(api: Api) -> None:
    await api.post(CMS, {"metadata": {"name": "a", "finalizers": ["example.com/x", "example.com/y"]}})
    _, marked = await api.delete(f"{CMS}/a")
    async with watch(api, resourceVersion=marked["metadata"]["resourceVersion"]) as stream:
        _, body = await api.patch(f"{CMS}/a", {"metadata": {"finalizers": ["example.com/y"]}})
        assert body["metadata"]["deletionTimestamp"]
        assert (await stream.next())["type"] == "MODIFIED"
        status, _ = await api.patch(f"{CMS}/a", {"metadata": {"finalizers": None}})
        assert status == 200
        event = await stream.next()
        assert event["type"] == "DELETED" and "finalizers" not in event["object"]["metadata"]
    assert (await api.get(f"{CMS}/a"))[0] == 404


async def test_no_finalizer_can_be_added_once_deleting(api: Api) -> None:
    await api.post(CMS, {"metadata": {"name": "a", "finalizers": ["example.com/x"]}})
    await api.delete(f"{CMS}/a")
    patch = {"metadata": {"finalizers": ["example.com/x", "example.com/late"]}}
    status, body = await api.patch(f"{CMS}/a", patch)
    assert status == 422
    cause = body["details"]["causes"][0]
    assert cause["field"] == "metadata.finalizers" and cause["reason"] == "FieldValueForbidden"
    assert "no new finalizers can be added if the object is being deleted" in cause["message"]


async def test_deletion_timestamp_cannot_be_cleared_or_moved(api: Api) -> None:
    await api.post(CMS, {"metadata": {"name": "a", "finalizers": ["example.com/x"]}})
    _, marked = await api.delete(f"{CMS}/a")
    _, body = await api.patch(f"{CMS}/a", {"metadata": {"deletionTimestamp": None}, "data": {"k": "v"}})
    assert body["metadata"]["deletionTimestamp"] == marked["metadata"]["deletionTimestamp"]


async def test_deleting_again_while_finalizing_changes_nothing(api: Api) -> None:
    await api.post(CMS, {"metadata": {"name": "a", "finalizers": ["example.com/x"]}})
    _, first = await api.delete(f"{CMS}/a")
    status, second = await api.delete(f"{CMS}/a")
    assert status == 200
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
