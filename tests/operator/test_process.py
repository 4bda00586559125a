"""The operator process: /healthz, /metrics, a restart, and every API call it made against rbac.RULES.

The ``test_audit_*`` tests run after every other test of this folder (see
conftest), in file order, so the metrics cover what all scenarios did (before
the restart resets them) and the RBAC audit covers both operator processes.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from mothership import rbac
from mothership.kube import KINDS, Kube
from tests.operator.harness import Cluster, app, start_operator, stop_operator, wait_healthy

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


async def test_audit_metrics_count_reconciles_and_apps_by_phase(cluster: Cluster) -> None:
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


async def test_audit_a_restarted_operator_repairs_what_changed_while_it_was_down(
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


async def test_audit_with_namespace_the_operator_serves_only_that_namespace(
        cluster: Cluster, api: Kube, until: Until) -> None:
    served, ignored = "only-here", "not-here"
    for ns in (served, ignored):
        await api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    assert cluster.process is not None
    assert await asyncio.to_thread(stop_operator, cluster.process) == 0
    cluster.process = start_operator(cluster, "--namespace", served)
    await asyncio.to_thread(wait_healthy, cluster)

    for ns in (ignored, served):
        await api.request("create", KINDS["App"], namespace=ns, body=app("shop", ns))
    await until(lambda: api.get("Deployment", "shop", served), timeout=5, what="served")
    assert await api.get("Deployment", "shop", ignored) is None
    # Tenants are cluster-scoped: still served.
    await api.request("create", KINDS["Tenant"], body={
        "apiVersion": "mothership.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": "ns-mode"},
        "spec": {}})
    await until(lambda: api.get("Namespace", "ns-mode"), timeout=5, what="the Tenant's namespace")


async def test_audit_every_api_call_the_operator_made_is_allowed_by_rbac_rules(cluster: Cluster) -> None:
    calls = cluster.operator_calls()
    assert calls, "the emulator saw no calls from the operator"
    denied = [
        f"{verb} {resource}{'/' + sub if sub else ''} (group {group!r}) x{n}"
        for (verb, group, resource, sub), n in sorted(calls.items())
        if not rbac.allows(verb, resource, api_group=group, subresource=sub)
    ]
    assert not denied, "calls not covered by mothership.rbac.RULES:\n" + "\n".join(denied)
    # The verbs we expect to have exercised, so this audit cannot pass vacuously.
    seen = {(verb, resource) for (verb, _g, resource, _s) in calls}
    for expected in [("watch", "apps"), ("patch", "deployments"), ("patch", "apps"),
                     ("delete", "ingresses"), ("create", "events"), ("patch", "namespaces")]:
        assert expected in seen, expected


async def _eq(value: Awaitable[Any], expected: Any) -> bool:
    return (await value) == expected
