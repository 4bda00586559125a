"""Apps end to end: children, status that follows the Deployment, drift repair, rollout, deletion.

The test plays the Deployment controller (and, once, the kubelet) by patching
status: the emulator has no workload controllers, exactly like a control plane
with no nodes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mothership.kube import KINDS, Kube
from tests.operator.harness import app, deployment_status

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


async def test_phase_follows_the_deployment_from_pending_to_ready_and_degraded(
        api: Kube, namespace: str, until: Until) -> None:
    await create(api, app("shop", namespace, replicas=2))
    deployment = await until(lambda: api.get("Deployment", "shop", namespace), timeout=5)
    generation = deployment["metadata"]["generation"]

    async def phase() -> str | None:
        return (await status_of(api, "shop", namespace)).get("phase")

    async def play(**status: Any) -> None:
        await api.patch_status("Deployment", "shop", namespace, deployment_status(generation, **status))

    await until(lambda: _eq(phase(), "Pending"), timeout=5, what="Pending")

    await play(replicas=2, updated=1, ready=0, available=0)
    await until(lambda: _eq(phase(), "Progressing"), timeout=5, what="Progressing")

    await play(replicas=2, updated=2, ready=2, available=2, available_cond="True",
               progressing=("True", "NewReplicaSetAvailable"))
    await until(lambda: _eq(phase(), "Ready"), timeout=5, what="Ready")
    st = await status_of(api, "shop", namespace)
    assert (st["ready"], st["readyReplicas"], st["replicas"]) == ("2/2", 2, 2)
    assert condition(st, "Ready")["status"] == "True"
    assert condition(st, "Available")["status"] == "True"

    # A replica dies after the rollout finished: Degraded, with the reason in the Ready condition.
    await play(replicas=2, updated=2, ready=1, available=1, available_cond="True",
               progressing=("True", "NewReplicaSetAvailable"))
    await until(lambda: _eq(phase(), "Degraded"), timeout=5, what="Degraded")
    assert condition(await status_of(api, "shop", namespace), "Ready")["reason"] == "ReplicasNotReady"

    # The rollout deadline passes: Failed.
    await play(replicas=2, updated=1, ready=1, available=1, available_cond="False",
               progressing=("False", "ProgressDeadlineExceeded"))
    await until(lambda: _eq(phase(), "Failed"), timeout=5, what="Failed")


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


async def test_deleting_the_app_deletes_its_children(api: Kube, namespace: str, until: Until) -> None:
    await create(api, app("shop", namespace, replicas=3, expose={"host": "shop.example.com"}))
    for kind in ("Deployment", "Service", "Ingress", "PodDisruptionBudget"):
        await until(lambda k=kind: api.get(k, "shop", namespace), timeout=5, what=kind)

    await api.delete("App", "shop", namespace)

    async def all_gone() -> bool:
        found = [await api.get(k, "shop", namespace)
                 for k in ("Deployment", "Service", "Ingress", "PodDisruptionBudget")]
        return not any(found)

    await until(all_gone, timeout=5, what="children garbage-collected")
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
                                                           until: Until) -> None:
    await create(api, app("shop", namespace))
    await until(lambda: api.get("Deployment", "shop", namespace), timeout=5)

    # Play the kubelet: the pod's container cannot start because the image runs as root.
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "shop-abc12", "namespace": namespace, "labels": LABELS},
        "spec": {"containers": [{"name": "app", "image": "ghcr.io/acme/shop:1.0"}]},
    }
    await api.request("create", KINDS["Pod"], namespace=namespace, body=pod)
    message = "container has runAsNonRoot and image will run as root (pod: \"shop-abc12\", container: app)"
    await api.patch_status("Pod", "shop-abc12", namespace, {
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

    # The pod goes away (fixed image rolled out): the problem clears.
    await api.delete("Pod", "shop-abc12", namespace)
    await until(lambda: _neq(reason(), "ImageRunsAsRoot"), timeout=5, what="the problem cleared")


async def test_a_spec_the_model_refuses_is_failed_invalid_spec_and_nothing_is_built(
        api: Kube, namespace: str, until: Until) -> None:
    # Duplicate env names: the model refuses them; this emulator does not enforce list-map keys.
    await create(api, app("shop", namespace, env=[{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]))

    async def invalid() -> dict[str, Any] | None:
        st = await status_of(api, "shop", namespace)
        return st if condition(st, "Ready").get("reason") == "InvalidSpec" else None

    st = await until(invalid, timeout=5, what="InvalidSpec")
    assert st["phase"] == "Failed"
    assert "env" in condition(st, "Ready")["message"]
    await until(lambda: _events(api, namespace, "InvalidSpec"), timeout=5, what="an Event")
    assert await api.get("Deployment", "shop", namespace) is None


# --- helpers -----------------------------------------------------------------------------


async def _eq(value: Awaitable[Any], expected: Any) -> bool:
    return (await value) == expected


async def _neq(value: Awaitable[Any], unexpected: Any) -> bool:
    return (await value) != unexpected


async def _observed(api: Kube, namespace: str, generation: int) -> dict[str, Any] | None:
    st = await status_of(api, "shop", namespace)
    return st if st.get("observedGeneration") == generation else None


async def _events(api: Kube, namespace: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in await api.list("Event", namespace) if e.get("reason") == reason]
