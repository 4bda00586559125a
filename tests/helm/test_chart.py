"""The chart, rendered by the real Helm engine for every toggle, judged object by object.

Built-in kinds are validated with ``kubernetes-validate`` against the Kubernetes
1.30 OpenAPI schemas in strict mode (unknown fields are errors). Prometheus
Operator kinds (ServiceMonitor, PodMonitor, PrometheusRule) are validated
against strict schemas extracted from that project's CRDs, v0.80
(``schemas/prometheus-operator.json``; see ``schemas/extract_prometheus_operator.py``).
kopf's peering objects are validated against the CRD rendered next to them.
No kind is left unjudged.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from .conftest import CHART, NAMESPACE, RELEASE, VARIANTS, Manifest, kinds, one, render

if os.environ.get("CI") == "true":  # in CI a missing test dependency is a failure, not a skip
    import kubernetes_validate
else:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")

KUBERNETES_VERSION = "1.30"
PROMETHEUS_OPERATOR_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
KOPF_KINDS = {"ClusterKopfPeering", "KopfPeering"}


PROMETHEUS_OPERATOR = json.loads((Path(__file__).parent / "schemas" / "prometheus-operator.json").read_text())


def _validate_prometheus_operator(obj: Manifest) -> None:
    assert obj["apiVersion"] == PROMETHEUS_OPERATOR["apiVersion"]
    jsonschema.validate(obj, PROMETHEUS_OPERATOR["schemas"][obj["kind"]])


def _validate_custom(obj: Manifest, crds: list[Manifest]) -> None:
    """Validate against the chart's own CRD (rendered with peering.installCRDs, the default)."""
    group, _, version = obj["apiVersion"].partition("/")
    crds = [o for o in crds if o["spec"]["group"] == group and o["spec"]["names"]["kind"] == obj["kind"]]
    assert crds, f"the chart renders no CRD for {obj['kind']}"
    (served,) = [v for v in crds[0]["spec"]["versions"] if v["name"] == version]
    jsonschema.validate(obj, served["schema"]["openAPIV3Schema"])


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_rendered_object_is_valid_against_its_kubernetes_schema(
    name: str, rendered: dict[str, list[Manifest]]
) -> None:
    objects = rendered[name]
    assert objects
    crds = [o for o in rendered["peering-cluster-wide"] if o["kind"] == "CustomResourceDefinition"]
    for obj in objects:
        where = f"{name}: {obj['kind']}/{obj['metadata']['name']}"
        try:
            if obj["kind"] in PROMETHEUS_OPERATOR_KINDS:
                _validate_prometheus_operator(obj)
            elif obj["kind"] in KOPF_KINDS:
                _validate_custom(obj, crds)
            else:
                kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except jsonschema.ValidationError as error:  # kubernetes_validate's error is a subclass
            pytest.fail(f"{where}: {error.message} at {'.'.join(map(str, error.absolute_path))}")


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_namespaced_object_lands_in_the_release_namespace_or_where_asked(
    name: str, rendered: dict[str, list[Manifest]]
) -> None:
    allowed = {NAMESPACE, "monitoring", "team-a", "team-b"}
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "ClusterKopfPeering"}
    for obj in rendered[name]:
        namespace = obj["metadata"].get("namespace")
        if obj["kind"] in cluster_scoped:
            assert namespace is None, f"{obj['kind']} is cluster-scoped"
        else:
            assert namespace in allowed, f"{obj['kind']}/{obj['metadata']['name']} has namespace {namespace}"


def test_default_values_render_the_operator_its_rbac_metrics_service_and_dashboard(
    rendered: dict[str, list[Manifest]],
) -> None:
    assert kinds(rendered["defaults"]) == [
        *["ClusterRole"] * 3, "ClusterRoleBinding", "ConfigMap", *["CustomResourceDefinition"] * 3,
        "Deployment", "Service", "ServiceAccount",
    ]
    # The CRDs are ours (templates/crds.yaml; tests/helm/test_crds_*.py hold them); crds.install=false
    # leaves them to `kubectl apply --server-side -f crds/`.
    assert kinds(rendered["crds-managed-elsewhere"]) == [
        *["ClusterRole"] * 3, "ClusterRoleBinding", "ConfigMap", "Deployment", "Service", "ServiceAccount",
    ]


