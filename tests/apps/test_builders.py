"""App builders: the full example against whole expected objects, then one small
test per spec option, in the manner of k6-operator's runner tests.

A changed field shows up as a diff of one literal, and the option tests say
which behaviour it broke.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from mothership.apps import builders
from mothership.kube import managers_of
from tests.apps import kubeschemas
from tests.apps.examples import FULL, MINIMAL, UID, app, owner

LABELS = {
    "app.kubernetes.io/instance": "shop",
    "app.kubernetes.io/managed-by": "mothership",
    "app.kubernetes.io/name": "shop",
}
SELECTOR = {"app.kubernetes.io/instance": "shop", "app.kubernetes.io/name": "shop"}
OWNER_REF = {
    "apiVersion": "mothership.dev/v1alpha1",
    "kind": "App",
    "name": "shop",
    "uid": UID,
    "controller": True,
    "blockOwnerDeletion": True,
}
META = {"name": "shop", "namespace": "acme", "labels": LABELS, "ownerReferences": [OWNER_REF]}
PROBE = {
    "httpGet": {"path": "/healthz", "port": 9090},
    "initialDelaySeconds": 5,
    "periodSeconds": 10,
    "timeoutSeconds": 1,
    "failureThreshold": 5,
}


def by_kind(spec: dict[str, Any] | None = None, **changes: Any) -> dict[str, dict[str, Any]]:
    return {m["kind"]: m for m in builders.build_children(app(spec, **changes), owner())}


# --- The full example, whole ---------------------------------------------------------------


def test_the_full_example_builds_this_deployment() -> None:
    assert builders.build_deployment(app(FULL), owner()) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": META,
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": SELECTOR},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": LABELS},
                "spec": {
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "runAsGroup": 10001,
                        "fsGroup": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "app",
                            "image": "ghcr.io/acme/shop:1.4.2",
                            "command": ["/app/shop"],
                            "args": ["serve", "--verbose"],
                            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                            "env": [
                                {"name": "LOG_LEVEL", "value": "info"},
                                {
                                    "name": "DB_PASSWORD",
                                    "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}},
                                },
                                {
                                    "name": "FEATURES",
                                    "valueFrom": {"configMapKeyRef": {"name": "flags", "key": "features"}},
                                },
                            ],
                            "envFrom": [
                                {"secretRef": {"name": "shop-secrets"}},
                                {"prefix": "CFG_", "configMapRef": {"name": "shop-config"}},
                            ],
                            "resources": {
                                "requests": {"cpu": "250m", "memory": "256Mi"},
                                "limits": {"cpu": "1", "memory": "512Mi"},
                            },
                            "readinessProbe": PROBE,
                            "livenessProbe": PROBE,
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                                "readOnlyRootFilesystem": True,
                                "runAsNonRoot": True,
                            },
                        }
                    ],
                },
            },
        },
    }


def test_the_full_example_builds_this_service() -> None:
    assert builders.build_service(app(FULL), owner()) == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": META,
        "spec": {
            "type": "ClusterIP",
            "selector": SELECTOR,
            "ports": [
                {
                    "name": "http",
                    "appProtocol": "kubernetes.io/ws",
                    "port": 80,
                    "protocol": "TCP",
                    "targetPort": 8080,
                }
            ],
        },
    }


def test_the_full_example_builds_this_ingress() -> None:
    assert builders.build_ingress(app(FULL), owner()) == {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": "shop",
            "namespace": "acme",
            "labels": LABELS,
            "annotations": {
                "cert-manager.io/cluster-issuer": "letsencrypt",
                "nginx.ingress.kubernetes.io/proxy-http-version": "1.1",
                "nginx.ingress.kubernetes.io/proxy-read-timeout": "3600",
                "nginx.ingress.kubernetes.io/proxy-send-timeout": "3600",
            },
            "ownerReferences": [OWNER_REF],
        },
        "spec": {
            "ingressClassName": "nginx",
            "tls": [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}],
            "rules": [
                {
                    "host": "shop.example.com",
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "shop", "port": {"name": "http"}}},
                            }
                        ]
                    },
                }
            ],
        },
    }


def test_the_full_example_builds_this_disruption_budget() -> None:
    assert builders.build_pdb(app(FULL), owner()) == {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": META,
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": SELECTOR}},
    }


def test_an_autoscaled_app_builds_this_hpa() -> None:
    spec = {**FULL, "replicas": None, "autoscale": {"min": 2, "max": 10, "targetCPU": 70}}
    assert builders.build_hpa(app(spec), owner()) == {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": META,
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "shop"},
            "minReplicas": 2,
            "maxReplicas": 10,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
                }
            ],
        },
    }


def test_the_minimal_app_builds_only_a_deployment_and_a_service() -> None:
    children = builders.build_children(app(MINIMAL), owner())
    assert [c["kind"] for c in children] == ["Deployment", "Service"]
    deployment = children[0]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate"}
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container == {
        "name": "app",
        "image": "ghcr.io/acme/shop:1.4.2",
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": False,
            "runAsNonRoot": True,
        },
    }


# --- Shape every child shares ------------------------------------------------------------------


def test_children_come_deployment_service_then_ingress_hpa_pdb() -> None:
    spec = {**FULL, "replicas": None, "autoscale": {"min": 2, "max": 4}}
    kinds = [c["kind"] for c in builders.build_children(app(spec), owner())]
    assert kinds == ["Deployment", "Service", "Ingress", "HorizontalPodAutoscaler", "PodDisruptionBudget"]


def test_optional_children_lists_exactly_the_kinds_an_app_may_not_have() -> None:
    spec = {**FULL, "replicas": None, "autoscale": {"min": 2, "max": 4}}
    everything = builders.build_children(app(spec), owner())
    optional = [(c["apiVersion"], c["kind"]) for c in everything[2:]]
    assert [(v, k) for v, k, _ in builders.OPTIONAL_CHILDREN] == optional
    assert [p for _, _, p in builders.OPTIONAL_CHILDREN] == [
        "ingresses", "horizontalpodautoscalers", "poddisruptionbudgets"
    ]


def test_every_child_is_complete_with_sorted_labels_and_the_owner_reference() -> None:
    spec = {**FULL, "replicas": None, "autoscale": {"min": 2, "max": 4}}
    for child in builders.build_children(app(spec), owner()):
        meta = child["metadata"]
        assert child["apiVersion"] and child["kind"]
        assert (meta["name"], meta["namespace"]) == ("shop", "acme")
        assert meta["ownerReferences"] == [OWNER_REF]
        assert list(meta["labels"]) == sorted(meta["labels"]) and meta["labels"] == LABELS
        assert list(meta.get("annotations", {})) == sorted(meta.get("annotations", {}))


def test_the_same_app_gives_the_same_bytes() -> None:
    first = json.dumps(builders.build_children(app(FULL), owner()))
    second = json.dumps(builders.build_children(app(FULL), owner()))
    assert first == second


def test_child_name_is_the_apps_name_for_every_kind() -> None:
    assert builders.child_name("shop") == "shop"


def test_labels_are_the_standard_three_with_keys_sorted() -> None:
    assert list(builders.labels("shop").items()) == sorted(LABELS.items())


def test_an_app_without_a_namespace_is_refused() -> None:
    bare = app(MINIMAL)
    bare.metadata.pop("namespace")
    with pytest.raises(ValueError, match="namespace"):
        builders.build_deployment(bare, owner(namespace=None))


# --- One option at a time ----------------------------------------------------------------------


def test_given_expose_an_ingress_routes_the_host_and_path_prefix_to_the_service_port() -> None:
    ingress = by_kind(expose={"host": "shop.example.com", "path": "/api"})["Ingress"]
    path = ingress["spec"]["rules"][0]["http"]["paths"][0]
    assert ingress["spec"]["rules"][0]["host"] == "shop.example.com"
    assert path == {
        "path": "/api",
        "pathType": "Prefix",
        "backend": {"service": {"name": "shop", "port": {"name": "http"}}},
    }


def test_given_no_expose_there_is_no_ingress() -> None:
    assert builders.build_ingress(app(MINIMAL), owner()) is None
    assert "Ingress" not in by_kind()


def test_given_expose_tls_defaults_on_with_secret_app_name_dash_tls() -> None:
    ingress = by_kind(expose={"host": "shop.example.com"})["Ingress"]
    assert ingress["spec"]["tls"] == [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}]


def test_given_a_tls_secret_name_the_ingress_uses_it() -> None:
    ingress = by_kind(expose={"host": "shop.example.com", "tlsSecretName": "wildcard"})["Ingress"]
    assert ingress["spec"]["tls"][0]["secretName"] == "wildcard"


def test_given_tls_false_the_ingress_has_no_tls_and_no_issuer() -> None:
    ingress = by_kind(expose={"host": "shop.example.com", "tls": False, "clusterIssuer": "le"})["Ingress"]
    assert "tls" not in ingress["spec"]
    assert "annotations" not in ingress["metadata"]


def test_given_a_cluster_issuer_the_ingress_asks_cert_manager_for_the_certificate() -> None:
    ingress = by_kind(expose={"host": "shop.example.com", "clusterIssuer": "letsencrypt"})["Ingress"]
    assert ingress["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": "letsencrypt"}


def test_given_no_issuer_and_http_the_ingress_has_no_annotations() -> None:
    assert "annotations" not in by_kind(expose={"host": "shop.example.com"})["Ingress"]["metadata"]


def test_given_an_ingress_class_the_ingress_names_it_else_leaves_the_cluster_default() -> None:
    named = by_kind(expose={"host": "shop.example.com", "ingressClassName": "traefik"})["Ingress"]
    default = by_kind(expose={"host": "shop.example.com"})["Ingress"]
    assert named["spec"]["ingressClassName"] == "traefik"
    assert "ingressClassName" not in default["spec"]


def test_given_protocol_websocket_the_ingress_gets_hour_long_proxy_timeouts_and_http_1_1() -> None:
    ingress = by_kind(expose={"host": "shop.example.com"}, protocol="websocket")["Ingress"]
    assert ingress["metadata"]["annotations"] == {
        "nginx.ingress.kubernetes.io/proxy-http-version": "1.1",
        "nginx.ingress.kubernetes.io/proxy-read-timeout": "3600",
        "nginx.ingress.kubernetes.io/proxy-send-timeout": "3600",
    }


def test_given_protocol_websocket_the_service_port_says_so() -> None:
    assert by_kind(protocol="websocket")["Service"]["spec"]["ports"][0]["appProtocol"] == "kubernetes.io/ws"
    assert by_kind()["Service"]["spec"]["ports"][0]["appProtocol"] == "http"


def test_given_a_port_the_service_maps_80_named_http_to_it() -> None:
    port = by_kind(port=3000)["Service"]["spec"]["ports"][0]
    assert (port["name"], port["port"], port["targetPort"]) == ("http", 80, 3000)


def test_given_autoscale_an_hpa_is_built_and_the_deployment_leaves_replicas_to_it() -> None:
    children = by_kind(autoscale={"min": 1, "max": 5})
    assert children["HorizontalPodAutoscaler"]["spec"]["minReplicas"] == 1
    assert children["HorizontalPodAutoscaler"]["spec"]["maxReplicas"] == 5
    assert children["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["resource"]["target"] == {
        "type": "Utilization", "averageUtilization": 80,
    }
    assert "replicas" not in children["Deployment"]["spec"]


@pytest.mark.parametrize(("live", "handed_over"), [(3, 3), (1, 2), (9, 6), (0, 2)])
def test_the_replicas_handover_carries_the_live_count_clamped_into_the_autoscale_range(
    live: int, handed_over: int
) -> None:
    handover = builders.build_replicas_handover(app(autoscale={"min": 2, "max": 6}), owner(), live)
    assert handover == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "shop", "namespace": "acme"},
        "spec": {"replicas": handed_over},
    }


def test_only_an_autoscaled_app_hands_its_replicas_over() -> None:
    with pytest.raises(ValueError, match="autoscaled"):
        builders.build_replicas_handover(app(replicas=3), owner(), 3)


def test_the_managers_of_a_field_are_read_from_managed_fields() -> None:
    deployment = {"metadata": {"managedFields": [
        {"manager": "mothership", "operation": "Apply",
         "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {}}}},
        {"manager": "mothership-handover", "operation": "Apply", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
        {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status",
         "fieldsV1": {"f:status": {"f:replicas": {}}}},
        {"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:spec": {"f:paused": {}}}},
    ]}}
    assert managers_of(deployment, "spec", "replicas") == {"mothership", "mothership-handover"}
    assert managers_of(deployment, "spec", "minReadySeconds") == set()
    assert managers_of({"metadata": {}}, "spec", "replicas") == set()


def test_given_no_autoscale_there_is_no_hpa() -> None:
    assert builders.build_hpa(app(MINIMAL), owner()) is None


@pytest.mark.parametrize(("scale", "has_pdb"), [
    ({}, False),
    ({"replicas": 0}, False),
    ({"replicas": 1}, False),
    ({"replicas": 2}, True),
    ({"autoscale": {"min": 1, "max": 9}}, False),
    ({"autoscale": {"min": 2, "max": 9}}, True),
])
def test_a_disruption_budget_exists_only_when_two_or_more_replicas_are_wanted(
    scale: dict[str, Any], has_pdb: bool
) -> None:
    assert ("PodDisruptionBudget" in by_kind(**scale)) is has_pdb


def test_given_replicas_the_deployment_asks_for_that_many() -> None:
    assert by_kind(replicas=4)["Deployment"]["spec"]["replicas"] == 4


def test_given_a_health_check_both_probes_get_it_with_durations_rounded_up_to_seconds() -> None:
    check = {"path": "/ready", "initialDelay": "1500ms", "period": "1m", "timeout": "100ms"}
    container = by_kind(healthCheck=check)["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    expected = {
        "httpGet": {"path": "/ready", "port": 8080},
        "initialDelaySeconds": 2,
        "periodSeconds": 60,
        "timeoutSeconds": 1,
        "failureThreshold": 3,
    }
    assert container["readinessProbe"] == expected
    assert container["livenessProbe"] == expected


def test_given_a_health_check_port_the_probes_use_it_instead_of_the_apps_port() -> None:
    container = by_kind(healthCheck={"port": 9090})["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {"path": "/", "port": 9090}


def test_given_no_health_check_there_are_no_probes() -> None:
    container = by_kind()["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert "readinessProbe" not in container and "livenessProbe" not in container


def test_given_env_the_container_gets_it_in_declaration_order() -> None:
    env = [{"name": n, "value": str(i)} for i, n in enumerate(["ZED", "ALPHA", "MIDDLE", "BETA"])]
    container = by_kind(env=env)["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert [e["name"] for e in container["env"]] == ["ZED", "ALPHA", "MIDDLE", "BETA"]


def test_given_an_env_var_without_value_it_is_set_empty() -> None:
    container = by_kind(env=[{"name": "EMPTY"}])["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["env"] == [{"name": "EMPTY"}]


def test_given_env_from_the_container_imports_secrets_and_config_maps_with_prefixes() -> None:
    env_from = [{"configMapRef": "settings"}, {"secretRef": "creds", "prefix": "DB_"}]
    container = by_kind(envFrom=env_from)["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [
        {"configMapRef": {"name": "settings"}},
        {"prefix": "DB_", "secretRef": {"name": "creds"}},
    ]


def test_by_default_the_pod_passes_pod_security_restricted() -> None:
    pod = by_kind()["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert pod["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": False,
        "runAsNonRoot": True,
    }


def test_given_a_security_context_its_ids_and_read_only_root_override_the_defaults() -> None:
    context = {"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000, "readOnlyRootFilesystem": True}
    pod = by_kind(securityContext=context)["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 3000,
        "fsGroup": 2000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def test_given_resources_only_what_is_set_is_written_as_strings() -> None:
    resources = {"requests": {"memory": "64Mi"}, "limits": {"cpu": 2}}
    container = by_kind(resources=resources)["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"] == {"requests": {"memory": "64Mi"}, "limits": {"cpu": "2"}}


def test_given_no_resources_the_container_leaves_them_to_the_tenants_limit_range() -> None:
    assert "resources" not in by_kind()["Deployment"]["spec"]["template"]["spec"]["containers"][0]


def test_given_command_and_args_they_replace_the_images() -> None:
    container = by_kind(command=["python"], args=["-m", "shop"])["Deployment"]["spec"]["template"]["spec"][
        "containers"][0]
    assert (container["command"], container["args"]) == (["python"], ["-m", "shop"])


def test_given_strategy_recreate_the_deployment_stops_all_before_starting() -> None:
    assert by_kind(strategy={"type": "Recreate"})["Deployment"]["spec"]["strategy"] == {"type": "Recreate"}


def test_given_a_rolling_update_bound_only_that_bound_is_written() -> None:
    strategy = by_kind(strategy={"maxUnavailable": 0})["Deployment"]["spec"]["strategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0}}


def test_the_pod_template_carries_the_labels_the_selector_matches() -> None:
    spec = by_kind()["Deployment"]["spec"]
    template = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= template.items()
    assert by_kind()["Service"]["spec"]["selector"] == spec["selector"]["matchLabels"]


# --- Kubernetes' own schemas ---------------------------------------------------------------------

VARIANTS: dict[str, dict[str, Any]] = {
    "full": FULL,
    "minimal": MINIMAL,
    "autoscaled": {**FULL, "replicas": None, "autoscale": {"min": 2, "max": 4}},
    "recreate-plain-http": {**MINIMAL, "strategy": {"type": "Recreate"},
                            "expose": {"host": "shop.example.com", "tls": False, "path": "/api"}},
}


@pytest.mark.parametrize("version", kubeschemas.VERSIONS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_child_validates_against_kubernetes_own_schema(variant: str, version: str) -> None:
    for child in builders.build_children(app(VARIANTS[variant]), owner()):
        kubeschemas.validate(child, version)
