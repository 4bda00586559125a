"""Shared fixtures: real things listening on 127.0.0.1, and a way to wait on conditions.

Tests wait on conditions, never on time (docs/design.md, "How it is tested"): the ``until``
fixture polls a predicate on the loop clock (``wait_until``) and fails with a clear message at
its timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
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


# --- in-process workers with a scripted engine -------------------------------------------

LOADTEST_DOC: dict[str, Any] = {
    "apiVersion": "mothership.dev/v1alpha1",
    "kind": "LoadTest",
    "metadata": {"name": "t"},
    "spec": {
        "target": {"url": "http://127.0.0.1:9"},
        "virtualUsers": 2,
        "duration": "1s",
        "gracefulStop": "1s",
        "scenarios": [{"name": "browse", "requests": [{"path": "/"}]}],
    },
}


def scripted_engine(requests: int = 10, seconds: float = 0.2, latency: float = 0.01,
                    fail: Exception | None = None) -> Any:
    """A stand-in for ``engine.run`` that records ``requests`` 200s over ``seconds``, or until stopped.

    It drives the real Stats, so everything downstream (snapshot, merge,
    thresholds, exposition) is the production path. ``.calls`` holds the wall
    time of each start; ``fail`` is raised after the requests.
    """
    calls: list[float] = []

    async def run(spec: Any, share: Any, stats: Any, *, base_url: str, stop: asyncio.Event) -> None:
        calls.append(time.time())
        for _ in range(requests):
            if stop.is_set():
                break
            stats.http(0, 200, latency, 100, 200)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), seconds / requests)
        if fail is not None:
            raise fail

    run.calls = calls  # type: ignore[attr-defined]
    return run


@dataclass
class RunningWorker:
    url: str
    worker: Any
    """The ``mothership.loadgen.worker.Worker``."""
    lifetime: asyncio.Task[int]
    """Ends with the worker's exit code."""


TOKEN = "s3cret-token"


@pytest.fixture
async def serve_worker() -> AsyncIterator[Callable[..., Awaitable[RunningWorker]]]:
    """Factory: ``await serve_worker(engine_run=..., index=0, count=1, **Worker kwargs)`` on a free port."""
    from mothership.api.loadtest import load_spec
    from mothership.loadgen.worker import Worker, serve

    tasks: list[asyncio.Task[int]] = []

    async def start(spec: Any = None, index: int = 0, count: int = 1, **kwargs: Any) -> RunningWorker:
        kwargs.setdefault("linger", 5.0)
        kwargs.setdefault("engine_run", scripted_engine())
        worker = Worker(spec or load_spec(LOADTEST_DOC), index, count, token=TOKEN,
                        base_url="http://127.0.0.1:9", **kwargs)
        announced: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(serve(worker, "127.0.0.1", 0, announced.set_result, handle_signals=False))
        tasks.append(task)
        url = await asyncio.wait_for(asyncio.shield(announced), timeout=3)
        return RunningWorker(url, worker, task)

    yield start
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


# `controlplane` and `apiserver`: the real control plane (tests/controlplane); `cluster`, `api`,
# `namespace`: the operator on it (tests/realcluster.py).
pytest_plugins = ["tests.controlplane.fixtures", "tests.realcluster"]
