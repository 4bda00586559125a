"""App children, built purely: Deployment, Service and, when the spec asks,
Ingress, HorizontalPodAutoscaler and PodDisruptionBudget.

Why pure: the handler server-side-applies whatever comes out of here on
create, update, resume and drift repair alike, so the same App must always
give the same bytes. Nothing here reads a clock, randomness, the environment
or the API; the App (already validated by its model) and its ``Owner`` are the
only inputs. Every child is complete: apiVersion, kind, a deterministic name
(``child_name``), the App's namespace, sorted standard labels and an
ownerReference, so deleting the App garbage-collects them.

A child the spec no longer asks for (``expose`` or ``autoscale`` removed, fewer
than two replicas) is simply not built; ``OPTIONAL_CHILDREN`` lists those kinds
so the handler deletes the ones that are missing from ``build_children``.

What this module must not know: kopf, the kube client, or how status is read.
"""

from __future__ import annotations

import math

from mothership import labels as std
from mothership.api.app import App, HealthCheck, Protocol, StrategyType
from mothership.api.common import Manifest, Owner, parse_duration

CONTAINER = "app"
"""The container's name. Fixed, not the App's name: container names must be
DNS labels, and an App's name may be a longer, dotted DNS subdomain."""
PORT_NAME = "http"
SERVICE_PORT = 80
WEBSOCKET_TIMEOUT_SECONDS = 3600
"""nginx's proxy read/send timeouts for ``protocol: websocket``: an idle socket
is closed after this long, instead of after nginx's default 60 s."""
CERT_MANAGER_ISSUER = "cert-manager.io/cluster-issuer"
HANDOVER_MANAGER = "mothership-handover"
"""The field manager that keeps ``spec.replicas`` while the HPA takes it over from ours."""

