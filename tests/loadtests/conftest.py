"""LoadTests end to end: ``mothership operator`` on a real API server, worker pods run by the pod runner.

The session's control plane and operator (``tests/realcluster.py``) serve these
tests; a test may kill and restart the operator mid-run (``cluster.kill()``,
``cluster.start()``). Each test gets a namespace owned by a Tenant that allows
``127.0.0.1:*`` (where the demo target listens). The real Job controller
creates the worker pods of the Indexed Job; a :class:`~tests.podrunner.PodRunner`
plays the kubelet there, running each worker as a local process, and a demo
target runs in its own process, so the workers' load never competes with the
test's event loop.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mothership.kube import Kube
from tests.conftest import wait_until
from tests.operator.harness import Cluster, claimed, client, namespace_name
from tests.podrunner import PodRunner

ALLOWED = "127.0.0.1:*"


async def adopt_for_load_tests(api: Kube, namespace: str, **spec: Any) -> None:
    """A Tenant of the same name adopting ``namespace``, whose LoadTests may aim at 127.0.0.1.

    ``spec`` goes on top (e.g. a quota). LoadTests find their Tenant by the namespace's
    label, so this waits until the Tenant has claimed it.
    """
    await api.apply({
        "apiVersion": "mothership.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": namespace},
        "spec": {"namespace": namespace, "adopt": True, "isolation": {"mode": "none"},
                 "loadTests": {"maxWorkers": 5, "maxVirtualUsers": 100, "allowedTargets": [ALLOWED]},
                 **spec},
    })
    await wait_until(lambda: claimed(api, namespace, namespace), timeout=30, what="the Tenant's claim")


@pytest.fixture
async def tenant_namespace(api: Kube, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A namespace owned by a Tenant whose LoadTests may aim at 127.0.0.1 (any port)."""
    name = namespace_name("lt", request.node.name, 30)
    await api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    await adopt_for_load_tests(api, name)
    yield name
    await api.delete("Tenant", name)
    await api.delete("Namespace", name)


@pytest.fixture
async def pod_runner(cluster: Cluster, no_nodes: None, tenant_namespace: str,
                     tmp_path: Path) -> AsyncIterator[PodRunner]:
    """The kubelet for the test's worker pods (the real Job controller creates them)."""
    async with client(cluster) as kube, PodRunner(kube, tenant_namespace,
                                                  log_dir=tmp_path / "workers") as runner:
        yield runner


@dataclass
class DemoTargetProcess:
    url: str
    process: subprocess.Popen[bytes]

    async def stats(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as session, session.get(f"{self.url}/stats") as response:
            body: dict[str, Any] = await response.json()
            return body

    async def reset(self) -> None:
        async with aiohttp.ClientSession() as session, session.delete(f"{self.url}/stats") as response:
            assert response.status < 300

    async def requests(self) -> int:
        return int((await self.stats())["http"]["requests"])


@pytest.fixture(scope="module")
def demo_target_process() -> Iterator[DemoTargetProcess]:
    """``mothership demo-target`` on a free 127.0.0.1 port, in its own process, for the module."""
    process = subprocess.Popen(
        [sys.executable, "-m", "mothership", "demo-target", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        assert process.stdout is not None
        text = process.stdout.readline().decode()
        assert "listening on " in text, text
        yield DemoTargetProcess(text.split("listening on ", 1)[1].split()[0], process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture
async def target(demo_target_process: DemoTargetProcess) -> DemoTargetProcess:
    """The module's demo target with its counts zeroed for this test (tests run one at a time)."""
    await demo_target_process.reset()
    return demo_target_process


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    """On failure, attach the tail of each worker's log (the operator's comes from realcluster)."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed or not hasattr(item, "funcargs"):
        return
    runner = item.funcargs.get("pod_runner")
    if isinstance(runner, PodRunner) and runner.log_dir is not None:
        for log in sorted(runner.log_dir.glob("*.log")):
            report.sections.append((f"worker {log.stem} (tail)", log.read_text(errors="replace")[-1500:]))
