"""``mothership app`` as a new user tries it, on the real control plane with the kubelet stand-in.

One Tenant (created with ``mothership tenant create``) and one stand-in kubelet
serve the module; the tests run in file order, as a session at a shell would:
deploy, list, change, follow logs through a rollout, export, break, delete.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mothership.kube import Kube
from tests.cli.paas import CRASHING, MISSING, eventually, kube_call, kubelet, mothership, user_kubeconfig
from tests.operator.harness import Cluster
from tests.realcluster import RUN

TENANT = f"paas-{RUN}"


@pytest.fixture(scope="module")
def tenant(cluster: Cluster) -> Iterator[str]:
    """A Tenant made from the CLI (2 CPUs of quota: the quota test fills it), with a kubelet for its pods."""
    result = mothership(cluster.kubeconfig, "tenant", "create", TENANT, "--owner", "user:alice@example.com",
                        "--cpu", "2", "--memory", "4Gi", "--wait")
    assert result.exit_code == 0, result.output + result.stderr
    assert f"namespace {TENANT}" in result.stdout
    with kubelet(cluster.kubeconfig, TENANT, crashing_images={CRASHING}, unpullable_images={MISSING}):
        yield TENANT
    kube_call(cluster.kubeconfig, lambda kube: kube.delete("Tenant", TENANT))


def app(kubeconfig: Path, name: str, namespace: str = TENANT) -> dict[str, Any]:
    async def get(kube: Kube) -> Any:
        return await kube.get("App", name, namespace)

    return kube_call(kubeconfig, get)  # type: ignore[no-any-return]


def test_deploy_waits_for_every_replica_and_ends_with_the_url(cluster: Cluster, tenant: str) -> None:
    result = mothership(cluster.kubeconfig, "app", "deploy", "web", "--image", "ghcr.io/acme/shop:1.0",
                        "--replicas", "2", "--env", "GREETING=hi", "-n", tenant, "--wait", "--timeout", "60s")
    assert result.exit_code == 0, result.output + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"app/web created in namespace {tenant}"
    assert sum(line.strip().endswith("Ready") for line in lines) == 2, result.stdout  # one per replica
    assert lines[-1] == f"app/web is Ready (2/2): http://web.{tenant}.svc.cluster.local"
    owners = {e["manager"] for e in app(cluster.kubeconfig, "web")["metadata"]["managedFields"]}
    assert "mothership-cli" in owners


def test_list_reads_well_at_80_columns_and_as_json(cluster: Cluster, tenant: str) -> None:
    table = mothership(cluster.kubeconfig, "app", "list", "-n", tenant)
    assert table.exit_code == 0, table.stderr
    header, row = table.stdout.splitlines()
    assert header.split() == ["NAME", "IMAGE", "READY", "PHASE", "URL", "AGE"]
    assert row.split()[:4] == ["web", "ghcr.io/acme/shop:1.0", "2/2", "Ready"]
    assert max(len(line) for line in table.stdout.splitlines()) <= 80
    records = json.loads(mothership(cluster.kubeconfig, "app", "list", "-n", tenant, "-o", "json").stdout)
    assert [(r["name"], r["ready"], r["phase"], r["url"]) for r in records] == [
        ("web", "2/2", "Ready", f"http://web.{tenant}.svc.cluster.local")]
    everywhere = mothership(cluster.kubeconfig, "app", "list", "-A", "-o", "yaml")
    assert {"name": "web", "namespace": tenant}.items() <= next(
        r for r in yaml.safe_load(everywhere.stdout) if r["namespace"] == tenant).items()


def test_scale_env_and_a_second_deploy_change_only_what_they_own(cluster: Cluster, tenant: str) -> None:
    assert mothership(cluster.kubeconfig, "app", "scale", "web", "3", "-n", tenant).exit_code == 0
    for change in (["set", "web", "MODE=fast"], ["unset", "web", "GREETING"]):
        assert mothership(cluster.kubeconfig, "app", "env", *change, "-n", tenant).exit_code == 0
    spec = app(cluster.kubeconfig, "web")["spec"]
    assert (spec["replicas"], spec["env"]) == (3, [{"name": "MODE", "value": "fast"}])
    result = mothership(cluster.kubeconfig, "app", "scale", "web", "--autoscale", "2:4", "-n", tenant)
    assert result.exit_code == 0, result.stderr
    spec = app(cluster.kubeconfig, "web")["spec"]
    assert "replicas" not in spec and spec["autoscale"]["min"] == 2 and spec["autoscale"]["max"] == 4
    # Deploying again without --env keeps what `env set` did: the deploy never owned MODE.
    again = mothership(cluster.kubeconfig, "app", "deploy", "web", "--image", "ghcr.io/acme/shop:1.0",
                       "--replicas", "2", "-n", tenant, "--no-wait")
    assert again.exit_code == 0, again.output
    spec = app(cluster.kubeconfig, "web")["spec"]
    assert (spec["replicas"], spec.get("autoscale")) == (2, None)
    assert spec["env"] == [{"name": "MODE", "value": "fast"}]


def test_logs_interleave_every_pod_and_follow_a_rollout(cluster: Cluster, tenant: str) -> None:
    eventually(lambda: app(cluster.kubeconfig, "web").get("status", {}).get("phase") == "Ready"
               and app(cluster.kubeconfig, "web")["status"]["observedGeneration"]
               == app(cluster.kubeconfig, "web")["metadata"]["generation"], 60, "web Ready again")
    tail = mothership(cluster.kubeconfig, "app", "logs", "web", "--tail", "1", "-n", tenant)
    assert tail.exit_code == 0, tail.stderr
    prefixes = [line.split(" | ")[0] for line in tail.stdout.splitlines()]
    assert len(prefixes) == 2 and len(set(prefixes)) == 2, tail.stdout  # one line from each replica
    assert all(not p.startswith("web-") for p in prefixes)  # short pod names
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    command = [sys.executable, "-m", "mothership", "app", "logs", "web", "-f", "-n", tenant]
    follower = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(follower.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        eventually(lambda: len({line.split(" | ")[0] for line in seen if " | " in line}) >= 2, 30,
                   "lines from both replicas")
        rollout = mothership(cluster.kubeconfig, "app", "deploy", "web", "--image", "ghcr.io/acme/shop:2.0",
                             "--replicas", "2", "-n", tenant, "--wait", "--timeout", "60s")
        assert rollout.exit_code == 0, rollout.output + rollout.stderr
        assert "rolling update to ghcr.io/acme/shop:2.0" in rollout.stdout
        eventually(lambda: sum("(image ghcr.io/acme/shop:2.0)" in line for line in seen) >= 2, 30,
                   "the new pods' first lines")
        eventually(lambda: sum(line.rstrip().endswith("- pod gone") for line in seen) >= 2, 30,
                   "the old pods dropped")
    finally:
        follower.terminate()
        follower.wait(10)
    assert follower.returncode is not None


def test_status_export_open_and_restart(cluster: Cluster, tenant: str) -> None:
    status = mothership(cluster.kubeconfig, "app", "status", "web", "-n", tenant)
    assert status.exit_code == 0, status.stderr
    out = status.stdout
    assert f"URL: http://web.{tenant}.svc.cluster.local" in out
    assert "Conditions" in out and "Ready" in out and f"podrunner-{tenant}" in out and "Events" in out
    exported = yaml.safe_load(mothership(cluster.kubeconfig, "app", "export", "web", "-n", tenant).stdout)
    assert exported == {"apiVersion": "mothership.dev/v1alpha1", "kind": "App",
                        "metadata": {"name": "web", "namespace": tenant},
                        "spec": {"image": "ghcr.io/acme/shop:2.0", "replicas": 2,
                                 "env": [{"name": "MODE", "value": "fast"}]}}, yaml.safe_dump(exported)
    opened = mothership(cluster.kubeconfig, "app", "open", "web", "-n", tenant)
    assert opened.stdout.strip() == f"http://web.{tenant}.svc.cluster.local"
    assert mothership(cluster.kubeconfig, "app", "restart", "web", "-n", tenant).exit_code == 0

    async def template(kube: Kube) -> Any:
        return (await kube.get("Deployment", "web", tenant))["spec"]["template"]["metadata"]

    assert "kubectl.kubernetes.io/restartedAt" in kube_call(cluster.kubeconfig, template)["annotations"]


def test_an_image_that_cannot_be_pulled_is_named(cluster: Cluster, tenant: str) -> None:
    result = mothership(cluster.kubeconfig, "app", "deploy", "broken", "--image", MISSING, "-n", tenant,
                        "--wait", "--timeout", "60s")
    assert result.exit_code == 1, result.output + result.stderr
    assert f'ImagePullBackOff: image "{MISSING}" not found' in result.stdout
    assert mothership(cluster.kubeconfig, "app", "delete", "broken", "--yes", "-n", tenant).exit_code == 0


def test_a_crashing_container_is_explained_with_its_last_log_lines(cluster: Cluster, tenant: str) -> None:
    result = mothership(cluster.kubeconfig, "app", "deploy", "crashy", "--image", CRASHING, "-n", tenant,
                        "--wait", "--timeout", "60s")
    assert result.exit_code == 1, result.output + result.stderr
    assert "CrashLoopBackOff: pod crashy-" in result.stdout and "exits with code 1" in result.stdout
    assert "  fatal: DATABASE_URL is not set; exiting with code 1" in result.stdout.splitlines()
    assert mothership(cluster.kubeconfig, "app", "delete", "crashy", "--yes", "-n", tenant).exit_code == 0


def test_an_app_beyond_the_quota_is_explained(cluster: Cluster, tenant: str) -> None:
    result = mothership(cluster.kubeconfig, "app", "deploy", "big", "--image", "ghcr.io/acme/shop:1.0",
                        "--replicas", "3", "--cpu", "900m", "-n", tenant, "--wait", "--timeout", "60s")
    async def quota(kube: Kube) -> Any:  # what to look at when this fails
        return [q.get("status") for q in await kube.list("ResourceQuota", tenant)]

    assert result.exit_code == 1, result.output + repr(kube_call(cluster.kubeconfig, quota))
    assert "quota exceeded:" in result.stdout and "exceeded quota" in result.stdout
    assert mothership(cluster.kubeconfig, "app", "delete", "big", "--yes", "-n", tenant).exit_code == 0


def test_a_403_names_the_verb_and_the_resource(cluster: Cluster, tenant: str) -> None:
    if cluster.controlplane is None:
        pytest.skip("needs a user with known rights: the built control plane's operator identity")
    # The operator's identity may patch Apps but never delete them.
    result = mothership(cluster.controlplane.kubeconfig_for("operator"), "app", "delete", "web", "--yes",
                        "-n", tenant)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f'error: forbidden: you may not delete apps.mothership.dev in namespace "{tenant}"; ask your '
        "cluster admin or the Tenant's owner for that permission")


BAD = [
    (["deploy", "web", "--image", "ghcr.io/Acme/Shop:1"], "--image"),
    (["deploy", "web", "--image", "shop:1", "--port", "70000"], "--port"),
    (["deploy", "web", "--image", "shop:1", "--env", "DEBUG"], "--env"),
    (["deploy", "Web_1", "--image", "shop:1"], "NAME"),
    (["deploy", "web", "--image", "shop:1", "--replicas", "2", "--autoscale", "1:3"],
     "--replicas/--autoscale"),
    (["deploy", "web", "--image", "shop:1", "--autoscale", "3"], "--autoscale"),
    (["deploy", "web", "--image", "shop:1", "-n", "no-such-namespace"], "-n/--namespace"),
    (["deploy", "web", "--image", "shop:1", "--context", "no-such-context"], "--context"),
    (["list", "-o", "table2"], "-o/--output"),
]


@pytest.mark.parametrize(("args", "flag"), BAD, ids=[b[1] + "-" + str(i) for i, b in enumerate(BAD)])
def test_bad_input_is_one_line_naming_the_flag_and_nothing_is_applied(
        cluster: Cluster, tenant: str, args: list[str], flag: str) -> None:
    before = app(cluster.kubeconfig, "web")["metadata"]["resourceVersion"]
    namespace = [] if "-n" in args else ["-n", tenant]
    result = mothership(cluster.kubeconfig, "app", *args, *namespace)
    assert result.exit_code == 2, result.output
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"error: {flag}: "), result.stderr
    assert app(cluster.kubeconfig, "web")["metadata"]["resourceVersion"] == before


def test_no_cluster_reachable_is_bad_input(tmp_path: Path) -> None:
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "gone",
              "clusters": [{"name": "gone", "cluster": {"server": "http://127.0.0.1:9"}}],
              "users": [{"name": "u", "user": {}}],
              "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "u"}}]}
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    result = mothership(path, "app", "list")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --kubeconfig: no cluster reachable at http://127.0.0.1:9")


def test_delete_removes_the_app(cluster: Cluster, tenant: str) -> None:
    result = mothership(cluster.kubeconfig, "app", "delete", "web", "--yes", "-n", tenant)
    assert (result.exit_code, result.stdout.strip()) == (0, "app/web deleted")
    assert app(cluster.kubeconfig, "web") is None
    listed = mothership(cluster.kubeconfig, "app", "list", "-n", tenant)
    assert listed.stdout.strip() == f"No Apps found in namespace {tenant}."


def test_a_tenant_owner_uses_the_cli_through_the_aggregated_edit_role(
        cluster: Cluster, tenant: str, tmp_path: Path) -> None:
    """alice owns the Tenant (bound to ``edit``); the chart's ``-edit`` role aggregates Apps into it."""
    if cluster.controlplane is None:
        pytest.skip("mints a user certificate: needs the built control plane's CA")
    from mothership import rbac
    from tests.operator.harness import CLUSTER_ROLE

    async def install_roles(kube: Kube) -> None:  # what helm/mothership/templates/userroles.yaml renders
        for suffix, rules, aggregate in (("edit", rbac.TENANT_EDIT_RULES, ["edit", "admin"]),
                                         ("view", rbac.TENANT_VIEW_RULES, ["view"])):
            name = f"mothership-{suffix}"
            labels = {f"rbac.authorization.k8s.io/aggregate-to-{a}": "true" for a in aggregate}
            await kube.request("patch", CLUSTER_ROLE, name=name, content_type="application/apply-patch+yaml",
                               params={"fieldManager": "tests", "force": "true"}, body={
                                   "apiVersion": CLUSTER_ROLE.api_version, "kind": "ClusterRole",
                                   "metadata": {"name": name, "labels": labels}, "rules": rules})

    kube_call(cluster.kubeconfig, install_roles)
    alice = user_kubeconfig(cluster.controlplane, "alice@example.com", tmp_path)
    eventually(lambda: mothership(alice, "app", "list", "-n", tenant).exit_code == 0, 30,
               "the aggregation controller adding Apps to edit")
    deployed = mothership(alice, "app", "deploy", "alice-app", "--image", "ghcr.io/acme/shop:1.0",
                          "-n", tenant, "--wait", "--timeout", "60s")
    assert deployed.exit_code == 0, deployed.output + deployed.stderr
    assert mothership(alice, "app", "logs", "alice-app", "--tail", "1", "-n", tenant).stdout.strip()
    assert mothership(alice, "app", "restart", "alice-app", "-n", tenant).exit_code == 0
    assert mothership(alice, "app", "delete", "alice-app", "--yes", "-n", tenant).exit_code == 0
    refused = mothership(alice, "tenant", "create", "alices-own")
    assert refused.exit_code == 2
    assert refused.stderr.startswith("error: forbidden: you may not get tenants.mothership.dev "
                                     "(cluster-wide)")