OPTIONAL_CHILDREN: list[tuple[str, str, str]] = [
    ("networking.k8s.io/v1", "Ingress", "ingresses"),
    ("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
    ("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
]
"""(apiVersion, kind, plural) of the children an App has only when its spec asks;
one that ``build_children`` does not return must be deleted."""


def child_name(app_name: str) -> str:
    """The name of every child of the App (one per kind): the App's own name."""
    return app_name


def labels(app_name: str) -> dict[str, str]:
    """Labels of every child and of the pods; keys sorted."""
    return std.standard(name=app_name, instance=app_name)


def selector(app_name: str) -> dict[str, str]:
    """The pods' selector. Deployment selectors are immutable, so this never
    grows: name and instance only, not every label we might add later."""
    return {std.INSTANCE: app_name, std.NAME: app_name}


def _identity(app: App, owner: Owner) -> tuple[str, str]:
    name = str(app.metadata.get("name") or owner.name)
    namespace = str(app.metadata.get("namespace") or owner.namespace or "")
    if not namespace:
        raise ValueError(f"App {name!r} has no namespace: Apps are namespaced")
    return name, namespace


def _metadata(app: App, owner: Owner, annotations: dict[str, str] | None = None) -> Manifest:
    name, namespace = _identity(app, owner)
    meta: Manifest = {
        "name": child_name(name),
        "namespace": namespace,
        "labels": labels(name),
    }
    if annotations:
        meta["annotations"] = std.ordered(annotations)
    meta["ownerReferences"] = [owner.reference()]
    return meta


def _seconds(duration: str, minimum: int) -> int:
    """A duration in whole seconds, rounded up (``500ms`` probes every second, not never)."""
    return max(minimum, math.ceil(parse_duration(duration)))


def _probe(check: HealthCheck, app_port: int) -> Manifest:
    return {
        "httpGet": {"path": check.path, "port": check.port or app_port},
        "initialDelaySeconds": _seconds(check.initial_delay, 0),
        "periodSeconds": _seconds(check.period, 1),
        "timeoutSeconds": _seconds(check.timeout, 1),
        "failureThreshold": check.failure_threshold,
    }


def _env(app: App) -> list[Manifest]:
    out: list[Manifest] = []
    for var in app.spec.env:
        item: Manifest = {"name": var.name}
        if var.value is not None:
            item["value"] = var.value
        elif var.value_from is not None:
            source = var.value_from
            if source.secret_key_ref is not None:
                ref = source.secret_key_ref
                item["valueFrom"] = {"secretKeyRef": {"name": ref.name, "key": ref.key}}
            elif source.config_map_key_ref is not None:
                ref = source.config_map_key_ref
                item["valueFrom"] = {"configMapKeyRef": {"name": ref.name, "key": ref.key}}
        out.append(item)
    return out


def _env_from(app: App) -> list[Manifest]:
    out: list[Manifest] = []
    for source in app.spec.env_from:
        item: Manifest = {}
        if source.prefix is not None:
            item["prefix"] = source.prefix
        if source.secret_ref is not None:
            item["secretRef"] = {"name": source.secret_ref}
        elif source.config_map_ref is not None:
            item["configMapRef"] = {"name": source.config_map_ref}
        out.append(item)
    return out


def _resources(app: App) -> Manifest:
    out: Manifest = {}
    for key, amounts in (("requests", app.spec.resources.requests), ("limits", app.spec.resources.limits)):
        values = {k: str(v) for k, v in (("cpu", amounts.cpu), ("memory", amounts.memory)) if v is not None}
        if values:
            out[key] = values
    return out


def _strategy(app: App) -> Manifest:
    strategy = app.spec.strategy
    out: Manifest = {"type": strategy.type.value}
    if strategy.type is StrategyType.ROLLING_UPDATE:
        rolling = {
            k: v
            for k, v in (("maxSurge", strategy.max_surge), ("maxUnavailable", strategy.max_unavailable))
            if v is not None
        }
        if rolling:
            out["rollingUpdate"] = rolling
    return out


def _pod_security(app: App) -> Manifest:
    """Pod Security ``restricted`` at pod level: non-root and RuntimeDefault seccomp,
    with the App's UID/GID overrides."""
    sc = app.spec.security_context
    out: Manifest = {"runAsNonRoot": True}
    overrides = (("runAsUser", sc.run_as_user), ("runAsGroup", sc.run_as_group), ("fsGroup", sc.fs_group))
    for key, value in overrides:
        if value is not None:
            out[key] = value
    out["seccompProfile"] = {"type": "RuntimeDefault"}
    return out


def _container_security(app: App) -> Manifest:
    """Pod Security ``restricted`` at container level: no escalation, no capabilities."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": app.spec.security_context.read_only_root_filesystem,
        "runAsNonRoot": True,
    }


def build_deployment(app: App, owner: Owner) -> Manifest:
    """The Deployment: one container, restricted security, probes from ``healthCheck``.

    ``replicas`` is left out when ``autoscale`` is set: the HPA owns it, and
    applying a count would fight the autoscaler on every reconcile (the switch
    from a fixed count hands the field over first: ``build_replicas_handover``). No
    spec-hash annotation: applying a changed pod template is what rolls out.
    """
    name, _ = _identity(app, owner)
    spec = app.spec
    container: Manifest = {"name": CONTAINER, "image": spec.image}
    if spec.command:
        container["command"] = list(spec.command)
    if spec.args:
        container["args"] = list(spec.args)
    container["ports"] = [{"name": PORT_NAME, "containerPort": spec.port, "protocol": "TCP"}]
    if spec.env:
        container["env"] = _env(app)
    if spec.env_from:
        container["envFrom"] = _env_from(app)
    resources = _resources(app)
    if resources:
        container["resources"] = resources
    if spec.health_check is not None:
        container["readinessProbe"] = _probe(spec.health_check, spec.port)
        container["livenessProbe"] = _probe(spec.health_check, spec.port)
    container["securityContext"] = _container_security(app)

    deployment_spec: Manifest = {}
    if spec.autoscale is None:
        deployment_spec["replicas"] = spec.desired_replicas()
    deployment_spec["selector"] = {"matchLabels": selector(name)}
    deployment_spec["strategy"] = _strategy(app)
    deployment_spec["template"] = {
        "metadata": {"labels": labels(name)},
        "spec": {"securityContext": _pod_security(app), "containers": [container]},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(app, owner),
        "spec": deployment_spec,
    }


def build_replicas_handover(app: App, owner: Owner, live_replicas: int) -> Manifest:
    """The apply that hands the Deployment's ``spec.replicas`` over to the autoscaler.

    Dropping a field from an apply deletes it when no other manager owns it, so
    a Deployment applied without ``replicas`` by its sole owner would fall back
    to the default, one replica, until the HPA scales it up again. The handler
    therefore first applies this, under ``HANDOVER_MANAGER``, and only then the
    Deployment without ``replicas`` (the "transferring ownership" pattern of the
    Kubernetes server-side apply docs). Only name, namespace and the count are
    sent, so that manager owns nothing else. The count is the live one, clamped
    into ``[min, max]`` as the HPA would clamp it on its first pass.
    """
    autoscale = app.spec.autoscale
    if autoscale is None:
        raise ValueError("only an autoscaled App hands its replicas over")
    name, namespace = _identity(app, owner)
    replicas = min(max(live_replicas, autoscale.min), autoscale.max)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": child_name(name), "namespace": namespace},
        "spec": {"replicas": replicas},
    }


def build_service(app: App, owner: Owner) -> Manifest:
    """The ClusterIP Service: port 80, named ``http``, to the container's port."""
    name, _ = _identity(app, owner)
    app_protocol = "kubernetes.io/ws" if app.spec.protocol is Protocol.WEBSOCKET else "http"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(app, owner),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(name),
            "ports": [
                {
                    "name": PORT_NAME,
                    "appProtocol": app_protocol,
                    "port": SERVICE_PORT,
                    "protocol": "TCP",
                    "targetPort": app.spec.port,
                }
            ],
        },
    }


