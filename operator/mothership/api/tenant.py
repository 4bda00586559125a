"""The Tenant API (cluster-scoped): a tenant's namespace and its guard rails.

A Tenant becomes a Namespace labelled for Pod Security ``restricted``, a
ResourceQuota, a LimitRange, a NetworkPolicy and a RoleBinding for its owners.
``loadTests`` bounds what the tenant's LoadTests may do and where they may aim.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import Field, field_validator, model_validator

from .common import (
    CONDITIONS_FIELD,
    Condition,
    CrdInfo,
    DnsLabel,
    Model,
    PrinterColumn,
    Quantity,
    Resource,
    parse_quantity,
)


def _check_quantity(value: str | int | None) -> str | int | None:
    # ``Quantity``'s pattern is only in its JSON schema (the CRD); check it here too,
    # so the model rejects what the API server rejects.
    if value is not None:
        parse_quantity(value)
    return value


class SubjectKind(StrEnum):
    USER = "User"
    GROUP = "Group"
    SERVICE_ACCOUNT = "ServiceAccount"


class Owner(Model):
    """Someone granted the ``edit`` role in the tenant's namespace."""

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {"rule": "self.kind == 'ServiceAccount' || !has(self.namespace)",
                 "message": "namespace applies only to kind ServiceAccount"}
            ]
        }
    }

    kind: SubjectKind = SubjectKind.USER
    """User, Group or ServiceAccount."""
    name: str = Field(min_length=1, max_length=253)
    """User or group name as your authenticator reports it, or the ServiceAccount's name."""
    namespace: DnsLabel | None = None
    """Namespace of a ServiceAccount (default: the tenant's namespace)."""

    @model_validator(mode="after")
    def _ns(self) -> Owner:
        if self.namespace is not None and self.kind is not SubjectKind.SERVICE_ACCOUNT:
            raise ValueError("namespace applies only to kind ServiceAccount")
        return self


class Quota(Model):
    """Upper bounds on what the namespace may request in total."""

    cpu: Quantity | None = None
    """Total CPU requests, e.g. ``8``."""
    memory: Quantity | None = None
    """Total memory requests, e.g. ``16Gi``."""
    pods: int | None = Field(default=None, ge=0, le=100000)
    """Most pods at once."""
    apps: int | None = Field(default=None, ge=0, le=10000)
    """Most Apps."""

    _quantities = field_validator("cpu", "memory")(_check_quantity)


class Amounts(Model):
    cpu: Quantity | None = None
    memory: Quantity | None = None

    _quantities = field_validator("cpu", "memory")(_check_quantity)


class Defaults(Model):
    """Per-container defaults applied by a LimitRange when a pod does not say."""

    requests: Amounts = Amounts(cpu="100m", memory="128Mi")
    """Default requests."""
    limits: Amounts = Amounts(cpu="1", memory="512Mi")
    """Default limits."""


class IsolationMode(StrEnum):
    STRICT = "strict"
    """Deny ingress from other namespaces, except the allowed ones."""
    NONE = "none"
    """No NetworkPolicy."""


class Isolation(Model):
    """Network isolation of the namespace."""

    mode: IsolationMode = IsolationMode.STRICT
    """strict (default-deny from other namespaces) or none."""
    allow_from: list[Annotated[dict[str, str], Field(min_length=1, max_length=20)]] = Field(
        default=[
            {"kubernetes.io/metadata.name": "ingress-nginx"},
            {"kubernetes.io/metadata.name": "monitoring"},
        ],
        max_length=20,
    )
    """Namespace label selectors still admitted (the ingress controller, monitoring); each needs at
    least one label, since an empty selector would admit every namespace. The tenant's own namespace
    and the operator's are always admitted."""


class LoadTestLimits(Model):
    """What this tenant's LoadTests may do."""

    max_workers: int = Field(default=10, ge=1, le=1000)
    """Most worker pods one LoadTest may fan out to."""
    max_virtual_users: int = Field(default=10000, ge=1, le=10_000_000)
    """Most virtual users (or open-model in-flight iterations) one LoadTest may run."""
    allowed_targets: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(
        default=[], max_length=100
    )
    """Host patterns outside the namespace a LoadTest may aim at, e.g. ``*.example.com`` or
    ``shop.team-b.svc``; Services in the tenant's own namespace are always allowed."""


class DeletionPolicy(StrEnum):
    RETAIN = "Retain"
    """Deleting the Tenant leaves the namespace and everything in it."""
    DELETE = "Delete"
    """Deleting the Tenant deletes its namespace and everything in it."""


