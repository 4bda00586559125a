"""The operator process: /healthz, /metrics, a restart, ``--namespace``, and its RBAC.

Each test drives what it checks itself, so any one of them holds when run
alone. The RBAC test reads the built control plane's audit log: the operator
runs there as its own user with exactly the chart's ClusterRole.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from mothership.kube import KINDS, Kube
from tests.operator.harness import (
    Cluster,
    app,
    audit_triple,
    rbac_problems,
    start_operator,
    stop_operator,
    tenant,
    wait_healthy,
)
from tests.realcluster import RUN

Until = Callable[..., Awaitable[Any]]


async def fetch(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


def sample(metrics: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format, or None when absent."""
    for line in metrics.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_healthz_answers_200_while_the_operator_runs(cluster: Cluster) -> None:
    status, body = await fetch(f"{cluster.url}/healthz")
    assert status == 200
    assert "ok" in body


async def test_metrics_count_reconciles_and_apps_by_phase(
        cluster: Cluster, api: Kube, namespace: str, until: Until) -> None:
    await api.request("create", KINDS["App"], namespace=namespace, body=app("shop", namespace))
    await api.request("create", KINDS["Tenant"], body=tenant(f"metrics-{RUN}"))
    await until(lambda: _status(api, "App", "shop", namespace), timeout=10, what="the App's status")
    await until(lambda: _status(api, "Tenant", f"metrics-{RUN}"), timeout=10, what="the Tenant's status")
    status, text = await fetch(f"{cluster.url}/metrics")
    assert status == 200
    assert (sample(text, "mothership_reconcile_total", controller="app", result="success") or 0) > 0
    assert (sample(text, "mothership_reconcile_total", controller="tenant", result="success") or 0) > 0
    assert sample(text, "mothership_reconcile_errors_total", controller="app") is not None
    assert (sample(text, "mothership_reconcile_time_seconds_count", controller="app") or 0) > 0
    phases = {p: sample(text, "mothership_apps", phase=p) for p in
              ("Pending", "Progressing", "Ready", "Degraded", "Failed")}
    assert all(v is not None for v in phases.values()), phases
    assert sum(v or 0 for v in phases.values()) >= 1
    assert (sample(text, "mothership_managed_objects", kind="Deployment") or 0) >= 1
    assert (sample(text, "mothership_managed_objects", kind="App") or 0) >= 1
    assert sample(text, "process_resident_memory_bytes") is not None


async def test_a_restarted_operator_repairs_what_changed_while_it_was_down(
        cluster: Cluster, api: Kube, namespace: str, until: Until) -> None:
    await api.request("create", KINDS["App"], namespace=namespace, body=app("shop", namespace))
    await until(lambda: api.get("Deployment", "shop", namespace), timeout=5)

    assert cluster.process is not None
    assert await asyncio.to_thread(stop_operator, cluster.process) == 0  # SIGTERM: a clean exit
    await api.delete("Deployment", "shop", namespace)
    await api.patch("App", "shop", namespace, {"spec": {"image": "ghcr.io/acme/shop:3.0"}})

    cluster.process = start_operator(cluster)
    await asyncio.to_thread(wait_healthy, cluster)

    async def image() -> str | None:
        d = await api.get("Deployment", "shop", namespace)
        return d["spec"]["template"]["spec"]["containers"][0]["image"] if d else None

    await until(lambda: _eq(image(), "ghcr.io/acme/shop:3.0"), timeout=10, what="the Deployment back")


