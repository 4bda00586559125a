"""What only the real admission plugins and controllers show: failures our old emulator hid.

Each was seen on a real kube-apiserver with kube-controller-manager while the
emulator suite was green; they were pinned here as strict xfails until the
operator was fixed, and now guard against the failure coming back.
"""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import wait_until
from tests.controlplane import ControlPlane
from tests.loadtests.conftest import DemoTargetProcess, adopt_for_load_tests, demo_target_process, target
from tests.loadtests.test_e2e import FINAL, condition, loadtest, until_phase
from tests.operator.harness import ROOT, Cluster, client, real_cluster
from tests.podrunner import PodRunner

from mothership.kube import KINDS, Kube
from mothership.loadtests import builders

__all__ = ["demo_target_process", "target"]  # fixtures

TIMEOUT = 90.0
"""Seconds for a LoadTest to run its course here: the Job controller, the pod runner, the watch latency."""


def ready(obj: dict[str, Any] | None) -> bool:
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


@pytest.mark.timeout(300)
def test_on_a_fresh_cluster_a_ready_tenant_admits_its_first_app(
        controlplane: ControlPlane, tmp_path: Path) -> None:
    """The README's flow on a cluster whose CRDs are seconds old: tenant, wait Ready, app.

    The quota controller learns ``count/apps.mothership.dev`` only after it
    discovers the new CRD (every 30 s), and re-syncs an existing quota only
    every 5 minutes; until it counts the key, quota admission refuses every App
    ("status unknown for quota"). So Ready waits for the count, and the operator
    gets it done within a minute of the CRDs being installed. A fresh control
    plane, not the session's, so the CRDs are as new as a user's: ``real_cluster``
    applies them after the control plane has started.
    """
    tenant = yaml.safe_load((ROOT / "examples" / "tenant.yaml").read_text())
    app = yaml.safe_load((ROOT / "examples" / "app.yaml").read_text())
    with ControlPlane.start(tmp_path / "fresh") as fresh, \
            real_cluster(tmp_path, Cluster, fresh.kubeconfig, fresh) as cluster:

        async def flow() -> float:
            async with client(cluster) as api:
                crd = await api.get("CustomResourceDefinition", "apps.mothership.dev")
                assert crd is not None
                installed = datetime.datetime.fromisoformat(crd["metadata"]["creationTimestamp"])
                await api.apply(tenant)
                await wait_until(lambda: api.get("Tenant", tenant["metadata"]["name"]),
                                 timeout=60, what="the Tenant")
                await wait_until(lambda: _ready(api, tenant["metadata"]["name"]), timeout=60, interval=0.1,
                                 what="Tenant Ready")
                await api.request("create", KINDS["App"], namespace=app["metadata"]["namespace"], body=app)
                return (datetime.datetime.now(datetime.UTC) - installed).total_seconds()

        elapsed = asyncio.run(flow())
        # creationTimestamp has whole seconds: the CRDs may be up to 1 s older than it says.
        assert elapsed < 60 - 1, f"the first App was admitted {elapsed:.1f} s after the CRDs were installed"


async def _ready(api: Kube, name: str) -> bool:
    return ready(await api.get("Tenant", name))


@pytest.fixture
async def runner(cluster: Cluster, no_nodes: None, api: Kube, namespace: str, tmp_path: Path) -> Any:
    async with client(cluster) as kube, PodRunner(kube, namespace, log_dir=tmp_path / "workers") as r:
        yield r


async def test_a_worker_killed_within_tolerated_failures_lets_the_others_finish(
        api: Kube, namespace: str, runner: PodRunner, target: DemoTargetProcess) -> None:
    """The failed index is tolerated (``maxFailedIndexes``): the Job controller leaves the others running.

    With ``backoffLimit: 0`` it ended every pod at the first failure.
    """
    await adopt_for_load_tests(api, namespace)
    await api.apply(loadtest("tolerant", namespace, target.url, workers=3, virtualUsers=3, duration="8s",
                             toleratedWorkerFailures=1))
    await until_phase(api, namespace, "tolerant", "Running", timeout=TIMEOUT)
    await runner.kill(1)
    status = await until_phase(api, namespace, "tolerant", *FINAL, timeout=TIMEOUT)
    assert status["phase"] == "Passed", status
    assert status["workers"]["succeeded"] == 2, status["workers"]
    assert [(f["index"], f["reason"]) for f in status["workers"]["failures"]] == [(1, "Error")]


async def test_workers_beyond_the_tenant_quota_are_refused_at_once(
        api: Kube, namespace: str, runner: PodRunner, target: DemoTargetProcess) -> None:
    """Quota admission would refuse the 3rd and 4th worker pods: the pre-flight refuses the test."""
    await adopt_for_load_tests(api, namespace, quota={"cpu": "2", "memory": "4Gi"})
    await wait_until(lambda: _ready(api, namespace), timeout=30, what="Tenant Ready: the quota is there")
    await api.apply(loadtest("big", namespace, target.url, workers=4, virtualUsers=4, duration="30s",
                             resources={"cpu": "1", "memory": "256Mi"}))
    status = await until_phase(api, namespace, "big", "Errored", timeout=20)
    accepted = condition(status, "Accepted")
    assert accepted["status"] == "False" and accepted["reason"] == "ExceedsQuota", accepted
    assert "quota" in accepted["message"], accepted
    assert "requests.cpu 4 but only 2 is free (hard 2, used 0)" in accepted["message"], accepted
    assert await api.get("Job", builders.job_name("big"), namespace) is None


async def test_worker_pods_refused_by_quota_admission_end_the_test_with_the_admission_message(
        api: Kube, namespace: str, runner: PodRunner, target: DemoTargetProcess) -> None:
    """The pre-flight reads only the Tenant's quota; a cluster admin's own quota (pods: 1) lets the
    Job controller create one worker pod and refuses the other at admission. The test must end
    on the Job's FailedCreate event, not after the workers' readiness timeout."""
    await adopt_for_load_tests(api, namespace)
    await api.apply({"apiVersion": "v1", "kind": "ResourceQuota",
                     "metadata": {"name": "admin", "namespace": namespace}, "spec": {"hard": {"pods": "1"}}})

    async def counted() -> bool:
        found = await api.get("ResourceQuota", "admin", namespace)
        return bool(((found or {}).get("status") or {}).get("hard"))

    await wait_until(counted, timeout=30, what="the quota controller to count quota admin")
    await api.apply(loadtest("squeezed", namespace, target.url, workers=2, virtualUsers=2, duration="30s"))
    status = await until_phase(api, namespace, "squeezed", "Errored", timeout=20)
    assert condition(status, "Accepted")["status"] == "True", status
    failures = status["workers"]["failures"]
    assert [f["reason"] for f in failures] == ["FailedCreate"], failures
    assert "exceeded quota: admin" in failures[0]["message"], failures
    completed = condition(status, "Completed")
    assert "exceeded quota: admin" in completed["message"], completed
    assert condition(status, "Started")["reason"] == "NeverStarted"
    assert await target.requests() == 0
