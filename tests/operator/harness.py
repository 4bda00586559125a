"""The end-to-end harness: ``mothership operator`` as a subprocess against a real API server.

``Cluster`` is the handle a test gets: the kubeconfigs (the tests' admin one, the
operator's own), the operator process and its log, its ``/healthz`` and
``/metrics`` port, and on the built control plane its audit log. ``real_cluster``
sets one up (tests/realcluster.py makes it the session's ``cluster``). Manifest
helpers build what a user would ``kubectl apply``; ``pod_status`` is what a
kubelet would write, for tests that play it.
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

from mothership import rbac
from mothership.kube import Call, Kind, Kube
from tests.controlplane import OPERATOR_USER, ControlPlane

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
OPERATOR_NAMESPACE = "mothership-system"


@dataclass
class Cluster:
    kubeconfig: Path
    """The tests' own credentials (cluster admin)."""
    log: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    client_calls: collections.Counter[Call] = field(default_factory=collections.Counter)
    """Calls the tests themselves made."""
    operator_kubeconfig: Path | None = None
    """The operator's own identity, bound to the chart's ClusterRole; None: it runs as the tests do."""
    controlplane: ControlPlane | None = None
    """The built control plane (its audit log has every request the operator made), if that is the API."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def operator_log(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL the operator: no shutdown, no chance to stop anything (a crash, an OOM kill)."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def start(self, *extra: str) -> None:
        """Start the operator (again) and wait until it is healthy."""
        self.process = start_operator(self, *extra)
        wait_healthy(self, timeout=60)

    def audit_since(self, before: int) -> list[dict[str, Any]]:
        """The operator's requests after the first ``before`` in the control plane's audit log."""
        assert self.controlplane is not None, "no audit log: not the built control plane"
        return self.controlplane.audit()[before:]


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
        "KUBECONFIG": str(cluster.operator_kubeconfig or cluster.kubeconfig),
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


def client(cluster: Cluster) -> Kube:
    """An HTTP client for the tests, as the cluster's admin, its calls counted apart from the operator's."""
    kube = Kube.connect(kubeconfig=str(cluster.kubeconfig))
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


def audit_triple(event: dict[str, Any]) -> tuple[str, str, str, str]:
    """(verb, API group, resource, subresource) of an audit event: what the RBAC authorizer judged."""
    ref = event.get("objectRef") or {}
    return event["verb"], ref.get("apiGroup", ""), ref.get("resource", ""), ref.get("subresource", "")


def rbac_problems(events: list[dict[str, Any]]) -> list[str]:
    """Requests RBAC refused, or that it allowed beyond ``mothership.rbac.RULES``.

    The authorizer's verdict is the audit annotation ``authorization.k8s.io/decision`` (a
    403 may also come from admission, e.g. a namespace being deleted). Discovery (``/api``,
    ``/apis/...``: no ``objectRef``) is granted to every user and not part of RULES.
    """
    problems = sorted({"refused: " + " ".join(audit_triple(e)) for e in events
                       if (e.get("annotations") or {}).get("authorization.k8s.io/decision") == "forbid"})
    problems += sorted({"not in RULES: " + " ".join(t) for t in map(audit_triple, events)
                        if t[2] and not rbac.allows(t[0], t[2], api_group=t[1], subresource=t[3])})
    return problems


CLUSTER_ROLE = Kind("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", namespaced=False)
CLUSTER_ROLE_BINDING = Kind("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "clusterrolebindings",
                            namespaced=False)


async def bind_operator_role(kube: Kube, user: str) -> None:
    """The chart's ClusterRole (``mothership.rbac.RULES``), bound to ``user`` as the chart binds it."""
    name = "mothership-operator"
    for kind, body in (
        (CLUSTER_ROLE, {"rules": rbac.rules()}),
        (CLUSTER_ROLE_BINDING, {
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]}),
    ):
        manifest = {"apiVersion": kind.api_version, "kind": kind.kind, "metadata": {"name": name}, **body}
        await kube.request("patch", kind, name=name, params={"fieldManager": "tests", "force": "true"},
                           body=manifest, content_type="application/apply-patch+yaml")


@contextlib.contextmanager
def real_cluster(tmp: Path, kind: type[ClusterT], kubeconfig: Path,
                 controlplane: ControlPlane | None = None) -> Iterator[ClusterT]:
    """A real API server (the built control plane, or kind): our CRDs, and ``mothership operator``.

    On the built control plane the operator runs as its own user with exactly the chart's
    ClusterRole, so a call the chart does not allow fails here as it would in a cluster.
    """
    c = kind(kubeconfig=kubeconfig, log=tmp / "operator.log", port=free_port(),
             controlplane=controlplane)
    if controlplane is not None:
        c.operator_kubeconfig = controlplane.kubeconfig_for("operator")

    async def setup() -> None:
        async with client(c) as kube:
            await apply_crds(kube)
            await wait_established(kube)
            if controlplane is not None:
                await bind_operator_role(kube, OPERATOR_USER)

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


async def claimed(kube: Kube, namespace: str, tenant_name: str) -> bool:
    """Whether Tenant ``tenant_name`` has claimed ``namespace``: it is labelled as that Tenant's.

    LoadTests find their Tenant by this label, so a test creating both waits for it.
    """
    ns = await kube.get("Namespace", namespace)
    labels = ((ns or {}).get("metadata") or {}).get("labels") or {}
    return bool(labels.get("mothership.dev/tenant") == tenant_name)


def pod_status(*, ready: bool) -> dict[str, Any]:
    """What a kubelet writes for a pod whose one container runs, ready or not (tests play it)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    state = "True" if ready else "False"
    return {
        "phase": "Running", "startTime": now, "podIP": "127.0.0.1",
        "conditions": [{"type": t, "status": s, "lastTransitionTime": now} for t, s in (
            ("PodScheduled", "True"), ("Initialized", "True"), ("ContainersReady", state), ("Ready", state))],
        "containerStatuses": [{"name": "app", "ready": ready, "started": True, "restartCount": 0,
                               "image": "x", "imageID": "", "state": {"running": {"startedAt": now}}}],
    }
