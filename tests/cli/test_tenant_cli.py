"""``mothership tenant``: create, list and read a Tenant from the CLI, on the real control plane."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from mothership.kube import Kube
from tests.cli.paas import kube_call, mothership
from tests.operator.harness import Cluster
from tests.realcluster import RUN

TENANT = f"team-{RUN}"


@pytest.fixture(scope="module")
def tenant(cluster: Cluster) -> Iterator[str]:
    result = mothership(cluster.kubeconfig, "tenant", "create", TENANT, "--owner", "user:alice@example.com",
                        "--owner", "group:shop-devs", "--cpu", "8", "--memory", "16Gi",
                        "--isolation", "strict", "--max-workers", "4", "--allowed-target", "*.example.com",
                        "--wait")
    assert result.exit_code == 0, result.output + result.stderr
    assert result.stdout.splitlines() == [
        f"tenant/{TENANT} created",
        f"tenant/{TENANT} is Ready: namespace {TENANT}; deploy with "
        f"`mothership app deploy NAME --image IMG -n {TENANT}`"]
    yield TENANT
    kube_call(cluster.kubeconfig, lambda kube: kube.delete("Tenant", TENANT))


def test_create_applies_only_the_flags_given(cluster: Cluster, tenant: str) -> None:
    async def get(kube: Kube) -> Any:
        return await kube.get("Tenant", tenant)

    spec = kube_call(cluster.kubeconfig, get)["spec"]
    assert spec["owners"] == [{"kind": "User", "name": "alice@example.com"},
                              {"kind": "Group", "name": "shop-devs"}]
    assert (spec["quota"]["cpu"], spec["quota"]["memory"]) == ("8", "16Gi")
    assert spec["loadTests"]["maxWorkers"] == 4 and spec["loadTests"]["allowedTargets"] == ["*.example.com"]
    again = mothership(cluster.kubeconfig, "tenant", "create", tenant, "--cpu", "4", "--no-wait")
    assert again.stdout.strip() == f"tenant/{tenant} configured"
    spec = kube_call(cluster.kubeconfig, get)["spec"]
    assert spec["quota"]["cpu"] == "4" and not spec.get("owners")  # the CLI's own fields, re-applied


def test_list_as_a_table_and_as_json(cluster: Cluster, tenant: str) -> None:
    table = mothership(cluster.kubeconfig, "tenant", "list")
    assert table.exit_code == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == ["NAME", "NAMESPACE", "OWNERS", "READY", "CPU", "MEMORY",
                                                    "AGE"]
    assert max(len(line) for line in table.stdout.splitlines()) <= 80
    rows = {r["name"]: r for r in json.loads(mothership(cluster.kubeconfig, "tenant", "list", "-o",
                                                        "json").stdout)}
    assert rows[tenant]["namespace"] == tenant and rows[tenant]["ready"] == "True"


def test_status_shows_guard_rails_quota_apps_and_load_tests(cluster: Cluster, tenant: str) -> None:
    deployed = mothership(cluster.kubeconfig, "app", "deploy", "api", "--image", "ghcr.io/acme/api:1.0",
                          "-n", tenant, "--no-wait")
    assert deployed.exit_code == 0, deployed.stderr
    result = mothership(cluster.kubeconfig, "tenant", "status", tenant)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert f"tenant/{tenant}: namespace {tenant}, Ready True" in out
    assert "restricted (enforced)" in out and "strict (default-deny from other namespaces)" in out
    assert "requests.cpu" in out and "api" in out and "ghcr.io/acme/api:1.0" in out
    assert "Running load tests: none" in out


@pytest.mark.parametrize(("args", "flag"), [
    (["create", "Team_A"], "NAME"),
    (["create", "ok-name", "--owner", "robot:x"], "--owner"),
    (["create", "ok-name", "--cpu", "lots"], "--cpu"),
    (["create", "ok-name", "--isolation", "medium"], "--isolation"),
    (["create", "ok-name", "--max-workers", "0"], "--max-workers"),
    (["list", "-o", "xml"], "-o/--output"),
    (["status", "no-such-tenant"], "NAME"),
])
def test_bad_input_is_one_line_naming_the_flag(cluster: Cluster, args: list[str], flag: str) -> None:
    result = mothership(cluster.kubeconfig, "tenant", *args)
    assert result.exit_code == 2, result.output
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"error: {flag}: "), result.stderr

    async def absent(kube: Kube) -> Any:
        return await kube.get("Tenant", "ok-name")

    assert kube_call(cluster.kubeconfig, absent) is None
