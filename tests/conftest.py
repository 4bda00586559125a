"""Shared fixtures: real things listening on 127.0.0.1, and a way to wait on conditions.

Tests wait on conditions, never on time (STYLE, Tests): the ``until`` fixture polls a
predicate on the loop clock (``wait_until``) and fails with a clear message at its timeout.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

Predicate = Callable[[], Any]


async def wait_until(
    predicate: Predicate, timeout: float = 3.0, interval: float = 0.01, what: str = ""
) -> Any:
    """Poll ``predicate`` (sync or async) until it returns something truthy; return that value.

    Raises AssertionError naming ``what`` (or the predicate) after ``timeout`` seconds.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate!r}")
        await asyncio.sleep(interval)


@pytest.fixture
def until() -> Callable[..., Awaitable[Any]]:
    """``await until(predicate, timeout=...)``: see ``wait_until``."""
    return wait_until


@dataclass
class RunningDemoTarget:
    url: str
    """Base URL, e.g. ``http://127.0.0.1:41234``."""
    target: Any
    """The ``mothership.loadgen.demo_target.DemoTarget`` serving it; ``.stats()`` has its counts."""


@pytest.fixture
async def demo_target() -> AsyncIterator[RunningDemoTarget]:
    """The bundled demo target on a free 127.0.0.1 port, on the test's loop."""
    from mothership.loadgen.demo_target import serve

    async with serve("127.0.0.1", 0) as (url, target):
        yield RunningDemoTarget(url, target)
