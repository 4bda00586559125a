"""The App API: one small resource instead of five hand-written manifests.

An App becomes a Deployment and a Service, plus an Ingress when ``expose`` is
set, a HorizontalPodAutoscaler when ``autoscale`` is set and a
PodDisruptionBudget when two or more replicas are wanted. Field docstrings are
what ``kubectl explain app.spec`` shows.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import Field, JsonValue, field_validator, model_validator

from .common import (
    CONDITIONS_FIELD,
    DNS_1035_NAME,
    Condition,
    CrdInfo,
    DnsSubdomain,
    Duration,
    Model,
    PrinterColumn,
    Quantity,
    Resource,
    ServiceNamedMetadata,
    parse_quantity,
)

ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE = (
    rf"^(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?/)?{_PATH_PART}(?:/{_PATH_PART})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
"""An image reference, as the distribution/reference grammar has it:
``[registry[:port]/]path[:tag][@digest]``, path components in lower case. The kubelet refuses
anything else (InvalidImageName); we refuse it at apply."""


class Autoscale(Model):
    """Scale between min and max replicas on CPU use."""

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {"rule": "self.min <= self.max", "message": "autoscale.min must not exceed autoscale.max"}
            ]
        }
    }

    min: int = Field(default=1, ge=1, le=1000)
    """Fewest replicas."""
    max: int = Field(ge=1, le=1000)
    """Most replicas."""
    target_cpu: int = Field(default=80, ge=1, le=100, alias="targetCPU")
    """Average CPU use, in percent of the request, that the autoscaler aims for."""

    @model_validator(mode="after")
    def _order(self) -> Autoscale:
        if self.min > self.max:
            raise ValueError("autoscale.min must not exceed autoscale.max")
        return self


class KeyRef(Model):
    name: DnsSubdomain
    """Name of the Secret or ConfigMap in the App's namespace."""
    key: str = Field(min_length=1, max_length=253)
    """Key inside it."""


class EnvSource(Model):
    """Where an env var's value comes from when it is not literal."""

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {"rule": "has(self.secretKeyRef) != has(self.configMapKeyRef)",
                 "message": "set exactly one of secretKeyRef and configMapKeyRef"}
            ]
        }
    }

    secret_key_ref: KeyRef | None = None
    config_map_key_ref: KeyRef | None = None

    @model_validator(mode="after")
    def _one(self) -> EnvSource:
        if (self.secret_key_ref is None) == (self.config_map_key_ref is None):
            raise ValueError("set exactly one of secretKeyRef and configMapKeyRef")
        return self


class EnvVar(Model):
    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {"rule": "!(has(self.value) && has(self.valueFrom))",
                 "message": "set value or valueFrom, not both"}
            ]
        }
    }

    name: str = Field(pattern=ENV_NAME, min_length=1, max_length=256)
    """Variable name."""
    value: str | None = Field(default=None, max_length=32768)
    """Literal value."""
    value_from: EnvSource | None = None
    """Read the value from a Secret or ConfigMap key."""

    @model_validator(mode="after")
    def _one(self) -> EnvVar:
        if self.value is not None and self.value_from is not None:
            raise ValueError("set value or valueFrom, not both")
        return self


class EnvFrom(Model):
    """Import every key of a Secret or ConfigMap as env vars."""

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {"rule": "has(self.secretRef) != has(self.configMapRef)",
                 "message": "set exactly one of secretRef and configMapRef"}
            ]
        }
    }

    secret_ref: DnsSubdomain | None = None
    """Name of a Secret in the App's namespace."""
    config_map_ref: DnsSubdomain | None = None
    """Name of a ConfigMap in the App's namespace."""
    prefix: str | None = Field(default=None, pattern=ENV_NAME, max_length=64)
    """Prefix added to each imported name."""

    @model_validator(mode="after")
    def _one(self) -> EnvFrom:
        if (self.secret_ref is None) == (self.config_map_ref is None):
            raise ValueError("set exactly one of secretRef and configMapRef")
        return self


class ResourceAmounts(Model):
    cpu: Quantity | None = None
    """CPU, e.g. ``250m`` or ``1``."""
    memory: Quantity | None = None
    """Memory, e.g. ``256Mi`` or ``1Gi``."""

    @field_validator("cpu", "memory")
    @classmethod
    def _quantity(cls, value: str | int | None) -> str | int | None:
        # ``Quantity``'s pattern is only in its JSON schema (the CRD); check it here too,
        # so the model rejects what the API server rejects.
        if value is not None:
            parse_quantity(value)
        return value


