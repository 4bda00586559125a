"""Apps end to end: children, status that follows the Deployment, drift repair, rollout, deletion.

The real Deployment and ReplicaSet controllers run; no kubelet does, so where a
test needs pods to run (or fail) it plays the kubelet: it writes the status of
the pods the ReplicaSet created, as a kubelet would, and the real controllers
take it from there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from mothership.kube import KINDS, Kube, managers_of
from tests.operator.harness import app, pod_status

Until = Callable[..., Awaitable[Any]]
LABELS = {
    "app.kubernetes.io/instance": "shop",
    "app.kubernetes.io/managed-by": "mothership",
    "app.kubernetes.io/name": "shop",
}


async def create(api: Kube, manifest: dict[str, Any]) -> dict[str, Any]:
    return await api.request("create", KINDS[manifest["kind"]],
                             namespace=manifest["metadata"].get("namespace"), body=manifest)


async def status_of(api: Kube, name: str, namespace: str) -> dict[str, Any]:
    obj = await api.get("App", name, namespace)
    return (obj or {}).get("status") or {}


def condition(st: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in st.get("conditions") or [] if c["type"] == type_), {})


async def test_an_app_gets_a_deployment_and_a_service_owned_by_it(api: Kube, namespace: str,
                                                                  until: Until) -> None:
    created = await create(api, app("shop", namespace, port=8080, replicas=1))
    uid = created["metadata"]["uid"]

    deployment = await until(lambda: api.get("Deployment", "shop", namespace), timeout=5,
                             what="the Deployment")
    service = await until(lambda: api.get("Service", "shop", namespace), timeout=5, what="the Service")

    for child in (deployment, service):
        assert child["metadata"]["labels"] == LABELS
        [ref] = child["metadata"]["ownerReferences"]
        assert ref == {"apiVersion": "mothership.dev/v1alpha1", "kind": "App", "name": "shop",
                       "uid": uid, "controller": True, "blockOwnerDeletion": True}
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "ghcr.io/acme/shop:1.0"
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert service["spec"]["ports"][0]["port"] == 80
    assert service["spec"]["ports"][0]["targetPort"] == 8080
    # Only what was asked for: one replica, no expose, no autoscale.
    for kind in ("Ingress", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        assert await api.get(kind, "shop", namespace) is None

    st = await until(lambda: status_of(api, "shop", namespace), timeout=5, what="a status")
    # Pending until a Deployment controller reports; a real one may already have (Progressing).
    assert st["phase"] in ("Pending", "Progressing"), st
    assert st["url"] == f"http://shop.{namespace}.svc.cluster.local"
    assert st["observedGeneration"] == 1


async def test_phase_follows_the_pods_from_progressing_to_ready_and_degraded(
        api: Kube, namespace: str, until: Until, no_nodes: None) -> None:
    await create(api, app("shop", namespace, replicas=2))

    async def phase() -> str | None:
        return (await status_of(api, "shop", namespace)).get("phase")

    # The ReplicaSet's pods exist, and nothing runs them yet.
    await until(lambda: _eq(phase(), "Progressing"), timeout=10, what="Progressing")
    pods = await until(lambda: _pods(api, namespace, 2), timeout=10, what="two pods")

    for pod in pods:  # the kubelet reports both running and ready
        await api.patch_status("Pod", pod["metadata"]["name"], namespace, pod_status(ready=True))
    await until(lambda: _eq(phase(), "Ready"), timeout=10, what="Ready")
    st = await status_of(api, "shop", namespace)
    assert (st["ready"], st["readyReplicas"], st["replicas"]) == ("2/2", 2, 2)
    assert condition(st, "Ready")["status"] == "True"
    assert condition(st, "Available")["status"] == "True"

    # A replica's readiness probe fails after the rollout finished: Degraded, the reason in Ready.
    await api.patch_status("Pod", pods[0]["metadata"]["name"], namespace, pod_status(ready=False))
    await until(lambda: _eq(phase(), "Degraded"), timeout=10, what="Degraded")
    assert condition(await status_of(api, "shop", namespace), "Ready")["reason"] == "ReplicasNotReady"


async def test_a_deleted_deployment_is_back_within_five_seconds(api: Kube, namespace: str,
                                                                until: Until) -> None:
    await create(api, app("shop", namespace))
    first = await until(lambda: api.get("Deployment", "shop", namespace), timeout=5)

    await api.delete("Deployment", "shop", namespace)

    async def replaced() -> dict[str, Any] | None:
        d = await api.get("Deployment", "shop", namespace)
        return d if d and d["metadata"]["uid"] != first["metadata"]["uid"] else None

    again = await until(replaced, timeout=5, what="a new Deployment")
    assert again["metadata"]["ownerReferences"][0]["name"] == "shop"


async def test_a_hand_edit_of_replicas_and_image_is_put_back(api: Kube, namespace: str,
                                                             until: Until) -> None:
    await create(api, app("shop", namespace, replicas=2))
    await until(lambda: api.get("Deployment", "shop", namespace), timeout=5)

    # Another field manager edits what we own (kubectl edit / scale).
    await api.patch("Deployment", "shop", namespace, {"spec": {"replicas": 7}})

    async def replicas() -> int:
        return int(((await api.get("Deployment", "shop", namespace)) or {})["spec"]["replicas"])

    await until(lambda: _eq(replicas(), 2), timeout=5, what="replicas back to 2")

    # A deleted Service comes back too.
    await api.delete("Service", "shop", namespace)
    await until(lambda: api.get("Service", "shop", namespace), timeout=5, what="the Service back")


async def test_an_image_change_rolls_out_a_new_template(api: Kube, namespace: str, until: Until) -> None:
    await create(api, app("shop", namespace))
    await until(lambda: api.get("Deployment", "shop", namespace), timeout=5)

    await api.patch("App", "shop", namespace, {"spec": {"image": "ghcr.io/acme/shop:2.0"}})

    async def image() -> str:
        d = await api.get("Deployment", "shop", namespace) or {}
        return str(d["spec"]["template"]["spec"]["containers"][0]["image"])

    await until(lambda: _eq(image(), "ghcr.io/acme/shop:2.0"), timeout=5, what="the new image")
    st = await until(lambda: _observed(api, namespace, 2), timeout=5, what="observedGeneration 2")
    assert st["observedGeneration"] == 2


async def test_removing_expose_and_autoscale_removes_the_ingress_and_the_autoscaler(
        api: Kube, namespace: str, until: Until) -> None:
    await create(api, app("shop", namespace, autoscale={"min": 2, "max": 5},
                          expose={"host": "shop.example.com", "clusterIssuer": "letsencrypt"},
                          protocol="websocket"))
    ingress = await until(lambda: api.get("Ingress", "shop", namespace), timeout=5, what="the Ingress")
    hpa = await until(lambda: api.get("HorizontalPodAutoscaler", "shop", namespace), timeout=5)
    await until(lambda: api.get("PodDisruptionBudget", "shop", namespace), timeout=5, what="the PDB")
    assert ingress["spec"]["rules"][0]["host"] == "shop.example.com"
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    async def external_url() -> str | None:
        return (await status_of(api, "shop", namespace)).get("externalUrl")

    assert await until(external_url, timeout=5, what="externalUrl") == "https://shop.example.com"

    await api.patch("App", "shop", namespace, {"spec": {"expose": None, "autoscale": None}})

    async def gone(kind: str) -> bool:
        return await api.get(kind, "shop", namespace) is None

    await until(lambda: gone("Ingress"), timeout=5, what="the Ingress deleted")
    await until(lambda: gone("HorizontalPodAutoscaler"), timeout=5, what="the HPA deleted")
    await until(lambda: gone("PodDisruptionBudget"), timeout=5, what="the PDB deleted (1 replica)")
    await until(lambda: _observed(api, namespace, 2), timeout=5)
    assert "externalUrl" not in await status_of(api, "shop", namespace)


async def test_switching_a_running_app_to_autoscale_keeps_its_replicas_while_the_autoscaler_takes_over(
        api: Kube, namespace: str, until: Until) -> None:
    await create(api, app("shop", namespace, replicas=3))
    await until(lambda: _eq(_replicas(api, namespace), 3), timeout=5, what="3 replicas")

    await api.patch("App", "shop", namespace,
                    {"spec": {"replicas": None, "autoscale": {"min": 3, "max": 6}}})
    seen: list[int | None] = []

    async def handed_over() -> bool:
        d = await api.get("Deployment", "shop", namespace) or {}
        seen.append((d.get("spec") or {}).get("replicas"))
        return bool(d) and "mothership" not in managers_of(d, "spec", "replicas")

    # Sample the count from the switch until our apply let go of it, then a few seconds more.
    await until(handed_over, timeout=5, interval=0.05, what="spec.replicas no longer ours")
    loop = asyncio.get_running_loop()
    more = loop.time() + 3
    await until(lambda: _sampled(handed_over(), loop.time() >= more), timeout=5, interval=0.05)
    assert seen and all(n is not None and n >= 3 for n in seen), seen
    assert await _replicas(api, namespace) == 3
    hpa = await until(lambda: api.get("HorizontalPodAutoscaler", "shop", namespace), timeout=5,
                      what="the HPA")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 6)

    # And back: a fixed count is ours again, and the autoscaler goes.
    await api.patch("App", "shop", namespace, {"spec": {"autoscale": None, "replicas": 2}})
    await until(lambda: _eq(_replicas(api, namespace), 2), timeout=10, what="2 replicas")
    await until(lambda: _eq(api.get("HorizontalPodAutoscaler", "shop", namespace), None), timeout=5,
                what="the HPA deleted")
    deployment = await api.get("Deployment", "shop", namespace) or {}
    assert "mothership" in managers_of(deployment, "spec", "replicas")
    assert await _replicas(api, namespace) == 2


async def test_deleting_the_app_deletes_its_children(api: Kube, namespace: str, until: Until) -> None:
    await create(api, app("shop", namespace, replicas=3, expose={"host": "shop.example.com"}))
    for kind in ("Deployment", "Service", "Ingress", "PodDisruptionBudget"):
        await until(lambda k=kind: api.get(k, "shop", namespace), timeout=5, what=kind)

    await api.delete("App", "shop", namespace)

    async def all_gone() -> bool:
        found = [await api.get(k, "shop", namespace)
                 for k in ("Deployment", "Service", "Ingress", "PodDisruptionBudget")]
        return not any(found)

    await until(all_gone, timeout=20, what="children garbage-collected (by the real GC)")
    # ...and drift repair does not resurrect them.
    assert await api.get("App", "shop", namespace) is None


async def test_a_missing_secret_degrades_the_app_with_an_event(api: Kube, namespace: str,
                                                               until: Until) -> None:
    await create(api, app("shop", namespace, envFrom=[{"secretRef": "db-credentials"}]))

    async def degraded() -> dict[str, Any] | None:
        st = await status_of(api, "shop", namespace)
        return st if st.get("phase") == "Degraded" else None

    st = await until(degraded, timeout=5, what="Degraded")
    ready = condition(st, "Ready")
    assert ready["reason"] == "SecretNotFound"
    assert "db-credentials" in ready["message"]
    events = await until(lambda: _events(api, namespace, "SecretNotFound"), timeout=5, what="an Event")
    assert events[0]["type"] == "Warning"
    assert events[0]["involvedObject"]["kind"] == "App"


async def test_an_image_that_runs_as_root_degrades_the_app(api: Kube, namespace: str,
                                                           until: Until, no_nodes: None) -> None:
    await create(api, app("shop", namespace))
    await until(lambda: api.get("Deployment", "shop", namespace), timeout=5)

    # Play the kubelet: the pod's container cannot start because the image runs as root.
    [pod] = await until(lambda: _pods(api, namespace, 1), timeout=10, what="the pod")
    name = pod["metadata"]["name"]
    message = f'container has runAsNonRoot and image will run as root (pod: "{name}", container: app)'
    await api.patch_status("Pod", name, namespace, {
        "phase": "Pending",
        "containerStatuses": [{"name": "app", "ready": False, "restartCount": 0, "image": "x",
                               "imageID": "", "state": {"waiting": {
                                   "reason": "CreateContainerConfigError", "message": message}}}],
    })

    async def reason() -> str | None:
        st = await status_of(api, "shop", namespace)
        return condition(st, "Ready").get("reason") if st.get("phase") == "Degraded" else None

    assert await until(reason, timeout=5, what="Degraded") == "ImageRunsAsRoot"
    await until(lambda: _events(api, namespace, "ImageRunsAsRoot"), timeout=5, what="an Event")

    # The pod goes away (the ReplicaSet makes a new one, not yet failing): the problem clears.
    await api.delete("Pod", name, namespace)
    await until(lambda: _neq(reason(), "ImageRunsAsRoot"), timeout=5, what="the problem cleared")


async def test_the_api_server_applies_the_crd_defaults(api: Kube, namespace: str) -> None:
    created = await create(api, app("shop", namespace))
    assert created["spec"]["port"] == 8080
    assert created["spec"]["protocol"] == "http"


# --- helpers -----------------------------------------------------------------------------


async def _eq(value: Awaitable[Any], expected: Any) -> bool:
    return (await value) == expected


async def _neq(value: Awaitable[Any], unexpected: Any) -> bool:
    return (await value) != unexpected


async def _sampled(sample: Awaitable[Any], done: bool) -> bool:
    await sample
    return done


async def _replicas(api: Kube, namespace: str) -> int | None:
    d = await api.get("Deployment", "shop", namespace)
    return None if d is None else (d.get("spec") or {}).get("replicas")


async def _observed(api: Kube, namespace: str, generation: int) -> dict[str, Any] | None:
    st = await status_of(api, "shop", namespace)
    return st if st.get("observedGeneration") == generation else None


async def _events(api: Kube, namespace: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in await api.list("Event", namespace) if e.get("reason") == reason]


async def _pods(api: Kube, namespace: str, count: int) -> list[dict[str, Any]] | None:
    """The App's pods, once the ReplicaSet has made ``count`` of them (oldest first)."""
    pods = [p for p in await api.list("Pod", namespace, label_selector="app.kubernetes.io/instance=shop")
            if not p["metadata"].get("deletionTimestamp")]
    pods.sort(key=lambda p: p["metadata"]["creationTimestamp"])
    return pods if len(pods) == count else None
