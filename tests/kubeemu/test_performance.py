"""Scale and boundedness: hundreds of owners with children, and no per-request growth."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from .conftest import Api
from .server import Emulator
from .test_gc import ref

OWNERS = 500
CHILDREN = 4


async def gather_in_batches(coroutines: list[Any], size: int = 50) -> list[Any]:
    results: list[Any] = []
    for start in range(0, len(coroutines), size):
        results += await asyncio.gather(*coroutines[start:start + size])
    return results


@pytest.mark.timeout(60)
async def test_hundreds_of_owners_with_children_list_watch_and_collect(
        api: Api, kube: Emulator, until: Any) -> None:
    await api.post("/api/v1/namespaces", {"metadata": {"name": "big"}})
    base = "/api/v1/namespaces/big"
    owners = await gather_in_batches([
        api.post(f"{base}/configmaps", {"metadata": {"name": f"app-{n}", "labels": {"n": str(n % 10)}}})
        for n in range(OWNERS)
    ])
    children = [
        api.post(f"{base}/secrets", {"metadata": {
            "name": f"app-{n}-{c}", "labels": {"app": f"app-{n}"},
            "ownerReferences": [ref(owner, block=True)]}})
        for n, (_, owner) in enumerate(owners) for c in range(CHILDREN)
    ]
    assert {status for status, _ in await gather_in_batches(children)} == {201}
    _, listed = await api.get(f"{base}/secrets", labelSelector="app in (app-1,app-2)")
    assert len(listed["items"]) == 2 * CHILDREN
    _, page = await api.get("/api/v1/secrets", limit="100")
    assert len(page["items"]) == 100 and page["metadata"]["continue"]
    await gather_in_batches([api.delete(f"{base}/configmaps/app-{n}") for n in range(0, OWNERS, 2)])
    await until(lambda: len(kube.list("v1", "secrets", "big")) == OWNERS // 2 * CHILDREN, timeout=20)
    await api.delete(f"{base}", propagationPolicy="Foreground")
    await until(lambda: kube.get("v1", "namespaces", "big") is None, timeout=20)
    assert kube.store.count(("", "secrets")) == 0


async def test_internal_tables_shrink_back_after_objects_and_watches_go(
        api: Api, kube: Emulator, until: Any) -> None:
    path = "/api/v1/namespaces/default/configmaps"
    for round_ in range(3):
        _, owner = await api.post(path, {"metadata": {"name": "owner"}})
        await api.post(path, {"metadata": {"name": "child", "ownerReferences": [ref(owner)]}})
        config = '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}}'
        await api.patch(f"{path}/owner", config, "application/apply-patch+yaml",
                        fieldManager=f"m{round_}")
        async with api.session.get(path, params={"watch": "true"}) as response:
            await response.content.readline()
        await api.delete(f"{path}/owner")
        await until(lambda: kube.store.count(("", "configmaps"), "default") == 0, timeout=3)
    await until(lambda: kube.store.watcher_count() == 0, timeout=3)
    assert kube.store._dependents == {}
    uids = {o["metadata"]["uid"] for k in kube.store.storage_keys() for o in kube.store.iter(k)}
    assert set(kube.store._by_uid) == uids
    assert set(kube.registry._owners) <= uids
    assert len(kube.calls) == 4  # create, patch, watch, delete: one counter each
