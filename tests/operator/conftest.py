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

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from mothership.kube import Kube
from tests.operator.harness import (
    Cluster,
    client,
    emulated_cluster,
    namespace_name,
)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The emulator with our CRDs, and ``mothership operator`` running against it."""
    with emulated_cluster(tmp_path_factory.mktemp("operator-e2e"), Cluster) as c:
        yield c


@pytest.fixture
async def api(cluster: Cluster) -> AsyncIterator[Kube]:
    async with client(cluster) as kube:
        yield kube


@pytest.fixture
async def namespace(api: Kube, request: pytest.FixtureRequest) -> str:
    """A fresh namespace for one test (created directly, not through a Tenant)."""
    name = namespace_name("t", request.node.name, 40)
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


