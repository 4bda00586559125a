"""A Tenant's status from what happened when its children were applied.

Why pure: the handler applies the children, records for each kind whether the
API server took it (``applied``: kind -> None, or the error message) and reads
the ResourceQuota back; ``compute`` turns that into one condition per child
(NamespaceReady, QuotaReady, LimitsReady, IsolationReady, AccessReady), an
overall Ready, and the quota usage as ``used/hard``. The clock is an argument,
so the same observation gives the same status.

A child the spec does not ask for (no quota, ``isolation.mode: none``, no
owners) is True with reason NotRequested: nothing is missing, and the message
says what that means for the tenant. A wanted child absent from ``applied`` is
Unknown (NotApplied): it has not been tried yet.
Must not know: kopf, the kube client.
"""

from __future__ import annotations

from mothership.api.common import Condition, ConditionStatus, Manifest, make_condition
from mothership.api.tenant import Tenant, TenantConditionType, TenantReason, TenantStatus

from . import builders

T, F, U = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN

CHILD_CONDITIONS: list[tuple[str, TenantConditionType]] = [
    ("Namespace", TenantConditionType.NAMESPACE_READY),
    ("ResourceQuota", TenantConditionType.QUOTA_READY),
    ("LimitRange", TenantConditionType.LIMITS_READY),
    ("NetworkPolicy", TenantConditionType.ISOLATION_READY),
    ("RoleBinding", TenantConditionType.ACCESS_READY),
]
"""Child kind -> the condition that reports on it, in the order conditions are listed."""

_SPEC_FIELD = {v: k for k, v in builders.QUOTA_KEYS.items()}


def usage(quota: Manifest | None) -> dict[str, str]:
    """``used/hard`` per quota entry, keyed by the ``spec.quota`` field name (``{"pods": "3/20"}``)."""
    observed = (quota or {}).get("status") or {}
    hard = observed.get("hard") or {}
    used = observed.get("used") or {}
    out = {_SPEC_FIELD.get(key, key): f"{used.get(key, '0')}/{limit}" for key, limit in hard.items()}
    return {key: out[key] for key in sorted(out)}


def _applied_message(tenant: Tenant, kind: str) -> str:
    ns = builders.namespace_name(tenant)
    where = f"{ns}/{builders.CHILD_NAME}"
    spec = tenant.spec
    if kind == "Namespace":
        return f"Namespace {ns} exists and enforces Pod Security {builders.POD_SECURITY_LEVEL}."
    if kind == "ResourceQuota":
        fields = [f for f in builders.QUOTA_KEYS if getattr(spec.quota, f) is not None]
        return f"ResourceQuota {where} limits {', '.join(fields)}."
    if kind == "LimitRange":
        return f"LimitRange {where} gives containers that set none the default requests and limits."
    if kind == "NetworkPolicy":
        return (f"NetworkPolicy {where} admits traffic only from the namespace itself, the operator "
                f"and {len(spec.isolation.allow_from)} allowed namespace selector(s).")
    return f"RoleBinding {where} grants {builders.OWNER_ROLE} to {len(spec.owners)} owner(s)."


_NOT_REQUESTED = {
    "ResourceQuota": "spec.quota sets no limit, so the namespace has no ResourceQuota.",
    "NetworkPolicy": "isolation.mode is none: pods in any namespace may reach this namespace's pods.",
    "RoleBinding": "spec.owners is empty, so no one is granted edit in the namespace.",
}


def _child(tenant: Tenant, kind: str, applied: dict[str, str | None]) -> tuple[ConditionStatus, str, str]:
    if kind not in builders.wanted_kinds(tenant):
        return T, TenantReason.NOT_REQUESTED.value, _NOT_REQUESTED[kind]
    name = builders.namespace_name(tenant) if kind == "Namespace" else (
        f"{builders.namespace_name(tenant)}/{builders.CHILD_NAME}")
    if kind not in applied:
        return U, TenantReason.NOT_APPLIED.value, f"{kind} {name} has not been applied yet."
    error = applied[kind]
    if error is not None:
        return F, TenantReason.APPLY_FAILED.value, f"{kind} {name} could not be applied: {error}"
    return T, TenantReason.APPLIED.value, _applied_message(tenant, kind)


def compute(
    tenant: Tenant,
    generation: int,
    applied: dict[str, str | None],
    quota: Manifest | None,
    now: str,
    previous: list[Condition],
) -> TenantStatus:
    """The Tenant's status: namespace, quota usage, and a condition per child plus Ready.

    ``applied`` maps a child kind to None (applied fine) or the API server's
    error message; ``quota`` is the ResourceQuota as read back (None when there
    is none); ``now`` is an RFC 3339 time, used only for conditions whose
    status changed since ``previous``.
    """
    children = [(type_, _child(tenant, kind, applied)) for kind, type_ in CHILD_CONDITIONS]
    failed = [message for _, (status, _, message) in children if status is F]
    waiting = [type_.value for type_, (status, _, _) in children if status is U]
    if failed:
        ready = (F, TenantReason.CHILDREN_NOT_READY.value, " ".join(failed))
    elif waiting:
        ready = (U, TenantReason.CHILDREN_NOT_READY.value, f"Waiting for {', '.join(waiting)}.")
    else:
        ready = (T, TenantReason.ALL_CHILDREN_READY.value,
                 f"Namespace {builders.namespace_name(tenant)} and its guard rails are in place.")
    conditions = [
        make_condition(type_.value, status, reason, message,
                       generation=generation, now=now, previous=previous)
        for type_, (status, reason, message) in [(TenantConditionType.READY, ready), *children]
    ]
    return TenantStatus(
        namespace=builders.namespace_name(tenant),
        usage=usage(quota),
        observed_generation=generation,
        conditions=conditions,
    )
