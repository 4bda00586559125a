"""The operator on a real API server: the built control plane by default, or ``$KUBECONFIG``.

A pytest plugin (registered in tests/conftest.py). Every test that asks for
``cluster`` (directly or through another fixture) runs against a real
kube-apiserver with ``mothership operator`` running as a subprocess, as a user
runs it; such tests are marked ``cluster``.

Where they run:

- by default, on the control plane that ``tests/controlplane`` builds from Go
  modules and starts once per run (etcd, kube-apiserver and
  kube-controller-manager on 127.0.0.1; no nodes: ``tests/podrunner.py`` plays
  the kubelet). They are also marked ``controlplane``. The operator runs there
  as its own user, bound to the chart's ClusterRole, and the API server's audit
  log records every request it makes;
- with ``pytest -m cluster`` and ``$KUBECONFIG`` set, on that cluster instead
  (kind in the e2e-kind workflow). A default run never touches the cluster a
  developer's shell happens to point at.

Setup, once per session: apply ``crds/`` and wait until they are Established,
start the operator and wait for its ``/healthz``. Each test gets its own
namespace, deleted afterwards. On failure the operator log's tail is attached.
"""

from __future__ import annotations

import collections
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from mothership.kube import Kube
from tests.operator.harness import Cluster, client, namespace_name, real_cluster

RUN = secrets.token_hex(3)
"""A per-run suffix: names must not collide with what an earlier run left behind."""


def external(config: pytest.Config) -> bool:
    """``pytest -m cluster`` with ``$KUBECONFIG``: the user's cluster, not the built control plane."""
    return bool(os.environ.get("KUBECONFIG")) and "cluster" in (config.getoption("-m") or "")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that needs ``cluster`` so, and ``controlplane`` unless it runs on $KUBECONFIG."""
    for item in items:
        if "cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)
            if not external(config):
                item.add_marker(pytest.mark.controlplane)


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The operator running against the real API server, with our CRDs applied."""
    tmp = tmp_path_factory.mktemp("cluster")
    if external(request.config):
        with real_cluster(tmp, Cluster, Path(os.environ["KUBECONFIG"])) as c:
            yield c
    else:
        controlplane = request.getfixturevalue("controlplane")
        with real_cluster(tmp, Cluster, controlplane.kubeconfig, controlplane) as c:
            yield c


@pytest.fixture
def no_nodes(cluster: Cluster) -> None:
    """Skip unless no kubelet runs pods here: the test plays the kubelet (the built control plane).

    On a cluster with nodes (kind), a real kubelet writes pod status and runs worker pods
    in containers that cannot reach a demo target on this machine's loopback.
    """
    if cluster.controlplane is None:
        pytest.skip("plays the kubelet: needs the built control plane, whose cluster has no nodes")


@pytest.fixture(autouse=True)
def _kubeconfig(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """``Kube.connect()`` and ``mothership`` subprocesses in these tests reach the same API server."""
    if "cluster" in request.fixturenames:
        monkeypatch.setenv("KUBECONFIG", str(request.getfixturevalue("cluster").kubeconfig))


@pytest.fixture
async def api(cluster: Cluster) -> AsyncIterator[Kube]:
    """A client as the test's user (cluster admin), its calls counted apart from the operator's."""
    kube = client(cluster)
    kube.calls = collections.Counter()
    async with kube:
        yield kube


@pytest.fixture
async def namespace(api: Kube, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A fresh namespace for one test (created directly, not through a Tenant)."""
    name = namespace_name(f"ms-{RUN}-", request.node.name, 30)
    await api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    await api.delete("Namespace", name)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    """On failure, attach the tail of the operator's log."""
    outcome = yield
    report = outcome.get_result()
    c = getattr(item, "funcargs", {}).get("cluster")
    if report.failed and isinstance(c, Cluster):
        report.sections.append(("operator log (tail)", c.operator_log()[-6000:]))
