"""App and Tenant models: the defaults the docs promise, camelCase on the wire, lossless round trips.

The field docstrings say what happens when a field is left out; these tests
hold the models to them, and check that the API server's defaulting (from the
generated CRD) lands on the same values, so a field left out means the same
thing to ``kubectl apply`` and to the operator.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from mothership.api.app import App, AppSpec, AppStatus, Protocol, StrategyType
from mothership.api.common import Condition, ConditionStatus, Resource
from mothership.api.tenant import DeletionPolicy, IsolationMode, SubjectKind, Tenant, TenantSpec
from tests import crdjudge
from tests.apps import examples as app_examples
from tests.tenants import examples as tenant_examples

ROOT = Path(__file__).resolve().parents[2]


@cache
def crd(model: type[Resource]) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "crds" / f"{model.crd.plural}.mothership.dev.yaml").read_text())


def keys(value: Any) -> set[str]:
    """Every dict key at any depth (labels and selectors excluded: their keys are data)."""
    if isinstance(value, dict):
        out = set()
        for k, v in value.items():
            out.add(k)
            if k not in {"allowFrom", "metadata"}:
                out |= keys(v)
        return out
    if isinstance(value, list):
        return set().union(*(keys(v) for v in value)) if value else set()
    return set()


# --- Defaults ----------------------------------------------------------------------------------


def test_an_app_defaults_to_port_8080_one_replica_http_and_a_rolling_update() -> None:
    spec = AppSpec(image="ghcr.io/acme/shop:1")
    assert spec.port == 8080
    assert spec.replicas is None and spec.autoscale is None and spec.desired_replicas() == 1
    assert spec.protocol is Protocol.HTTP
    assert spec.strategy.type is StrategyType.ROLLING_UPDATE
    assert (spec.strategy.max_surge, spec.strategy.max_unavailable) == (None, None)
    assert spec.env == [] and spec.env_from == [] and spec.command == [] and spec.args == []
    assert spec.health_check is None and spec.expose is None
    assert spec.security_context.read_only_root_filesystem is False
    assert spec.security_context.run_as_user is None


def test_autoscale_defaults_to_a_minimum_of_one_at_80_percent_cpu() -> None:
    spec = AppSpec(image="x", autoscale={"max": 5})
    assert spec.autoscale is not None
    assert (spec.autoscale.min, spec.autoscale.max, spec.autoscale.target_cpu) == (1, 5, 80)
    assert spec.desired_replicas() == 1


def test_a_health_check_defaults_to_get_slash_every_10s_with_a_1s_timeout_and_3_failures() -> None:
    check = AppSpec(image="x", health_check={}).health_check
    assert check is not None
    assert (check.path, check.port, check.initial_delay) == ("/", None, "0s")
    assert (check.period, check.timeout, check.failure_threshold) == ("10s", "1s", 3)


def test_expose_defaults_to_tls_on_the_root_path() -> None:
    expose = AppSpec(image="x", expose={"host": "shop.example.com"}).expose
    assert expose is not None
    assert (expose.path, expose.tls) == ("/", True)
    assert (expose.tls_secret_name, expose.cluster_issuer, expose.ingress_class_name) == (None, None, None)


def test_a_tenant_defaults_to_retain_strict_isolation_and_the_documented_container_defaults() -> None:
    spec = TenantSpec()
    assert spec.namespace is None and spec.owners == []
    assert spec.deletion_policy is DeletionPolicy.RETAIN
    assert spec.isolation.mode is IsolationMode.STRICT
    assert spec.isolation.allow_from == [
        {"kubernetes.io/metadata.name": "ingress-nginx"},
        {"kubernetes.io/metadata.name": "monitoring"},
    ]
    assert spec.defaults.wire() == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": "1", "memory": "512Mi"},
    }
    assert spec.quota.wire() == {}
    limits = spec.load_tests
    assert (limits.max_workers, limits.max_virtual_users, limits.allowed_targets) == (10, 10000, [])


def test_an_owner_defaults_to_a_user() -> None:
    assert TenantSpec(owners=[{"name": "alice"}]).owners[0].kind is SubjectKind.USER


def test_app_status_starts_pending_with_nothing_ready() -> None:
    status = AppStatus()
    assert (status.phase.value, status.ready) == ("Pending", "0/0")
    assert (status.replicas, status.ready_replicas) == (0, 0)


@pytest.mark.parametrize(("model", "body"), [
    (App, app_examples.manifest(app_examples.MINIMAL)),
    (App, app_examples.manifest({**app_examples.MINIMAL, "autoscale": {"max": 3}, "healthCheck": {},
                                 "expose": {"host": "a.example.com"}})),
    (Tenant, tenant_examples.manifest(tenant_examples.MINIMAL)),
    (Tenant, tenant_examples.manifest({"owners": [{"name": "a"}], "quota": {"pods": 3}})),
], ids=["app-minimal", "app-nested", "tenant-minimal", "tenant-nested"])
def test_the_api_servers_defaults_from_the_crd_mean_the_same_as_the_models(
    model: type[Resource], body: dict[str, Any]
) -> None:
    defaulted = crdjudge.apply_defaults(crdjudge.schema_of(crd(model)), json.loads(json.dumps(body)))
    assert model.model_validate(defaulted) == model.model_validate(body)


# --- Wire names --------------------------------------------------------------------------------


def test_app_fields_are_camel_case_on_the_wire() -> None:
    wire = App.model_validate(app_examples.manifest(app_examples.FULL)).wire()
    spec_keys = keys(wire["spec"])
    assert {"envFrom", "healthCheck", "securityContext", "initialDelay", "failureThreshold", "clusterIssuer",
            "ingressClassName", "maxSurge", "maxUnavailable", "runAsUser", "runAsGroup", "fsGroup",
            "readOnlyRootFilesystem", "valueFrom", "secretKeyRef", "configMapKeyRef", "secretRef",
            "configMapRef"} <= spec_keys
    assert not any("_" in k for k in spec_keys)


def test_the_cpu_target_is_spelled_target_cpu_in_capitals() -> None:
    assert AppSpec(image="x", autoscale={"max": 2}).wire()["autoscale"]["targetCPU"] == 80
    autoscale = AppSpec.model_validate({"image": "x", "autoscale": {"max": 2, "targetCPU": 50}}).autoscale
    assert autoscale is not None and autoscale.target_cpu == 50


def test_tenant_fields_are_camel_case_on_the_wire() -> None:
    wire = Tenant.model_validate(tenant_examples.manifest(tenant_examples.FULL)).wire()
    spec_keys = keys(wire["spec"])
    expected = {"deletionPolicy", "loadTests", "maxWorkers", "maxVirtualUsers", "allowedTargets", "allowFrom"}
    assert expected <= spec_keys
    assert not any("_" in k for k in spec_keys)


def test_status_fields_are_camel_case_on_the_wire() -> None:
    condition = Condition(type="Ready", status=ConditionStatus.TRUE, last_transition_time="t",
                          observed_generation=1)
    wire = AppStatus(external_url="https://x", conditions=[condition]).wire()
    assert {"externalUrl", "readyReplicas", "conditions"} <= set(wire)
    assert set(wire["conditions"][0]) == {"type", "status", "reason", "message", "lastTransitionTime",
                                          "observedGeneration"}


# --- Round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "body"), [
    (App, app_examples.manifest(app_examples.FULL)),
    (App, app_examples.manifest(app_examples.MINIMAL)),
    (Tenant, tenant_examples.manifest(tenant_examples.FULL)),
    (Tenant, tenant_examples.manifest(tenant_examples.MINIMAL)),
], ids=["app-full", "app-minimal", "tenant-full", "tenant-minimal"])
def test_wire_round_trips(model: type[Resource], body: dict[str, Any]) -> None:
    once = model.model_validate(body)
    assert model.model_validate(once.wire()) == once
    assert model.model_validate(once.wire()).wire() == once.wire()


def test_a_fully_specified_app_comes_back_from_the_wire_as_written() -> None:
    body = app_examples.manifest(app_examples.FULL)
    assert App.model_validate(body).wire() == body


def test_the_strict_json_reading_used_for_bad_manifests_accepts_the_good_ones() -> None:
    for model, body in [
        (App, app_examples.manifest(app_examples.FULL)),
        (App, app_examples.manifest(app_examples.MINIMAL)),
        (Tenant, tenant_examples.manifest(tenant_examples.FULL)),
        (Tenant, tenant_examples.manifest(tenant_examples.MINIMAL)),
    ]:
        assert model.model_validate_json(json.dumps(body), strict=True) == model.model_validate(body)


def test_the_full_examples_pass_the_crd_too() -> None:
    assert crdjudge.validate(crd(App), app_examples.manifest(app_examples.FULL)) == []
    assert crdjudge.validate(crd(Tenant), tenant_examples.manifest(tenant_examples.FULL)) == []
