"""Opt-in tests against a real cluster: ``pytest -m cluster`` with ``$KUBECONFIG`` set.

What the emulator cannot prove, a real API server can: OpenAPI and CEL
validation of our CRDs, defaulting and pruning, real garbage collection,
server-side apply semantics and a real Deployment controller. Every test here
is marked ``cluster``; all of them skip, saying why, unless ``$KUBECONFIG`` is
set *and* ``-m cluster`` was asked for (so a developer's default test run never
touches whatever cluster their shell happens to point at).

Setup, once per session: apply ``crds/`` and wait until they are Established,
start ``mothership operator`` as a subprocess with the same ``$KUBECONFIG``,
and wait for ``/healthz``. Each test gets its own namespace, deleted afterwards.
With kind: ``kind create cluster && KUBECONFIG=~/.kube/config pytest -m cluster``.
"""

from __future__ import annotations

import asyncio
import collections
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import yaml
from tests.operator.harness import (
    CRDS,
    Cluster,
    free_port,
    start_operator,
    stop_operator,
    wait_healthy,
)

from mothership.kube import Kube

RUN = secrets.token_hex(3)
"""A per-run suffix: names must not collide with what an earlier run left behind."""
HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test in this folder ``cluster``, and skip them all unless opted in."""
    reason = None
    if not os.environ.get("KUBECONFIG"):
        reason = "KUBECONFIG is not set: point it at a cluster (e.g. kind) and run pytest -m cluster"
    elif "cluster" not in (config.getoption("-m") or ""):
        reason = "cluster tests run only with -m cluster (they act on the cluster $KUBECONFIG points at)"
    for item in items:
        if Path(str(item.path)).is_relative_to(HERE):
            item.add_marker(pytest.mark.cluster)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


async def _apply_crds() -> None:
    async with Kube.connect() as kube:
        for path in sorted(CRDS.glob("*.yaml")):
            crd = yaml.safe_load(path.read_text())
            await kube.apply(crd)
        for path in sorted(CRDS.glob("*.yaml")):
            name = yaml.safe_load(path.read_text())["metadata"]["name"]
            for _ in range(100):
                crd = await kube.get("CustomResourceDefinition", name) or {}
                conditions = (crd.get("status") or {}).get("conditions") or []
                if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                    break
                await asyncio.sleep(0.1)  # polling the server's own readiness signal
            else:
                raise AssertionError(f"CRD {name} not Established after 10 s")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The operator running against ``$KUBECONFIG`` with our CRDs applied."""
    tmp = tmp_path_factory.mktemp("cluster")
    asyncio.run(_apply_crds())
    c = Cluster(thread=None, kubeconfig=Path(os.environ["KUBECONFIG"]), log=tmp / "operator.log",
                port=free_port())
    c.process = start_operator(c)
    try:
        wait_healthy(c, timeout=60)
        yield c
    finally:
        stop_operator(c.process)


@pytest.fixture
async def api(cluster: Cluster) -> AsyncIterator[Kube]:
    kube = Kube.connect()
    kube.calls = collections.Counter()
    async with kube:
        yield kube


@pytest.fixture
async def namespace(api: Kube, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    name = f"ms-{RUN}-{request.node.name.removeprefix('test_')[:30]}".replace("_", "-").rstrip("-").lower()
    await api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    await api.delete("Namespace", name)