async def test_with_namespace_the_operator_serves_only_that_namespace(
        cluster: Cluster, api: Kube, until: Until) -> None:
    served, ignored, tenant_name = f"only-here-{RUN}", f"not-here-{RUN}", f"ns-mode-{RUN}"
    for ns in (served, ignored):
        await api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    assert cluster.process is not None
    assert await asyncio.to_thread(stop_operator, cluster.process) == 0
    cluster.process = start_operator(cluster, "--namespace", served)
    try:
        await asyncio.to_thread(wait_healthy, cluster)
        for ns in (ignored, served):
            await api.request("create", KINDS["App"], namespace=ns, body=app("shop", ns))
        await until(lambda: api.get("Deployment", "shop", served), timeout=10, what="served")
        assert await api.get("Deployment", "shop", ignored) is None
        # Tenants are cluster-scoped: still served.
        await api.request("create", KINDS["Tenant"], body=tenant(tenant_name))
        await until(lambda: api.get("Namespace", tenant_name), timeout=10, what="the Tenant's namespace")
    finally:  # the session's operator serves every namespace again
        await asyncio.to_thread(stop_operator, cluster.process)
        cluster.process = start_operator(cluster)
        await asyncio.to_thread(wait_healthy, cluster)


async def test_every_request_the_operator_made_was_allowed_by_the_charts_rules(
        cluster: Cluster, api: Kube, until: Until) -> None:
    """A scenario of its own, then the audit log: nothing refused, everything covered by RULES.

    So the chart's ClusterRole lacks no rule the operator needs, and each call is one we
    expected (the list below keeps this from passing on an idle operator).
    """
    if cluster.controlplane is None:
        pytest.skip("needs the audit log of the built control plane (not $KUBECONFIG)")
    before = len(cluster.controlplane.audit())
    name = f"rbac-{RUN}"
    await api.request("create", KINDS["Tenant"], body=tenant(name, owners=[{"name": "alice"}]))
    await until(lambda: api.get("RoleBinding", "mothership", name), timeout=30, what="the RoleBinding")
    await api.request("create", KINDS["App"], namespace=name, body=app(
        "shop", name, expose={"host": "shop.example.com"}, autoscale={"min": 2, "max": 3}))
    await until(lambda: api.get("Ingress", "shop", name), timeout=30, what="the Ingress")
    await api.patch("App", "shop", name, {"spec": {"expose": None}})
    await until(lambda: _gone(api.get("Ingress", "shop", name)), timeout=30, what="the Ingress deleted")
    await api.request("create", KINDS["LoadTest"], namespace=name, body={
        "apiVersion": "mothership.dev/v1alpha1", "kind": "LoadTest", "metadata": {"name": "evil"},
        "spec": {"target": {"url": "http://10.20.30.40/"}, "virtualUsers": 1, "duration": "1s",
                 "scenarios": [{"name": "s", "requests": [{"path": "/"}]}]}})
    await until(lambda: _phase(api, "evil", name, "Errored"), timeout=30, what="the LoadTest refused")
    # The Warning Event is posted just after the status: wait for it, or the audit may miss it.
    await until(lambda: _event(api, name, "TargetNotAllowed"), timeout=10, what="the refusal's Event")

    events = cluster.audit_since(before)
    assert events, "the audit log holds no request of the operator's"
    assert not rbac_problems(events)
    seen = {(verb, resource, sub) for verb, _, resource, sub in map(audit_triple, events)}
    for expected in [("patch", "namespaces", ""), ("patch", "rolebindings", ""),
                     ("patch", "deployments", ""), ("patch", "ingresses", ""),
                     ("delete", "ingresses", ""), ("patch", "apps", "status"),
                     ("patch", "loadtests", "status"), ("create", "events", "")]:
        assert expected in seen, (expected, sorted(seen))


async def _status(api: Kube, kind: str, name: str, namespace: str | None = None) -> Any:
    return ((await api.get(kind, name, namespace)) or {}).get("status")


async def _phase(api: Kube, name: str, namespace: str, phase: str) -> bool:
    return ((await _status(api, "LoadTest", name, namespace)) or {}).get("phase") == phase


async def _event(api: Kube, namespace: str, reason: str) -> bool:
    return any(e.get("reason") == reason for e in await api.list("Event", namespace))


async def _gone(value: Awaitable[Any]) -> bool:
    return (await value) is None


async def _eq(value: Awaitable[Any], expected: Any) -> bool:
    return (await value) == expected
