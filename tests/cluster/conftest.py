"""The operator on a real API server: the built control plane by default, or ``$KUBECONFIG``.

What the emulator cannot prove, a real API server can: OpenAPI and CEL
validation of our CRDs, defaulting and pruning, admission (ResourceQuota,
PodSecurity), real garbage collection, server-side apply, and the real
Deployment, ReplicaSet, Job and quota controllers.

Where the tests run:

- by default, on the control plane that ``tests/controlplane`` builds from Go
  modules and starts once per run (etcd, kube-apiserver, kube-controller-manager
  on 127.0.0.1; no nodes: ``tests/podrunner.py`` plays the kubelet);
- with ``pytest -m cluster`` and ``$KUBECONFIG`` set, on that cluster instead
  (kind in the e2e-kind workflow). A default run never touches the cluster a
  developer's shell happens to point at.

Every test here is marked ``cluster``. Setup, once per session: apply ``crds/``
and wait until they are Established, start ``mothership operator`` as a
subprocess against the same API, and wait for ``/healthz``. Each test gets its
own namespace, deleted afterwards.
"""

from __future__ import annotations

import collections
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from tests.operator.harness import Cluster, client, namespace_name, real_cluster

from mothership.kube import Kube

RUN = secrets.token_hex(3)
"""A per-run suffix: names must not collide with what an earlier run left behind."""
HERE = Path(__file__).parent


def external(config: pytest.Config) -> bool:
    """``pytest -m cluster`` with ``$KUBECONFIG``: the user's cluster, not the built control plane."""
    return bool(os.environ.get("KUBECONFIG")) and "cluster" in (config.getoption("-m") or "")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test in this folder ``cluster``, and ``controlplane`` unless it runs on $KUBECONFIG."""
    for item in items:
        if Path(str(item.path)).is_relative_to(HERE):
            item.add_marker(pytest.mark.cluster)
            if not external(config):
                item.add_marker(pytest.mark.controlplane)


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The operator running against the real API server, with our CRDs applied."""
    if external(request.config):
        kubeconfig = Path(os.environ["KUBECONFIG"])
    else:
        kubeconfig = request.getfixturevalue("controlplane").kubeconfig
    with real_cluster(tmp_path_factory.mktemp("cluster"), Cluster, kubeconfig) as c:
        yield c


@pytest.fixture(autouse=True)
def _kubeconfig(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """``Kube.connect()`` and ``mothership`` subprocesses in these tests reach the same API server."""
    if "cluster" in request.fixturenames:
        monkeypatch.setenv("KUBECONFIG", str(request.getfixturevalue("cluster").kubeconfig))


@pytest.fixture
async def api(cluster: Cluster) -> AsyncIterator[Kube]:
    kube = client(cluster)
    kube.calls = collections.Counter()
    async with kube:
        yield kube


@pytest.fixture
async def namespace(api: Kube, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    name = namespace_name(f"ms-{RUN}-", request.node.name, 30).lower()
    await api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    await api.delete("Namespace", name)