class Resources(Model):
    requests: ResourceAmounts = ResourceAmounts()
    """What the scheduler reserves per replica."""
    limits: ResourceAmounts = ResourceAmounts()
    """The most a replica may use."""


class HealthCheck(Model):
    """HTTP readiness and liveness probes."""

    path: str = Field(default="/", pattern=r"^/\S*$", max_length=2048)
    """Path probed with GET; 2xx and 3xx are healthy."""
    port: int | None = Field(default=None, ge=1, le=65535)
    """Port probed; defaults to the App's port."""
    initial_delay: Duration = "0s"
    """Wait this long after start before probing."""
    period: Duration = "10s"
    """Probe this often."""
    timeout: Duration = "1s"
    """A probe slower than this fails."""
    failure_threshold: int = Field(default=3, ge=1, le=100)
    """Consecutive failures before the replica is unready (readiness) or restarted (liveness)."""


class Expose(Model):
    """Publish the App outside the cluster through an Ingress."""

    host: DnsSubdomain
    """Public host name, e.g. ``shop.example.com``."""
    path: str = Field(default="/", pattern=r"^/\S*$", max_length=2048)
    """Path prefix routed to the App."""
    tls: bool = True
    """Serve HTTPS for the host (the certificate lives in Secret ``tlsSecretName``)."""
    tls_secret_name: DnsSubdomain | None = None
    """Secret holding the certificate; defaults to ``<app>-tls``."""
    cluster_issuer: DnsSubdomain | None = None
    """cert-manager ClusterIssuer that should issue the certificate, if any."""
    ingress_class_name: DnsSubdomain | None = None
    """IngressClass to use; the cluster default when unset."""


class Protocol(StrEnum):
    HTTP = "http"
    """Plain request/response HTTP."""
    WEBSOCKET = "websocket"
    """Long-lived WebSocket connections: the Ingress gets long proxy timeouts."""


class StrategyType(StrEnum):
    ROLLING_UPDATE = "RollingUpdate"
    RECREATE = "Recreate"


_ROLLING_ONLY = "maxSurge and maxUnavailable apply only to type RollingUpdate"
_NOT_BOTH_ZERO = "maxSurge and maxUnavailable must not both be 0"
_STRATEGY_RULES: list[JsonValue] = [
    {"rule": "self.type == 'RollingUpdate' || (!has(self.maxSurge) && !has(self.maxUnavailable))",
     "message": _ROLLING_ONLY},
    {"rule": "!has(self.maxSurge) || !has(self.maxUnavailable) || self.maxSurge + self.maxUnavailable > 0",
     "message": _NOT_BOTH_ZERO},
]


class Strategy(Model):
    """How a spec change rolls out."""

    model_config = {"json_schema_extra": {"x-kubernetes-validations": _STRATEGY_RULES}}

    type: StrategyType = StrategyType.ROLLING_UPDATE
    """RollingUpdate replaces replicas gradually; Recreate stops all before starting new ones."""
    max_surge: int | None = Field(default=None, ge=0, le=1000)
    """Extra replicas allowed during a rolling update."""
    max_unavailable: int | None = Field(default=None, ge=0, le=1000)
    """Replicas that may be unavailable during a rolling update."""

    @model_validator(mode="after")
    def _rolling(self) -> Strategy:
        # The Deployment API refuses both combinations; say so at apply, not at reconcile.
        bounds = (self.max_surge, self.max_unavailable)
        if self.type is not StrategyType.ROLLING_UPDATE and bounds != (None, None):
            raise ValueError(_ROLLING_ONLY)
        if bounds == (0, 0):
            raise ValueError(_NOT_BOTH_ZERO)
        return self


class SecurityContext(Model):
    """Overrides of the restricted default (non-root, no privilege escalation, drop ALL, RuntimeDefault)."""

    run_as_user: int | None = Field(default=None, ge=1, le=2147483647)
    """UID the container runs as; must not be 0."""
    run_as_group: int | None = Field(default=None, ge=0, le=2147483647)
    """GID the container runs as."""
    fs_group: int | None = Field(default=None, ge=0, le=2147483647)
    """GID that owns mounted volumes."""
    read_only_root_filesystem: bool = False
    """Mount the container's root filesystem read-only."""


# --- the spec's size -----------------------------------------------------------
#
# kopf keeps the last-handled spec as JSON in an annotation (``kubectl apply`` keeps
# another copy), and the API server refuses an object whose annotations together
# exceed 256 KiB. 200 env vars of 32 Ki characters would be 6 MiB, so env, envFrom,
# command and args share one budget, counted alike by CEL and by ``container_size``:
# the characters of every name, value, command word and argument, plus a fixed
# allowance per entry for the rest of it.

