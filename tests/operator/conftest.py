"""The operator end to end: ``mothership operator`` as a subprocess against the API emulator.

One emulator (in a background thread) and one operator process serve the whole
``tests/operator`` session, as a user would run them: CRDs applied from ``crds/``,
``KUBECONFIG`` pointing at the emulator, the console script started with
``--port``. Tests isolate themselves by namespace, talk to the API over HTTP
through ``mothership.kube.Kube`` (its calls are counted apart, so what remains in
the emulator's log is what the operator did), and play the controllers the
emulator does not have (the Deployment controller, the kubelet) by patching
status. The operator's log is at ``cluster.log`` and is printed when a test fails.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from mothership.kube import Call, Credentials, Kube
from tests.kubeemu import Emulator, EmulatorThread

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
OPERATOR_NAMESPACE = "mothership-system"

CallKey = tuple[str, str, str, str]


@dataclass
class Cluster:
    thread: EmulatorThread
    kubeconfig: Path
    log: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    client_calls: collections.Counter[Call] = field(default_factory=collections.Counter)
    """Calls the tests themselves made (subtracted from the emulator's count)."""

    @property
    def emulator(self) -> Emulator:
        return self.thread.emulator

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def operator_calls(self) -> collections.Counter[CallKey]:
        """Every request the emulator served, minus the tests' own: what the operator did."""

        async def snapshot() -> collections.Counter[CallKey]:
            return collections.Counter(self.emulator.calls)

        served: collections.Counter[CallKey] = self.thread.call(snapshot())
        ours = collections.Counter(
            {(c.verb, c.group, c.resource, c.subresource): n for c, n in self.client_calls.items()}
        )
        return served - ours

    def operator_log(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return int(response.status)
    except OSError as exc:
        return int(getattr(exc, "code", 0) or 0)


def operator_command() -> list[str]:
    """The console script a user runs, falling back to ``python -m mothership``."""
    script = Path(sys.executable).with_name("mothership")
    if script.exists():
        return [str(script), "operator"]
    found = shutil.which("mothership")
    return [found, "operator"] if found else [sys.executable, "-m", "mothership", "operator"]


async def apply_crds(kube: Kube) -> None:
    for path in sorted(CRDS.glob("*.yaml")):
        await kube.apply(yaml.safe_load(path.read_text()))


def start_operator(cluster: Cluster, *extra: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "MOTHERSHIP_NAMESPACE": OPERATOR_NAMESPACE,
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("KUBERNETES_SERVICE_HOST", None)  # never the in-cluster config in tests
    log = cluster.log.open("ab")
    return subprocess.Popen(
        [*operator_command(), "--port", str(cluster.port), "--verbose", *extra],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
    )


def wait_healthy(cluster: Cluster, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    assert cluster.process is not None
    while _http_status(f"{cluster.url}/healthz") != 200:
        if cluster.process.poll() is not None:
            raise AssertionError(f"operator exited with {cluster.process.returncode}:\n"
                                 f"{cluster.operator_log()[-4000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"operator not healthy after {timeout}s:\n{cluster.operator_log()[-4000:]}")
        time.sleep(0.05)


def stop_operator(process: subprocess.Popen[bytes]) -> int:
    process.terminate()
    try:
        return process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(timeout=5)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The emulator with our CRDs, and ``mothership operator`` running against it."""
    tmp = tmp_path_factory.mktemp("operator-e2e")
    with EmulatorThread() as thread:
        kubeconfig = thread.emulator.write_kubeconfig(tmp / "kubeconfig.yaml")
        c = Cluster(thread=thread, kubeconfig=kubeconfig, log=tmp / "operator.log", port=_free_port())

        async def setup() -> None:
            async with client(c) as kube:
                await apply_crds(kube)

        asyncio.run(setup())
        c.process = start_operator(c)
        try:
            wait_healthy(c)
            yield c
        finally:
            stop_operator(c.process)


def client(cluster: Cluster) -> Kube:
    """An HTTP client for the tests, with its calls counted apart from the operator's."""
    kube = Kube(Credentials(server=cluster.emulator.url, authorization="Bearer kubeemu-token"))
    kube.calls = cluster.client_calls
    return kube


@pytest.fixture
async def api(cluster: Cluster) -> AsyncIterator[Kube]:
    async with client(cluster) as kube:
        yield kube


_names = itertools.count(1)


@pytest.fixture
async def namespace(api: Kube, request: pytest.FixtureRequest) -> str:
    """A fresh namespace for one test (created directly, not through a Tenant)."""
    name = f"t{next(_names)}-{request.node.name.removeprefix('test_')[:40]}".replace("_", "-").rstrip("-")
    await api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    """On failure, attach the tail of the operator's log to the report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and "cluster" in getattr(item, "fixturenames", ()):
        c = item.funcargs.get("cluster") if hasattr(item, "funcargs") else None
        if isinstance(c, Cluster):
            report.sections.append(("operator log (tail)", c.operator_log()[-6000:]))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that audit the whole session (RBAC, metrics) run after the scenarios."""
    here = str(Path(__file__).parent)
    last = [i for i in items if str(i.path).startswith(here) and i.name.startswith("test_audit_")]
    for item in last:
        items.remove(item)
    items.extend(last)


def app(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    """An App manifest; ``spec`` keys are the wire (camelCase) names."""
    return {
        "apiVersion": "mothership.dev/v1alpha1",
        "kind": "App",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"image": "ghcr.io/acme/shop:1.0", **spec},
    }


def tenant(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mothership.dev/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": name},
        "spec": spec,
    }


def deployment_status(
    generation: int, *, replicas: int, updated: int, ready: int, available: int,
    progressing: tuple[str, str] = ("True", "ReplicaSetUpdated"), available_cond: str | None = None,
) -> dict[str, Any]:
    """What the Deployment controller would write, for the tests to play it."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    conditions = [{"type": "Progressing", "status": progressing[0], "reason": progressing[1],
                   "message": "played by the test", "lastUpdateTime": now, "lastTransitionTime": now}]
    if available_cond is not None:
        conditions.append({"type": "Available", "status": available_cond,
                           "reason": "MinimumReplicasAvailable" if available_cond == "True"
                           else "MinimumReplicasUnavailable",
                           "message": "played by the test", "lastUpdateTime": now,
                           "lastTransitionTime": now})
    return {
        "observedGeneration": generation, "replicas": replicas, "updatedReplicas": updated,
        "readyReplicas": ready, "availableReplicas": available,
        "unavailableReplicas": max(0, replicas - available), "conditions": conditions,
    }
