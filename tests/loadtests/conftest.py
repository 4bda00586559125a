"""LoadTests end to end: the API emulator, ``mothership operator`` as a subprocess, the pod runner.

One emulator and one operator serve a whole test module, started the way
``tests/operator`` starts them (its ``harness`` is reused), except that the
operator can be killed and restarted mid-run (``lt_cluster.restart()``). Each
test gets a namespace owned by a Tenant that allows ``127.0.0.1:*`` (where the
demo target listens), a :class:`~tests.podrunner.PodRunner` playing the Job
controller and the kubelet there, and a demo target in its own process, so
the workers' load never competes with the test's event loop.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mothership.kube import Kube
from tests.operator.harness import (
    Cluster,
    client,
    emulated_cluster,
    namespace_name,
    start_operator,
    wait_healthy,
)
from tests.podrunner import PodRunner

ALLOWED = "127.0.0.1:*"


@dataclass
class LoadTestCluster(Cluster):
    """A :class:`tests.operator.harness.Cluster` whose operator a test may kill and restart."""

    def kill(self) -> None:
        """SIGKILL the operator: no shutdown, no chance to stop anything (a crash, an OOM kill)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def start(self) -> None:
        self.process = start_operator(self)
        wait_healthy(self)


@pytest.fixture(scope="module")
def lt_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoadTestCluster]:
    with emulated_cluster(tmp_path_factory.mktemp("loadtests-e2e"), LoadTestCluster) as c:
        yield c


@pytest.fixture
async def lt_api(lt_cluster: LoadTestCluster) -> AsyncIterator[Kube]:
    async with client(lt_cluster) as kube:
        yield kube


@pytest.fixture
async def tenant_namespace(lt_api: Kube, request: pytest.FixtureRequest) -> str:
    """A namespace owned by a Tenant whose LoadTests may aim at 127.0.0.1 (any port)."""
    name = namespace_name("lt", request.node.name, 30)
    await lt_api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    await lt_api.apply({
        "apiVersion": "mothership.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": name},
        "spec": {"namespace": name, "isolation": {"mode": "none"},
                 "loadTests": {"maxWorkers": 5, "maxVirtualUsers": 100, "allowedTargets": [ALLOWED]}},
    })
    return name


@pytest.fixture
async def pod_runner(lt_cluster: LoadTestCluster, tenant_namespace: str,
                     tmp_path: Path) -> AsyncIterator[PodRunner]:
    async with client(lt_cluster) as kube, PodRunner(kube, tenant_namespace,
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
    """On failure, attach the tail of the operator's log and of each worker's."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed or not hasattr(item, "funcargs"):
        return
    c = item.funcargs.get("lt_cluster")
    if isinstance(c, LoadTestCluster):
        report.sections.append(("operator log (tail)", c.operator_log()[-6000:]))
    runner = item.funcargs.get("pod_runner")
    if isinstance(runner, PodRunner) and runner.log_dir is not None:
        for log in sorted(runner.log_dir.glob("*.log")):
            report.sections.append((f"worker {log.stem} (tail)", log.read_text(errors="replace")[-1500:]))
