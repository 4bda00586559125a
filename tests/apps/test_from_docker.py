"""docs/from-docker.md, proved on the real control plane: each Docker idea and what stands for it.

The control plane has no container runtime, no kube-proxy, no DNS and no CNI (the
kubelet stand-in reports pods without running them), so what is proved is the
wiring the API server and controllers do: the objects, their selectors, the
EndpointSlices that DNS and kube-proxy serve from, and admission. The doc says
which claim rests on which proof.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mothership.kube import KINDS, ApiError, Kind, Kube
from tests.cli.paas import eventually, kube_call, kubelet, mothership
from tests.operator.harness import Cluster
from tests.realcluster import RUN

TENANT = f"docker-{RUN}"
IMAGE = "nginxinc/nginx:1.27"
ENDPOINT_SLICE = Kind("discovery.k8s.io/v1", "EndpointSlice", "endpointslices")


@pytest.fixture(scope="module")
def tenant(cluster: Cluster) -> Iterator[str]:
    """One Tenant (strict isolation, Pod Security restricted) with the kubelet stand-in for its pods."""
    created = mothership(cluster.kubeconfig, "tenant", "create", TENANT, "--wait")
    assert created.exit_code == 0, created.output + created.stderr
    with kubelet(cluster.kubeconfig, TENANT):
        for name, port in (("a", "80"), ("b", "8080")):
            deployed = mothership(cluster.kubeconfig, "app", "deploy", name, "--image", IMAGE, "--port", port,
                                  "--replicas", "2", "-n", TENANT, "--wait", "--timeout", "60s")
            assert deployed.exit_code == 0, deployed.output + deployed.stderr
        yield TENANT
    kube_call(cluster.kubeconfig, lambda kube: kube.delete("Tenant", TENANT))


def get(cluster: Cluster, kind: str, name: str, namespace: str = TENANT) -> Any:
    async def read(kube: Kube) -> Any:
        return await kube.get(kind, name, namespace)

    return kube_call(cluster.kubeconfig, read)


def test_an_image_and_its_containers_are_an_app_and_its_pods(cluster: Cluster, tenant: str) -> None:
    """``docker run --name a nginx`` -> App ``a``; ``docker ps`` -> its pods, on the stand-in's node."""

    async def pods(kube: Kube) -> Any:
        return await kube.list("Pod", tenant, label_selector={"app.kubernetes.io/instance": "a"})

    found = kube_call(cluster.kubeconfig, pods)
    assert len(found) == 2  # --replicas 2: Swarm's `--replicas`, kept by a Deployment
    assert {p["spec"]["containers"][0]["image"] for p in found} == {IMAGE}
    assert {p["metadata"]["ownerReferences"][0]["kind"] for p in found} == {"ReplicaSet"}


def test_a_published_port_is_the_app_port_behind_service_port_80_and_an_ingress(
        cluster: Cluster, tenant: str) -> None:
    """``-p 8080:80`` -> ``--port 80`` (the container's), Service port 80, and an Ingress for the outside."""
    service = get(cluster, "Service", "a")
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(80, 80)]
    assert get(cluster, "Deployment", "b")["spec"]["template"]["spec"]["containers"][0]["ports"][0][
        "containerPort"] == 8080
    b_ports = get(cluster, "Service", "b")["spec"]["ports"]
    assert [(p["port"], p["targetPort"]) for p in b_ports] == [(80, 8080)]
    exposed = mothership(cluster.kubeconfig, "app", "deploy", "a", "--image", IMAGE, "--port", "80",
                         "--replicas", "2", "--host", "a.example.com", "-n", tenant, "--no-wait")
    assert exposed.exit_code == 0, exposed.stderr
    ingress = eventually(lambda: get(cluster, "Ingress", "a"), 30, "the Ingress of app a")
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == "a.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"] == {"name": "a", "port": {"name": "http"}}


