"""The pod runner as a kubelet on the real control plane: what the operator and users rely on.

``tests/podrunner.py`` stands in for the nodes, the scheduler and the kubelet
that the built control plane lacks. If it drifts from what a kubelet does, the
LoadTest and App cases here would pass against a cluster that cannot exist; so
its kubelet side is pinned against the real kube-apiserver and
kube-controller-manager: binding through ``pods/binding``, a Node the node
lifecycle controller keeps Ready, ``pods/log`` proxied by the API server to the
runner's log endpoint, graceful deletion (the API server waits for the kubelet,
which deletes with grace 0), and App pods that the real ReplicaSet and
Deployment controllers count as ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.conftest import wait_until
from tests.loadtests.conftest import DemoTargetProcess, adopt_for_load_tests, demo_target_process, target
from tests.loadtests.test_e2e import loadtest, until_phase
from tests.operator.harness import Cluster, app, client
from tests.podrunner import LEASE, NODE, NODE_LEASE_NAMESPACE, PodRunner

from mothership.kube import KINDS, ApiError, Kind, Kube
from mothership.loadtests import builders

__all__ = ["demo_target_process", "target"]  # fixtures

Until = Callable[..., Awaitable[Any]]
ENDPOINT_SLICE = Kind("discovery.k8s.io/v1", "EndpointSlice", "endpointslices")
TIMEOUT = 60.0
HOLD = "mothership.dev/test-hold"
"""A finalizer the deletion test puts on a pod, so its last state can be read before it goes."""


@pytest.fixture
async def tenant(api: Kube, namespace: str) -> AsyncIterator[str]:
    """A Tenant owning (adopting) the test namespace whose LoadTests may aim at 127.0.0.1."""
    await adopt_for_load_tests(api, namespace)
    yield namespace
    await api.delete("Tenant", namespace)


@pytest.fixture
async def runner(cluster: Cluster, no_nodes: None, namespace: str,
                 tmp_path: Path) -> AsyncIterator[PodRunner]:
    async with client(cluster) as kube, PodRunner(kube, namespace, grace_period=10,
                                                  run_app_pods=True, log_dir=tmp_path / "workers") as r:
        yield r


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    found = [c for c in ((obj or {}).get("status") or {}).get("conditions") or [] if c["type"] == type_]
    return dict(found[0]) if found else {}


async def ready_worker(api: Kube, namespace: str, loadtest_name: str) -> dict[str, Any] | None:
    pods = await api.list("Pod", namespace, label_selector={builders.LOADTEST_LABEL: loadtest_name})
    return pods[0] if len(pods) == 1 and condition(pods[0], "Ready").get("status") == "True" else None


async def running_worker(api: Kube, namespace: str, target_url: str, until: Until,
                         name: str = "lt") -> dict[str, Any]:
    """One worker of a long LoadTest, Ready and started by the operator (which reached it at its pod IP)."""
    await api.apply(loadtest(name, namespace, target_url, workers=1, virtualUsers=1, duration="120s"))
    await until_phase(api, namespace, name, "Running", timeout=TIMEOUT)
    pod: dict[str, Any] = await until(lambda: ready_worker(api, namespace, name), timeout=TIMEOUT,
                                      what="the worker pod Ready")
    return pod


@contextlib.asynccontextmanager
async def log_request(api: Kube, namespace: str, name: str,
                      params: dict[str, str]) -> AsyncIterator[aiohttp.ClientResponse]:
    """``GET pods/<name>/log`` through the API server, as ``kubectl logs`` sends it."""
    url = api.credentials.server + KINDS["Pod"].path(namespace, name, "log")
    headers = {"Authorization": auth} if (auth := api.credentials.header()) else {}
    connector = aiohttp.TCPConnector(ssl=api.credentials.ssl_context())
    async with aiohttp.ClientSession(connector=connector) as session, \
            session.get(url, params=params, headers=headers) as response:
        yield response


async def pod_log(api: Kube, namespace: str, name: str, **params: str) -> tuple[int, str]:
    async with log_request(api, namespace, name, params) as response:
        return response.status, await response.text()


async def follow_log(api: Kube, namespace: str, name: str, opened: asyncio.Event) -> str:
    """``kubectl logs -f``: the whole stream, until it ends; ``opened`` is set at the first bytes."""
    chunks: list[bytes] = []
    async with log_request(api, namespace, name, {"follow": "true"}) as response:
        assert response.status == 200, await response.text()
        async for chunk in response.content.iter_any():
            chunks.append(chunk)
            opened.set()
    return b"".join(chunks).decode()


async def test_a_worker_pod_is_bound_to_the_runners_ready_node_and_runs(
        api: Kube, tenant: str, runner: PodRunner, target: DemoTargetProcess, until: Until) -> None:
    pod = await running_worker(api, tenant, target.url, until)
    assert pod["spec"]["nodeName"] == runner.node_name
    assert condition(pod, "PodScheduled")["status"] == "True"
    status = pod["status"]
    assert status["phase"] == "Running"
    assert status["podIP"] == runner.pods[pod["metadata"]["name"]].address
    assert status["podIP"].startswith("127.") and status["hostIP"] == "127.0.0.1"
    assert status["containerStatuses"][0]["ready"] is True

    node = await api.get(NODE, runner.node_name)
    assert node is not None
    assert condition(node, "Ready")["status"] == "True"
    assert node["status"]["addresses"] == [{"type": "InternalIP", "address": "127.0.0.1"}]
    assert node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == runner.kubelet_port
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == runner.node_name


async def test_the_node_stays_ready_over_a_lease_renewal_and_goes_with_the_runner(
        cluster: Cluster, namespace: str, tmp_path: Path, until: Until) -> None:
    async with client(cluster) as kube:
        async with PodRunner(kube, namespace, log_dir=tmp_path) as runner:
            name = runner.node_name

            async def renew_time() -> str:
                lease = await kube.get(LEASE, name, NODE_LEASE_NAMESPACE)
                assert lease is not None, "no Lease in kube-node-lease"
                return str(lease["spec"]["renewTime"])

            first = await renew_time()
            node = await kube.get(NODE, name)
            heartbeat = condition(node, "Ready")["lastHeartbeatTime"]
            await until(lambda: _changed(renew_time, first), timeout=runner.heartbeat + 10,
                        what="a Lease renewal")

            async def heartbeat_renewed() -> dict[str, Any] | None:
                node = await kube.get(NODE, name)
                return node if condition(node, "Ready").get("lastHeartbeatTime", "") > heartbeat else None

            node = await until(heartbeat_renewed, timeout=5, what="the Ready heartbeat renewed")
            assert condition(node, "Ready")["status"] == "True", node["status"]["conditions"]

            async def untainted() -> dict[str, Any] | None:
                # The TaintNodesByCondition admission plugin taints a new Node not-ready; the node
                # lifecycle controller lifts it once it sees the Node healthy, and would add
                # unreachable taints if the Lease went stale.
                node = await kube.get(NODE, name)
                return node if not (node or {}).get("spec", {}).get("taints") else None

            node = await until(untainted, timeout=30, what="the not-ready taint lifted")
            assert condition(node, "Ready")["status"] == "True", node["status"]["conditions"]
        assert await kube.get(NODE, name) is None
        assert await kube.get(LEASE, name, NODE_LEASE_NAMESPACE) is None


async def _changed(read: Callable[[], Awaitable[str]], before: str) -> bool:
    return await read() != before


async def _equal(read: Callable[[], Awaitable[Any]], expected: Any) -> bool:
    return bool(await read() == expected)


async def test_pod_logs_come_through_the_api_server(
        api: Kube, tenant: str, runner: PodRunner, target: DemoTargetProcess, until: Until) -> None:
    pod = await running_worker(api, tenant, target.url, until)
    name, ip = pod["metadata"]["name"], pod["status"]["podIP"]

    status, text = await pod_log(api, tenant, name)
    assert status == 200, text
    assert f"listening on http://{ip}:{builders.WORKER_PORT}" in text
    lines = text.splitlines()
    assert len(lines) >= 2, text

    status, tail = await pod_log(api, tenant, name, tailLines="1")
    assert status == 200 and tail.splitlines() == lines[-1:], (lines, tail)

    status, stamped = await pod_log(api, tenant, name, timestamps="true")
    assert status == 200
    for line, plain in zip(stamped.splitlines(), lines, strict=False):
        stamp, _, rest = line.partition(" ")
        assert rest == plain
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", stamp), stamp

    status, cut = await pod_log(api, tenant, name, limitBytes="7")
    assert status == 200 and cut == text[:7]

    soon = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status, none = await pod_log(api, tenant, name, sinceTime=soon)
    assert status == 200 and none == ""

    status, text = await pod_log(api, tenant, name, previous="true")
    assert status == 400 and "previous terminated container" in text, text


@contextlib.asynccontextmanager
async def held(api: Kube, namespace: str, name: str) -> AsyncIterator[None]:
    """The pod stays (with our finalizer) until the block ends, so its last state can be read."""
    await api.request("patch", KINDS["Pod"], namespace=namespace, name=name,
                      body=[{"op": "add", "path": "/metadata/finalizers/-", "value": HOLD}],
                      content_type="application/json-patch+json")
    try:
        yield
    finally:
        async def release() -> bool:
            current = await api.get("Pod", name, namespace)
            if current is None or HOLD not in (current["metadata"].get("finalizers") or []):
                return True
            rest = [f for f in current["metadata"]["finalizers"] if f != HOLD]
            try:  # resourceVersion: the Job controller edits the finalizers too
                await api.patch("Pod", name, namespace, {"metadata": {
                    "finalizers": rest, "resourceVersion": current["metadata"]["resourceVersion"]}})
            except ApiError as exc:
                if exc.status != 409:
                    raise
                return False
            return True

        await wait_until(release, timeout=10, what="the test's finalizer removed")


async def test_deleting_a_running_worker_sigterms_it_reports_it_terminated_then_removes_it(
        api: Kube, tenant: str, runner: PodRunner, target: DemoTargetProcess, until: Until) -> None:
    pod = await running_worker(api, tenant, target.url, until)
    name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
    async with held(api, tenant, name):
        opened = asyncio.Event()
        follow = asyncio.create_task(follow_log(api, tenant, name, opened))
        await until(opened.is_set, timeout=10, what="the log stream open")

        deleted_at = time.monotonic()
        await api.request("delete", KINDS["Pod"], namespace=tenant, name=name,
                          body={"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 8})

        async def ended() -> dict[str, Any] | None:
            current = await api.get("Pod", name, tenant) or {}
            statuses = (current.get("status") or {}).get("containerStatuses") or []
            return current if statuses and "terminated" in (statuses[0].get("state") or {}) else None

        current = await until(ended, timeout=20, what="the worker's terminated state")
        took = time.monotonic() - deleted_at
        terminated = current["status"]["containerStatuses"][0]["state"]["terminated"]
        # SIGTERM: the worker stops, writes its summary and exits 0 within the grace period;
        # a SIGKILL at its end would show as 137 after 8 s.
        assert terminated["exitCode"] == 0 and terminated["reason"] == "Completed", terminated
        assert json.loads(terminated["message"])["state"] == "stopped", terminated
        assert took < 8, f"terminated {took:.1f} s after the delete: SIGKILLed at the end of the grace?"
        assert current["status"]["phase"] == "Succeeded"

        async def deleted_with_grace_zero() -> bool:
            current = await api.get("Pod", name, tenant) or {}
            return current.get("metadata", {}).get("deletionGracePeriodSeconds") == 0

        await until(deleted_with_grace_zero, timeout=10, what="the runner's delete with gracePeriodSeconds=0")
        text = await asyncio.wait_for(follow, timeout=10)  # a follow ends with the container's output
        assert "listening on" in text and text == (runner.pods[name].log or Path()).read_text(), text

    async def gone() -> bool:
        current = await api.get("Pod", name, tenant)
        return current is None or bool(current["metadata"]["uid"] != uid)

    await until(gone, timeout=30, what="the pod gone")


async def test_an_app_pod_is_reported_ready_and_the_deployment_counts_it(
        api: Kube, namespace: str, runner: PodRunner, until: Until) -> None:
    await api.request("create", KINDS["App"], namespace=namespace, body=app("shop", namespace, replicas=2))

    async def deployment_ready() -> dict[str, Any] | None:
        status = ((await api.get("Deployment", "shop", namespace)) or {}).get("status") or {}
        return status if status.get("readyReplicas") == 2 and status.get("availableReplicas") == 2 else None

    await until(deployment_ready, timeout=TIMEOUT, what="the Deployment's 2 ready replicas")

    async def app_ready() -> bool:
        status = ((await api.get("App", "shop", namespace)) or {}).get("status") or {}
        return status.get("phase") == "Ready"

    await until(app_ready, timeout=TIMEOUT, what="the App Ready")
    pods = await api.list("Pod", namespace, label_selector={"app.kubernetes.io/instance": "shop"})
    assert len(pods) == 2 and {p["spec"]["nodeName"] for p in pods} == {runner.node_name}
    assert all(condition(p, "Ready")["status"] == "True" and p["status"]["podIP"] for p in pods)

    async def serving() -> set[str]:
        """The ready addresses of the App's Service, as the real EndpointSlice controller lists them."""
        slices = await api.list(ENDPOINT_SLICE, namespace,
                                label_selector={"kubernetes.io/service-name": "shop"})
        return {address for s in slices for e in s.get("endpoints") or []
                if (e.get("conditions") or {}).get("ready") for address in e["addresses"]}

    await until(lambda: _equal(serving, {p["status"]["podIP"] for p in pods}), timeout=30,
                what="the Service's EndpointSlice listing both pods ready")
    status, text = await pod_log(api, namespace, pods[0]["metadata"]["name"])
    first = f"{pods[0]['metadata']['name']} listening on :8080 (image ghcr.io/acme/shop:1.0)\n"
    assert status == 200 and text.startswith(first)  # App pods write a start line, then a request a tick

    # A deleted App pod goes at once (default grace 30 s): the runner ends it and deletes with grace 0;
    # the ReplicaSet replaces it and the replacement is ready too.
    victim = pods[0]["metadata"]["name"]
    await api.delete("Pod", victim, namespace)

    async def replaced() -> bool:
        names = {p["metadata"]["name"] for p in await api.list(
            "Pod", namespace, label_selector={"app.kubernetes.io/instance": "shop"})}
        return victim not in names and len(names) == 2

    await until(replaced, timeout=30, what="the deleted App pod gone and replaced")
    await until(deployment_ready, timeout=TIMEOUT, what="2 ready replicas again")
