"""Makes the ``kube`` fixture available to the emulator's own tests even when they run
alone, and gives them a tiny HTTP client that returns (status, JSON body)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from .fixtures import kube
from .server import Emulator

__all__ = ["api", "kube"]


class Api:
    """Raw HTTP against the emulator: what a client sends is exactly what the test says."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def request(self, method: str, path: str, body: Any = None,
                      content_type: str = "application/json", **params: Any) -> tuple[int, Any]:
        data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
        query = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.items()}
        async with self.session.request(method, path, data=data, params=query,
                                        headers={"Content-Type": content_type}) as response:
            text = await response.text()
            return response.status, json.loads(text) if text else None

    async def get(self, path: str, **params: Any) -> tuple[int, Any]:
        return await self.request("GET", path, **params)

    async def post(self, path: str, body: Any, **params: Any) -> tuple[int, Any]:
        return await self.request("POST", path, body, **params)

    async def put(self, path: str, body: Any, **params: Any) -> tuple[int, Any]:
        return await self.request("PUT", path, body, **params)

    async def patch(self, path: str, body: Any, content_type: str = "application/merge-patch+json",
                    **params: Any) -> tuple[int, Any]:
        return await self.request("PATCH", path, body, content_type, **params)

    async def delete(self, path: str, body: Any = None, **params: Any) -> tuple[int, Any]:
        return await self.request("DELETE", path, body, **params)


@pytest.fixture
async def api(kube: Emulator) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession(base_url=kube.url) as session:
        yield Api(session)
