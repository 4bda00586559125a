"""The e2e harness shared by tests/operator (emulator) and tests/cluster (real API server).

``Cluster`` is the handle a test gets: where the API is, the operator process and
its log, its ``/healthz`` and ``/metrics`` port, and (with the emulator) the
emulator's request log minus the tests' own calls. Manifests helpers build what
a user would ``kubectl apply``; ``deployment_status`` is what the Deployment
controller would write, for tests that play it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mothership.kube import Call, Credentials, Kube
from tests.kubeemu import Emulator, EmulatorThread

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
OPERATOR_NAMESPACE = "mothership-system"

CallKey = tuple[str, str, str, str]


@dataclass
class Cluster:
    thread: EmulatorThread | None
    """The emulator's thread; None against a real cluster (tests/cluster)."""
    kubeconfig: Path
    log: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    client_calls: collections.Counter[Call] = field(default_factory=collections.Counter)
    """Calls the tests themselves made (subtracted from the emulator's count)."""

    @property
    def emulator(self) -> Emulator:
        assert self.thread is not None, "no emulator: this is a real cluster"
        return self.thread.emulator

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def operator_calls(self) -> collections.Counter[CallKey]:
        """Every request the emulator served, minus the tests' own: what the operator did."""

        async def snapshot() -> collections.Counter[CallKey]:
            return collections.Counter(self.emulator.calls)

        assert self.thread is not None
        served: collections.Counter[CallKey] = self.thread.call(snapshot())
        ours = collections.Counter(
            {(c.verb, c.group, c.resource, c.subresource): n for c, n in self.client_calls.items()}
        )
        return served - ours

    def operator_log(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


_serial = itertools.count(1)


def namespace_name(prefix: str, test_name: str, length: int = 40) -> str:
    """A fresh DNS-label namespace name per test, readable in logs: ``t3-app-gets-a-deployment``."""
    name = f"{prefix}{next(_serial)}-{test_name.removeprefix('test_')[:length]}".lower()
    return re.sub(r"[^a-z0-9-]+", "-", name).rstrip("-")


def free_port() -> int:
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


ClusterT = TypeVar("ClusterT", bound="Cluster")


@contextlib.contextmanager
def emulated_cluster(tmp: Path, kind: type[ClusterT]) -> Iterator[ClusterT]:
    """The emulator with our CRDs, and ``mothership operator`` running against it as a user runs it."""
    with EmulatorThread() as thread:
        kubeconfig = thread.emulator.write_kubeconfig(tmp / "kubeconfig.yaml")
        c = kind(thread=thread, kubeconfig=kubeconfig, log=tmp / "operator.log", port=free_port())

        async def setup() -> None:
            async with client(c) as kube:
                await apply_crds(kube)

        asyncio.run(setup())
        c.process = start_operator(c)
        try:
            wait_healthy(c)
            yield c
        finally:
            if c.process is not None and c.process.poll() is None:  # a test may have killed it
                stop_operator(c.process)


def client(cluster: Cluster) -> Kube:
    """An HTTP client for the tests, with its calls counted apart from the operator's."""
    if cluster.thread is None:
        kube = Kube.connect(kubeconfig=str(cluster.kubeconfig))
    else:
        kube = Kube(Credentials(server=cluster.emulator.url, authorization="Bearer kubeemu-token"))
    kube.calls = cluster.client_calls
    return kube


async def wait_established(kube: Kube, timeout: float = 30.0) -> None:
    """Until the API server serves every CRD of ``crds/`` (condition Established)."""
    deadline = time.monotonic() + timeout
    for path in sorted(CRDS.glob("*.yaml")):
        name = yaml.safe_load(path.read_text())["metadata"]["name"]
        while True:
            crd = await kube.get("CustomResourceDefinition", name) or {}
            conditions = (crd.get("status") or {}).get("conditions") or []
            if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"CRD {name} not Established after {timeout} s")
            await asyncio.sleep(0.1)  # polling the server's own readiness signal


@contextlib.contextmanager
def real_cluster(tmp: Path, kind: type[ClusterT], kubeconfig: Path) -> Iterator[ClusterT]:
    """A real API server (the built control plane, or kind): our CRDs, and ``mothership operator``."""
    c = kind(thread=None, kubeconfig=kubeconfig, log=tmp / "operator.log", port=free_port())

    async def setup() -> None:
        async with client(c) as kube:
            await apply_crds(kube)
            await wait_established(kube)

    asyncio.run(setup())
    c.process = start_operator(c)
    try:
        wait_healthy(c, timeout=60)
        yield c
    finally:
        if c.process is not None and c.process.poll() is None:
            stop_operator(c.process)


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
