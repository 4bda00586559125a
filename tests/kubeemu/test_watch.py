"""Watches: initial state, resumption, expiry, selectors, timeouts and bookmarks."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from .conftest import Api
from .server import Emulator
from .threaded import EmulatorThread

CMS = "/api/v1/namespaces/default/configmaps"


class Stream:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self, timeout: float = 3.0) -> dict[str, Any]:
        line = await asyncio.wait_for(self.response.content.readline(), timeout)
        assert line, "the watch stream ended"
        event: dict[str, Any] = json.loads(line)
        return event

    async def take(self, count: int) -> list[tuple[str, str]]:
        """(type, name) of the next ``count`` events."""
        events = [await self.next() for _ in range(count)]
        return [(e["type"], e["object"].get("metadata", {}).get("name", "")) for e in events]

    async def nothing_within(self, seconds: float) -> bool:
        try:
            line = await asyncio.wait_for(self.response.content.readline(), seconds)
        except TimeoutError:
            return True
        raise AssertionError(f"unexpected event: {line!r}")


@contextlib.asynccontextmanager
async def watch(api: Api, path: str = CMS, **params: str) -> AsyncIterator[Stream]:
    async with api.session.get(path, params={"watch": "true", **params}) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/json")
        yield Stream(response)


def rv(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


async def cm(api: Api, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    status, body = await api.post(CMS, {"metadata": {"name": name, "labels": labels or {}}})
    assert status == 201
    return body  # type: ignore[no-any-return]


async def test_a_watch_without_resource_version_starts_with_the_current_state(api: Api) -> None:
    await cm(api, "a")
    await cm(api, "b")
    async with watch(api) as stream:
        assert await stream.take(2) == [("ADDED", "a"), ("ADDED", "b")]
        await api.patch(f"{CMS}/a", {"data": {"k": "v"}})
        await cm(api, "c")
        await api.delete(f"{CMS}/b")
        assert await stream.take(3) == [("MODIFIED", "a"), ("ADDED", "c"), ("DELETED", "b")]


async def test_a_watch_from_resource_version_0_also_starts_with_synthetic_added_events(api: Api) -> None:
    await cm(api, "a")
    async with watch(api, resourceVersion="0") as stream:
        assert await stream.take(1) == [("ADDED", "a")]


async def test_watch_resumes_from_a_resource_version_without_replaying_older_events(api: Api) -> None:
    await cm(api, "old")
    middle = await cm(api, "middle")
    await api.patch(f"{CMS}/old", {"data": {"k": "v"}})
    await cm(api, "new")
    async with watch(api, resourceVersion=middle["metadata"]["resourceVersion"]) as stream:
        assert await stream.take(2) == [("MODIFIED", "old"), ("ADDED", "new")]
        assert await stream.nothing_within(0.1)


async def test_the_list_then_watch_handoff_loses_and_duplicates_nothing(api: Api) -> None:
    for n in range(3):
        await cm(api, f"before-{n}")
    _, listed = await api.get(CMS)
    writes = [cm(api, f"after-{n}") for n in range(5)]
    await asyncio.gather(*writes)
    async with watch(api, resourceVersion=listed["metadata"]["resourceVersion"]) as stream:
        events = await stream.take(5)
        assert sorted(events) == [("ADDED", f"after-{n}") for n in range(5)]
        assert await stream.nothing_within(0.1)


async def test_watch_events_carry_the_new_resource_version(api: Api) -> None:
    created = await cm(api, "a")
    async with watch(api, resourceVersion=created["metadata"]["resourceVersion"]) as stream:
        _, patched = await api.patch(f"{CMS}/a", {"data": {"k": "v"}})
        event = await stream.next()
        assert event["object"]["metadata"]["resourceVersion"] == patched["metadata"]["resourceVersion"]
        assert event["object"]["kind"] == "ConfigMap" and event["object"]["apiVersion"] == "v1"
        await api.delete(f"{CMS}/a")
        deleted = await stream.next()
        assert deleted["type"] == "DELETED"
        assert rv(deleted["object"]) > rv(patched)


async def test_a_resource_version_older_than_the_history_is_410_gone() -> None:
    with EmulatorThread(history=3) as thread:
        async with aiohttp.ClientSession(base_url=thread.url) as session:
            api = Api(session)
            first = await cm(api, "first")
            for n in range(5):
                await cm(api, f"later-{n}")
            async with watch(api, resourceVersion=first["metadata"]["resourceVersion"]) as stream:
                event = await stream.next()
                assert event["type"] == "ERROR"
                assert event["object"]["code"] == 410
                assert event["object"]["reason"] == "Expired"
                assert event["object"]["kind"] == "Status"


async def test_a_label_selected_watch_sees_objects_enter_and_leave_the_selection(api: Api) -> None:
    await cm(api, "a", {"role": "x"})
    await cm(api, "b")
    async with watch(api, labelSelector="role=x") as stream:
        assert await stream.take(1) == [("ADDED", "a")]
        await api.patch(f"{CMS}/b", {"metadata": {"labels": {"role": "x"}}})
        await api.patch(f"{CMS}/a", {"metadata": {"labels": {"role": None}}})
        await api.patch(f"{CMS}/b", {"data": {"k": "v"}})
        assert await stream.take(3) == [("ADDED", "b"), ("DELETED", "a"), ("MODIFIED", "b")]


async def test_a_watch_is_scoped_to_its_namespace_and_field_selector(api: Api) -> None:
    await api.post("/api/v1/namespaces", {"metadata": {"name": "other"}})
    async with watch(api, fieldSelector="metadata.name=a") as stream:
        await api.post("/api/v1/namespaces/other/configmaps", {"metadata": {"name": "a"}})
        await cm(api, "b")
        await cm(api, "a")
        assert await stream.take(1) == [("ADDED", "a")]
        assert await stream.nothing_within(0.1)


async def test_a_watch_of_one_named_object_uses_the_legacy_watch_path(api: Api) -> None:
    await cm(api, "a")
    async with api.session.get("/api/v1/watch/namespaces/default/configmaps/a") as response:
        line = await asyncio.wait_for(response.content.readline(), 3)
        assert json.loads(line)["object"]["metadata"]["name"] == "a"


async def test_timeout_seconds_closes_the_stream(api: Api) -> None:
    async with watch(api, timeoutSeconds="1") as stream:
        loop = asyncio.get_running_loop()
        started = loop.time()
        line = await asyncio.wait_for(stream.response.content.readline(), 5)
        assert line == b""
        assert 0.9 <= loop.time() - started < 3


async def test_bookmarks_report_the_current_resource_version_when_allowed() -> None:
    with EmulatorThread(bookmark_interval=0.05) as thread:
        async with aiohttp.ClientSession(base_url=thread.url) as session:
            api = Api(session)
            created = await cm(api, "a")
            async with watch(api, resourceVersion=created["metadata"]["resourceVersion"],
                             allowWatchBookmarks="true") as stream:
                event = await stream.next()
                assert event["type"] == "BOOKMARK"
                assert event["object"]["kind"] == "ConfigMap"
                assert rv(event["object"]) >= rv(created)
            async with watch(api, resourceVersion=created["metadata"]["resourceVersion"]) as stream:
                assert await stream.nothing_within(0.2)


async def test_send_initial_events_ends_the_initial_state_with_an_annotated_bookmark(api: Api) -> None:
    await cm(api, "a")
    async with watch(api, sendInitialEvents="true", resourceVersionMatch="NotOlderThan",
                     allowWatchBookmarks="true") as stream:
        assert (await stream.next())["type"] == "ADDED"
        bookmark = await stream.next()
        assert bookmark["type"] == "BOOKMARK"
        assert bookmark["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


async def test_closed_watches_release_their_subscription(api: Api, kube: Emulator, until: Any) -> None:
    for _ in range(5):
        async with watch(api) as stream:
            await cm(api, f"cm-{kube.store.revision}")
            await stream.next()
    await until(lambda: kube.store.watcher_count() == 0, timeout=3)


async def test_watches_end_when_the_server_stops() -> None:
    thread = EmulatorThread()
    url = thread.start()
    async with (aiohttp.ClientSession(base_url=url) as session,
                session.get(CMS, params={"watch": "true"}) as response):
        await asyncio.get_running_loop().run_in_executor(None, thread.stop)
        with contextlib.suppress(aiohttp.ClientPayloadError):
            assert await asyncio.wait_for(response.content.read(), 5) == b""