def tls_secret_name(app: App, owner: Owner) -> str:
    """Secret holding the Ingress certificate: ``expose.tlsSecretName`` or ``<app>-tls``."""
    name, _ = _identity(app, owner)
    expose = app.spec.expose
    if expose is not None and expose.tls_secret_name:
        return expose.tls_secret_name
    return f"{name}-tls"


def build_ingress(app: App, owner: Owner) -> Manifest | None:
    """The Ingress when ``expose`` is set: one host, one Prefix path, TLS unless turned off.

    With ``clusterIssuer`` set, cert-manager's annotation asks it to issue the
    certificate into the TLS Secret. ``protocol: websocket`` raises nginx's
    proxy timeouts so idle sockets are not cut after a minute.
    """
    expose = app.spec.expose
    if expose is None:
        return None
    name, _ = _identity(app, owner)
    annotations: dict[str, str] = {}
    if expose.tls and expose.cluster_issuer:
        annotations[CERT_MANAGER_ISSUER] = expose.cluster_issuer
    if app.spec.protocol is Protocol.WEBSOCKET:
        annotations["nginx.ingress.kubernetes.io/proxy-http-version"] = "1.1"
        annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] = str(WEBSOCKET_TIMEOUT_SECONDS)
        annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"] = str(WEBSOCKET_TIMEOUT_SECONDS)
    spec: Manifest = {}
    if expose.ingress_class_name:
        spec["ingressClassName"] = expose.ingress_class_name
    if expose.tls:
        spec["tls"] = [{"hosts": [expose.host], "secretName": tls_secret_name(app, owner)}]
    spec["rules"] = [
        {
            "host": expose.host,
            "http": {
                "paths": [
                    {
                        "path": expose.path,
                        "pathType": "Prefix",
                        "backend": {"service": {"name": child_name(name), "port": {"name": PORT_NAME}}},
                    }
                ]
            },
        }
    ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": _metadata(app, owner, annotations),
        "spec": spec,
    }


def build_hpa(app: App, owner: Owner) -> Manifest | None:
    """The autoscaling/v2 HorizontalPodAutoscaler when ``autoscale`` is set: CPU utilization target."""
    autoscale = app.spec.autoscale
    if autoscale is None:
        return None
    name, _ = _identity(app, owner)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(app, owner),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": child_name(name)},
            "minReplicas": autoscale.min,
            "maxReplicas": autoscale.max,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": autoscale.target_cpu},
                    },
                }
            ],
        },
    }


def build_pdb(app: App, owner: Owner) -> Manifest | None:
    """A PodDisruptionBudget (maxUnavailable 1) when two or more replicas are wanted.

    With one replica a budget would either block node drains forever or allow
    the only replica to go, so none is built.
    """
    if app.spec.desired_replicas() < 2:
        return None
    name, _ = _identity(app, owner)
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(app, owner),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(name)}},
    }


def build_children(app: App, owner: Owner) -> list[Manifest]:
    """Deployment, Service, then whichever of Ingress, HPA and PDB the spec asks for, in that order."""
    children = [build_deployment(app, owner), build_service(app, owner)]
    for optional in (build_ingress(app, owner), build_hpa(app, owner), build_pdb(app, owner)):
        if optional is not None:
            children.append(optional)
    return children