CONTAINER_BUDGET = 49152
"""Most env, envFrom, command and args may weigh together in ``container_size`` units."""
_ENV_COST, _VALUE_FROM_COST, _ENV_FROM_COST, _WORD_COST = 48, 600, 640, 4
CONTAINER_BUDGET_MESSAGE = (
    f"env, envFrom, command and args are too large: their names, values and words must total at most "
    f"{CONTAINER_BUDGET} characters (with {_ENV_COST} per env var, {_VALUE_FROM_COST} per valueFrom "
    f"and {_ENV_FROM_COST} per envFrom), because kopf keeps the spec in an annotation and the API "
    "server caps annotations at 256 KiB"
)
CONTAINER_BUDGET_RULE = " + ".join([
    f"(has(self.env) ? self.env.map(e, {_ENV_COST} + size(e.name) + (has(e.value) ? size(e.value) : 0)"
    f" + (has(e.valueFrom) ? {_VALUE_FROM_COST} : 0)).sum() : 0)",
    f"(has(self.envFrom) ? size(self.envFrom) * {_ENV_FROM_COST} : 0)",
    f"(has(self.command) ? self.command.map(w, {_WORD_COST} + size(w)).sum() : 0)",
    f"(has(self.args) ? self.args.map(w, {_WORD_COST} + size(w)).sum() : 0)",
]) + f" <= {CONTAINER_BUDGET}"


def container_size(spec: AppSpec) -> int:
    """env, envFrom, command and args weighed against ``CONTAINER_BUDGET``, as ``CONTAINER_BUDGET_RULE``."""
    return (
        sum(_ENV_COST + len(e.name) + len(e.value or "") + (_VALUE_FROM_COST if e.value_from else 0)
            for e in spec.env)
        + _ENV_FROM_COST * len(spec.env_from)
        + sum(_WORD_COST + len(w) for w in [*spec.command, *spec.args])
    )


_APP_RULES: list[JsonValue] = [
    {"rule": "!(has(self.replicas) && has(self.autoscale))",
     "message": "set replicas or autoscale, not both"},
    {"rule": CONTAINER_BUDGET_RULE, "message": CONTAINER_BUDGET_MESSAGE},
]