def test_the_chart_lints_clean_in_strict_mode() -> None:
    from .conftest import helm

    report = helm.lint(str(CHART), strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems and not report["errors"], report


# --- The operator Deployment ----------------------------------------------


def _operator(objects: list[Manifest]) -> tuple[Manifest, Manifest]:
    deployment = one(objects, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return deployment, container


def _env(container: Manifest) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_the_operator_pod_passes_pod_security_restricted(
    name: str, rendered: dict[str, list[Manifest]]
) -> None:
    """The checks of the `restricted` Pod Security Standard, applied to the pod spec."""
    deployment, _ = _operator(rendered[name])
    pod = deployment["spec"]["template"]["spec"]
    assert not (pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"))
    allowed_volumes = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                       "persistentVolumeClaim", "projected", "secret"}
    for volume in pod.get("volumes", []):
        assert set(volume) - {"name"} <= allowed_volumes, volume
    pod_context = pod.get("securityContext", {})
    for container in pod["containers"] + pod.get("initContainers", []):
        context = container.get("securityContext", {})
        assert context.get("allowPrivilegeEscalation") is False
        assert not context.get("privileged")
        assert context["capabilities"]["drop"] == ["ALL"]
        assert set(context["capabilities"].get("add", [])) <= {"NET_BIND_SERVICE"}
        assert context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is True
        assert context.get("runAsUser", pod_context.get("runAsUser")) == 65532
        seccomp = context.get("seccompProfile", pod_context.get("seccompProfile"))
        assert seccomp["type"] in ("RuntimeDefault", "Localhost")
        assert context.get("readOnlyRootFilesystem") is True
        assert not container.get("ports") or all("hostPort" not in p for p in container["ports"])


def test_the_only_writable_path_is_an_emptydir_on_tmp(rendered: dict[str, list[Manifest]]) -> None:
    deployment, container = _operator(rendered["defaults"])
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert deployment["spec"]["template"]["spec"]["volumes"] == [
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}
    ]


def test_liveness_and_readiness_probe_healthz_on_the_metrics_port(
    rendered: dict[str, list[Manifest]],
) -> None:
    _, container = _operator(rendered["defaults"])
    assert container["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert "--port=8080" in container["args"]


def _kopf_crds(objects: list[Manifest]) -> list[str]:
    return [o["metadata"]["name"] for o in objects
            if o["kind"] == "CustomResourceDefinition" and o["spec"]["group"] == "kopf.dev"]


def test_one_replica_runs_standalone_and_is_replaced_not_rolled(rendered: dict[str, list[Manifest]]) -> None:
    deployment, container = _operator(rendered["defaults"])
    assert deployment["spec"]["replicas"] == 1
    assert container["args"] == ["operator", "--port=8080"]
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert not _kopf_crds(rendered["defaults"])


def test_more_replicas_run_with_peering_and_ship_kopf_peering_crds_and_object(
    rendered: dict[str, list[Manifest]],
) -> None:
    objects = rendered["peering-cluster-wide"]
    deployment, container = _operator(objects)
    assert deployment["spec"]["replicas"] == 3
    assert "--peering=mothership" in container["args"]
    assert "strategy" not in deployment["spec"]
    assert set(_kopf_crds(objects)) == {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}
    peering = one(objects, "ClusterKopfPeering", "mothership")
    assert peering["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    assert _env(container)["POD_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_the_operator_knows_its_own_namespace_for_tenant_network_policies(
    rendered: dict[str, list[Manifest]],
) -> None:
    _, container = _operator(rendered["defaults"])
    assert _env(container)["MOTHERSHIP_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}


def test_namespaced_peering_keeps_one_kopfpeering_per_watched_namespace(
    rendered: dict[str, list[Manifest]],
) -> None:
    objects = rendered["peering-namespaced"]
    peerings = [o for o in objects if o["kind"] == "KopfPeering"]
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["team-a", "team-b"]
    assert not [o for o in objects if o["kind"] == "ClusterKopfPeering"]


def test_peering_without_installing_crds_still_creates_the_peering_object(
    rendered: dict[str, list[Manifest]],
) -> None:
    objects = rendered["peering-crds-elsewhere"]
    assert not _kopf_crds(objects)
    one(objects, "ClusterKopfPeering", "mothership")


def test_watched_namespaces_become_namespace_flags(rendered: dict[str, list[Manifest]]) -> None:
    _, container = _operator(rendered["watch-namespaces"])
    assert container["args"] == ["operator", "--port=8080", "--namespace=team-a"]


def test_allowed_targets_and_worker_image_reach_the_operator_environment(
    rendered: dict[str, list[Manifest]],
) -> None:
    _, container = _operator(rendered["targets-and-worker-image"])
    env = _env(container)
    assert env["MOTHERSHIP_ALLOWED_TARGETS"] == "*.staging.example.com,10.0.0.7:8080"
    assert env["MOTHERSHIP_WORKER_IMAGE"] == "registry.example.com/mothership-worker:1.2.3"


def test_workers_use_the_operator_image_unless_told_otherwise(rendered: dict[str, list[Manifest]]) -> None:
    _, container = _operator(rendered["defaults"])
    assert container["image"] == "mothership:0.1.0"
    assert _env(container)["MOTHERSHIP_WORKER_IMAGE"] == "mothership:0.1.0"
    assert "MOTHERSHIP_ALLOWED_TARGETS" not in _env(container)
    _, custom = _operator(rendered["image-and-pull-secrets"])
    assert custom["image"] == "ghcr.io/example/mothership:1.0.0"
    assert custom["imagePullPolicy"] == "Always"
    assert _env(custom)["MOTHERSHIP_WORKER_IMAGE"] == "ghcr.io/example/mothership:1.0.0"
    assert custom["args"][-1] == "--verbose"
    assert _env(custom)["TZ"] == "UTC"


def test_scheduling_values_reach_the_pod(rendered: dict[str, list[Manifest]]) -> None:
    deployment, _ = _operator(rendered["scheduling"])
    pod = deployment["spec"]["template"]["spec"]
    values = VARIANTS["scheduling"]
    for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName"):
        assert pod[key] == values[key]
    assert deployment["spec"]["template"]["metadata"]["labels"]["team"] == "platform"
    assert deployment["spec"]["template"]["metadata"]["annotations"]["example.com/owner"] == "platform"


def test_resources_default_to_requests_and_a_memory_limit(rendered: dict[str, list[Manifest]]) -> None:
    _, container = _operator(rendered["defaults"])
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "192Mi"}, "limits": {"memory": "512Mi"},
    }


def test_an_existing_service_account_is_used_without_creating_rbac(
    rendered: dict[str, list[Manifest]],
) -> None:
    objects = rendered["existing-service-account"]
    assert kinds(objects) == ["ConfigMap", *["CustomResourceDefinition"] * 3, "Deployment", "Service"]
    deployment, _ = _operator(objects)
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "ops"


# --- Metrics, monitors, dashboard ------------------------------------------


def test_the_metrics_service_selects_the_operator_pods_on_the_metrics_port(
    rendered: dict[str, list[Manifest]],
) -> None:
    objects = rendered["defaults"]
    service = one(objects, "Service")
    deployment, _ = _operator(objects)
    assert service["metadata"]["name"] == f"{RELEASE}-mothership-metrics"
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}
    ]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_the_service_monitor_scrapes_the_metrics_service_and_keeps_loadtest_namespaces(
    rendered: dict[str, list[Manifest]],
) -> None:
    objects = rendered["service-monitor"]
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint == {"port": "metrics", "path": "/metrics", "interval": "30s", "honorLabels": True}