def test_a_named_network_is_service_names_b_reaches_a_at_http_a(cluster: Cluster, tenant: str) -> None:
    """``docker network create shop`` + ``--network shop`` -> Services: ``http://a`` from b's pods.

    DNS resolves ``a`` (from ``b``'s namespace search path) to Service ``a``, and kube-proxy sends
    its port 80 to the addresses in its EndpointSlices: here we prove those slices list exactly
    a's ready pods on port 80, and b's URL is its own Service name.
    """

    async def serving(kube: Kube) -> Any:
        slices = await kube.list(ENDPOINT_SLICE, tenant, label_selector={"kubernetes.io/service-name": "a"})
        return {(address, port["port"]) for s in slices for e in s.get("endpoints") or []
                if (e.get("conditions") or {}).get("ready") for address in e["addresses"]
                for port in s.get("ports") or []}

    async def pod_ips(kube: Kube) -> Any:
        pods = await kube.list("Pod", tenant, label_selector={"app.kubernetes.io/instance": "a"})
        return {(p["status"]["podIP"], 80) for p in pods if p.get("status", {}).get("podIP")}

    expected = kube_call(cluster.kubeconfig, pod_ips)
    assert len(expected) == 2
    eventually(lambda: kube_call(cluster.kubeconfig, serving) == expected, 30,
               "Service a's EndpointSlices listing a's two pods on port 80")
    assert get(cluster, "App", "b")["status"]["url"] == f"http://b.{tenant}.svc.cluster.local"


def test_the_default_bridge_is_the_tenants_default_deny_network_policy(cluster: Cluster, tenant: str) -> None:
    """Docker's default bridge lets every container talk; a Tenant admits only its own namespace."""

    async def policies(kube: Kube) -> Any:
        return await kube.list(KINDS["NetworkPolicy"], tenant)

    [policy] = kube_call(cluster.kubeconfig, policies)
    spec = policy["spec"]
    assert spec["podSelector"] == {} and spec["policyTypes"] == ["Ingress"]
    peers = spec["ingress"][0]["from"]
    assert {"podSelector": {}} in peers  # the tenant's own pods
    assert all("namespaceSelector" in p and p["namespaceSelector"]["matchLabels"] for p in peers
               if "podSelector" not in p)  # other namespaces only when named


def test_host_networking_is_refused_by_pod_security_restricted(cluster: Cluster, tenant: str) -> None:
    """``docker run --network host`` -> a pod with hostNetwork, which admission refuses in a Tenant."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "host-net", "namespace": tenant},
           "spec": {"hostNetwork": True, "containers": [{"name": "c", "image": IMAGE}]}}

    async def create(kube: Kube) -> ApiError | None:
        try:
            await kube.create(pod)
        except ApiError as exc:
            return exc
        return None

    refused = kube_call(cluster.kubeconfig, create)
    assert refused is not None and refused.status == 403
    assert 'violates PodSecurity "restricted:latest"' in refused.message
    assert "hostNetwork=true" in refused.message


def test_a_remote_docker_host_is_a_kubeconfig_context(cluster: Cluster, tenant: str, tmp_path: Path) -> None:
    """``DOCKER_HOST=ssh://box`` / ``docker context use box`` -> ``--context box`` (or the current one)."""
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    good = config["contexts"][0]["name"]
    config["clusters"].append({"name": "elsewhere", "cluster": {"server": "http://127.0.0.1:9"}})
    config["contexts"].append({"name": "elsewhere", "context": {"cluster": "elsewhere",
                                                                "user": config["users"][0]["name"],
                                                                "namespace": tenant}})
    config["contexts"][0]["context"]["namespace"] = tenant  # the context's namespace is the default -n
    config["current-context"] = "elsewhere"
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    here = mothership(path, "app", "list", "--context", good, "-o", "json")
    assert here.exit_code == 0, here.stderr
    assert {r["name"] for r in yaml.safe_load(here.stdout)} == {"a", "b"}
    away = mothership(path, "app", "list")
    assert away.exit_code == 2 and "no cluster reachable at http://127.0.0.1:9" in away.stderr