class AppSpec(Model):
    """A tenant's app: one container image served behind a Service."""

    model_config = {"json_schema_extra": {"x-kubernetes-validations": _APP_RULES}}

    image: str = Field(pattern=IMAGE, min_length=1, max_length=512)
    """Container image, e.g. ``ghcr.io/acme/shop:1.4.2``."""
    port: int = Field(default=8080, ge=1, le=65535)
    """Port the container listens on; the Service maps port 80 to it."""
    replicas: int | None = Field(default=None, ge=0, le=1000)
    """Fixed replica count (default 1); exclusive with autoscale."""
    autoscale: Autoscale | None = None
    """Scale on CPU between min and max; exclusive with replicas."""
    env: list[EnvVar] = Field(
        default=[],
        max_length=200,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """Environment variables, in order. Names and values, with envFrom, command and args, share a
    budget of 48 Ki characters (plus 48 per variable, 600 per valueFrom, 640 per envFrom): kopf keeps
    the last-handled spec in an annotation, and the API server caps an object's annotations at
    256 KiB. Put large values in a Secret or ConfigMap and use valueFrom."""
    env_from: list[EnvFrom] = Field(default=[], max_length=50)
    """Secrets and ConfigMaps whose keys all become environment variables."""
    command: list[Annotated[str, Field(max_length=4096)]] = Field(default=[], max_length=100)
    """Overrides the image's entrypoint (within the budget described under ``env``)."""
    args: list[Annotated[str, Field(max_length=4096)]] = Field(default=[], max_length=200)
    """Overrides the image's arguments (within the budget described under ``env``)."""
    resources: Resources = Resources()
    """CPU and memory requests and limits per replica (the tenant's defaults apply when unset)."""
    health_check: HealthCheck | None = None
    """Readiness and liveness probes; without it a replica is ready once started."""
    expose: Expose | None = None
    """Publish the App on a public host through an Ingress."""
    protocol: Protocol = Protocol.HTTP
    """http, or websocket for long-lived connections (sets proxy timeouts)."""
    strategy: Strategy = Strategy()
    """Rollout strategy."""
    security_context: SecurityContext = SecurityContext()
    """Overrides of the restricted pod security defaults."""

    @model_validator(mode="after")
    def _scale(self) -> AppSpec:
        if self.replicas is not None and self.autoscale is not None:
            raise ValueError("set replicas or autoscale, not both")
        names = [e.name for e in self.env]
        if len(names) != len(set(names)):
            raise ValueError("env names must be unique")
        if container_size(self) > CONTAINER_BUDGET:
            raise ValueError(CONTAINER_BUDGET_MESSAGE)
        return self

    def desired_replicas(self) -> int:
        """Replicas wanted now: the fixed count, the autoscaler's minimum, or 1."""
        if self.autoscale is not None:
            return self.autoscale.min
        return 1 if self.replicas is None else self.replicas


class AppPhase(StrEnum):
    PENDING = "Pending"
    """Children are being created; no replica has been observed yet."""
    PROGRESSING = "Progressing"
    """A rollout is under way."""
    READY = "Ready"
    """All wanted replicas run the current spec and are ready."""
    DEGRADED = "Degraded"
    """Running, but fewer replicas are ready than wanted, or a dependency is missing."""
    FAILED = "Failed"
    """The rollout cannot proceed (e.g. deadline exceeded, invalid spec)."""


class AppConditionType(StrEnum):
    READY = "Ready"
    """True: all wanted replicas are ready. False: some are not (see reason). Unknown: not observed."""
    PROGRESSING = "Progressing"
    """True: a rollout is under way or just completed. False: it stalled (ProgressDeadlineExceeded)."""
    AVAILABLE = "Available"
    """True: at least the minimum replicas serve traffic. False: the App is down."""


class AppReason(StrEnum):
    """Reasons ``apps.status.compute`` gives its conditions; problems found by the handler
    (e.g. ``SecretNotFound``) bring their own."""

    DEPLOYMENT_NOT_OBSERVED = "DeploymentNotObserved"
    """Unknown: the Deployment controller has not reported on the Deployment yet."""
    ROLLOUT_IN_PROGRESS = "RolloutInProgress"
    """Replicas of the current spec are being created, replaced or are starting."""
    ROLLOUT_COMPLETE = "RolloutComplete"
    """Every wanted replica runs the current spec."""
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    """The rollout made no progress within the Deployment's deadline (bad image, crash loop)."""
    ALL_REPLICAS_READY = "AllReplicasReady"
    """Every wanted replica passes readiness."""
    REPLICAS_NOT_READY = "ReplicasNotReady"
    """Fewer replicas pass readiness than are wanted."""
    MINIMUM_REPLICAS_AVAILABLE = "MinimumReplicasAvailable"
    """Enough replicas serve traffic (the Deployment's own reason)."""
    MINIMUM_REPLICAS_UNAVAILABLE = "MinimumReplicasUnavailable"
    """Too few replicas serve traffic (the Deployment's own reason)."""
    SCALED_TO_ZERO = "ScaledToZero"
    """``replicas: 0``: nothing serves traffic, on purpose."""
    INVALID_SPEC = "InvalidSpec"
    """The spec fails validation the API server could not do; nothing was applied."""


class AppStatus(Model):
    phase: AppPhase = AppPhase.PENDING
    """Pending, Progressing, Ready, Degraded or Failed."""
    url: str | None = None
    """In-cluster URL of the Service."""
    external_url: str | None = None
    """Public URL when exposed."""
    replicas: int = 0
    """Replicas that exist."""
    ready_replicas: int = 0
    """Replicas that pass readiness."""
    ready: str = "0/0"
    """Ready replicas over wanted replicas, e.g. ``2/3``."""
    observed_generation: int | None = None
    """The .metadata.generation this status describes."""
    conditions: list[Condition] = CONDITIONS_FIELD


class App(Resource):
    """A tenant's app: Deployment, Service and, when asked, Ingress, autoscaler and disruption budget."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        kind="App",
        plural="apps",
        singular="app",
        scope="Namespaced",
        short_names=["msapp"],
        printer_columns=[
            PrinterColumn(name="Image", type="string", json_path=".spec.image"),
            PrinterColumn(name="Ready", type="string", json_path=".status.ready"),
            PrinterColumn(name="Phase", type="string", json_path=".status.phase"),
            PrinterColumn(name="URL", type="string", json_path=".status.url"),
            PrinterColumn(name="Age", type="date", json_path=".metadata.creationTimestamp"),
        ],
        name_schema=DNS_1035_NAME,
    )
    kind: str = "App"
    metadata: ServiceNamedMetadata = {}  # type: ignore[assignment]
    spec: AppSpec
    status: AppStatus | None = None