def test_the_pod_monitor_selects_worker_pods_in_every_namespace_on_the_metrics_port(
    rendered: dict[str, list[Manifest]],
) -> None:
    monitor = one(rendered["pod-monitor"], "PodMonitor")
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    assert monitor["spec"]["selector"] == {"matchLabels": {
        "app.kubernetes.io/managed-by": "mothership", "app.kubernetes.io/component": "loadtest-worker",
    }}
    assert monitor["spec"]["podMetricsEndpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "5s"}
    ]


def test_with_the_charts_pod_monitor_the_operator_makes_none_per_test_so_no_worker_counts_twice(
    rendered: dict[str, list[Manifest]],
) -> None:
    def args(objects: list[Manifest]) -> list[str]:
        return one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]

    assert "--no-pod-monitors" in args(rendered["pod-monitor"])
    assert "--no-pod-monitors" not in args(rendered["defaults"])


def test_monitors_and_rules_are_off_by_default(rendered: dict[str, list[Manifest]]) -> None:
    assert not PROMETHEUS_OPERATOR_KINDS & set(kinds(rendered["defaults"]))


def test_the_prometheus_rule_alerts_on_operator_down_reconcile_errors_and_failed_loadtests(
    rendered: dict[str, list[Manifest]],
) -> None:
    rule = one(rendered["prometheus-rule"], "PrometheusRule")
    (group,) = rule["spec"]["groups"]
    alerts = {r["alert"]: r for r in group["rules"]}
    assert set(alerts) == {"MothershipOperatorDown", "MothershipReconcileErrors", "MothershipLoadTestFailed"}
    assert f'job="{RELEASE}-mothership-metrics"' in alerts["MothershipOperatorDown"]["expr"]
    assert "mothership_reconcile_errors_total" in alerts["MothershipReconcileErrors"]["expr"]
    assert 'phase=~"Failed|Errored"' in alerts["MothershipLoadTestFailed"]["expr"]
    assert all(r["labels"]["team"] == "platform" for r in group["rules"])
    summary = alerts["MothershipLoadTestFailed"]["annotations"]["summary"]
    assert "{{ $labels.namespace }}/{{ $labels.name }}" in summary


def test_the_dashboard_configmap_carries_the_sidecar_label_and_the_dashboard_verbatim(
    rendered: dict[str, list[Manifest]],
) -> None:
    configmap = one(rendered["defaults"], "ConfigMap")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = (CHART / "dashboards" / "mothership.json").read_text()
    assert json.loads(configmap["data"]["mothership.json"]) == json.loads(dashboard)
    elsewhere = one(rendered["dashboard-elsewhere"], "ConfigMap")
    assert elsewhere["metadata"]["namespace"] == "monitoring"
    assert elsewhere["metadata"]["annotations"] == {"grafana_folder": "Mothership"}
    assert "ConfigMap" not in kinds(rendered["dashboard-off"])


def test_notes_name_the_mode_and_the_metrics_endpoint() -> None:
    from .conftest import render_files

    notes = render_files({"replicas": 2})["mothership/templates/NOTES.txt"]
    assert "peering as \"mothership\"" in notes
    assert f"http://{RELEASE}-mothership-metrics.{NAMESPACE}.svc:8080/metrics" in notes


def test_rendering_is_deterministic() -> None:
    assert render(VARIANTS["everything-on"]) == render(VARIANTS["everything-on"])