class TenantSpec(Model):
    """A tenant's namespace with quota, default limits, network isolation and RBAC."""

    namespace: DnsLabel | None = None
    """Namespace to create; defaults to the Tenant's name. One that already exists is claimed only
    when it is labelled as this Tenant's, or with ``adopt``."""
    adopt: bool = False
    """Take over a namespace that already exists and that no Tenant owns (made by hand or by another
    tool): the guard rails then apply to what runs there, and deleting the Tenant never deletes the
    namespace, whatever ``deletionPolicy`` says. A namespace labelled as another Tenant's, or a
    system namespace, is refused even so."""
    owners: list[Owner] = Field(default=[], max_length=100)
    """Subjects granted the ``edit`` role in the namespace."""
    quota: Quota = Quota()
    """Namespace-wide totals."""
    defaults: Defaults = Defaults()
    """Default container requests and limits."""
    isolation: Isolation = Isolation()
    """Network isolation."""
    load_tests: LoadTestLimits = LoadTestLimits()
    """Limits and allowed targets for this tenant's LoadTests."""
    deletion_policy: DeletionPolicy = DeletionPolicy.RETAIN
    """Retain (default) keeps the namespace when the Tenant is deleted; Delete removes it if this
    Tenant created it (an adopted namespace is kept, only the guard rails go)."""


class TenantConditionType(StrEnum):
    READY = "Ready"
    """True: every child exists as specified. False: one failed, or the Tenant was refused (see
    reason). Unknown: not reconciled."""
    ACCEPTED = "Accepted"
    """Whether the Tenant may have its namespace.
    True: NamespaceClaimed: the namespace is this Tenant's (it created it, or adopted it).
    False: refused for good, and nothing was changed: InvalidSpec (including a system namespace), or
    NamespaceTaken (the namespace is another Tenant's, or exists and ``adopt`` is not set); the
    message names the owner and what to do. Rechecked every 30 s."""
    NAMESPACE_READY = "NamespaceReady"
    """The Namespace. True: applied. False: the apply failed. Unknown: not applied yet."""
    QUOTA_READY = "QuotaReady"
    """The ResourceQuota; True with reason NotRequested when ``quota`` sets nothing."""
    LIMITS_READY = "LimitsReady"
    """The LimitRange of default requests and limits."""
    ISOLATION_READY = "IsolationReady"
    """The NetworkPolicy; True with reason NotRequested when ``isolation.mode`` is none."""
    ACCESS_READY = "AccessReady"
    """The owners' RoleBinding; True with reason NotRequested when there are no owners."""


class TenantReason(StrEnum):
    """Reasons ``tenants.status.compute`` gives its conditions."""

    APPLIED = "Applied"
    """True: the child was applied as specified."""
    APPLY_FAILED = "ApplyFailed"
    """False: the API server refused the child; the message says why."""
    NOT_APPLIED = "NotApplied"
    """Unknown: the child has not been applied yet."""
    NOT_REQUESTED = "NotRequested"
    """True: the spec asks for no such child, so there is nothing to apply."""
    NAMESPACE_CLAIMED = "NamespaceClaimed"
    """Accepted is True: the namespace is labelled as this Tenant's (created by it, or adopted)."""
    NAMESPACE_TAKEN = "NamespaceTaken"
    """Accepted and Ready are False: the namespace belongs to another Tenant, or exists and belongs
    to none while ``adopt`` is not set; nothing was changed."""
    INVALID_SPEC = "InvalidSpec"
    """Accepted and Ready are False: the spec fails a check the schema cannot express (e.g. it
    names a system namespace); nothing was changed."""
    QUOTA_NOT_COMPUTED = "QuotaNotComputed"
    """QuotaReady (and Ready) are False: the quota controller has not counted every limit of the
    ResourceQuota yet (a key of ``spec.hard`` is missing from ``status.used``), and until it does the
    API server refuses what that limit counts ("status unknown for quota")."""
    ALL_CHILDREN_READY = "AllChildrenReady"
    """Ready is True: every child is in place."""
    CHILDREN_NOT_READY = "ChildrenNotReady"
    """Ready is False or Unknown: see the child conditions."""


class TenantStatus(Model):
    namespace: str | None = None
    """The tenant's namespace."""
    usage: dict[str, str] = {}
    """Quota use as reported by the ResourceQuota, e.g. ``{"pods": "3/20"}``."""
    observed_generation: int | None = None
    conditions: list[Condition] = CONDITIONS_FIELD


class Tenant(Resource):
    """A tenant: its namespace plus quota, limits, network isolation and RBAC."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        kind="Tenant",
        plural="tenants",
        singular="tenant",
        scope="Cluster",
        short_names=["tn"],
        printer_columns=[
            PrinterColumn(name="Namespace", type="string", json_path=".status.namespace"),
            PrinterColumn(name="Ready", type="string",
                          json_path='.status.conditions[?(@.type=="Ready")].status'),
            PrinterColumn(name="Age", type="date", json_path=".metadata.creationTimestamp"),
        ],
    )
    kind: str = "Tenant"
    spec: TenantSpec = TenantSpec()
    status: TenantStatus | None = None

