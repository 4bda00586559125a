"""A Tenant's claim on its namespace, and its status from what happened when its children were applied.

Why pure: before anything is applied, the handler reads the Namespace (one
GET) and ``claim`` decides whether this Tenant may have it, from its labels
and annotations alone: a namespace that does not exist yet, or is labelled
``mothership.dev/tenant`` with this Tenant's name, is claimed; an unlabelled
one only with ``spec.adopt``; one labelled for another Tenant never. A refusal
is ``refused``: Accepted and Ready False, and nothing is applied. Whether the
Tenant *created* the namespace (so ``deletionPolicy: Delete`` may delete it)
is the ``CREATED_BY`` annotation, which is written in the very request that
creates the namespace, so an operator dying at any point cannot lose it.

Then the handler applies the children, records for each kind whether the
API server took it (``applied``: kind -> None, or the error message) and reads
the ResourceQuota back; ``compute`` turns that into one condition per child
(NamespaceReady, QuotaReady, LimitsReady, IsolationReady, AccessReady), an
overall Ready, and the quota usage as ``used/hard``. The clock is an argument,
so the same observation gives the same status.

A quota is ready only once the quota controller has counted it: every key
of its ``spec.hard`` is in ``status.used`` (``uncounted``). Until then the API
server refuses whatever an uncounted limit counts ("status unknown for quota"),
so QuotaReady and Ready are False, QuotaNotComputed. ``nudge_delay`` paces the
handler's re-applies of ``spec.hard`` that make the quota controller count it
again (it re-syncs a quota when ``spec.hard`` changes, else every 5 minutes).

A child the spec does not ask for (no quota, ``isolation.mode: none``, no
owners) is True with reason NotRequested: nothing is missing, and the message
says what that means for the tenant. A wanted child absent from ``applied`` is
Unknown (NotApplied): it has not been tried yet.
Must not know: kopf, the kube client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mothership import labels as std
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


# --- The claim on the namespace ---------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """Whether a Tenant may have its namespace, as :func:`claim` decided from the Namespace."""

    accepted: bool
    message: str
    """For the Accepted condition: whose the namespace is, and what the tenant can do about it."""
    created: bool = False
    """The Tenant created the namespace (or is about to): only then may ``Delete`` delete it."""
    adopting: bool = False
    """Accepted, and the namespace is not labelled as this Tenant's yet: the first apply of an adoption."""
    owner: str | None = None
    """When refused, the Tenant the namespace belongs to (None: it belongs to none)."""


def holder(namespace: Mapping[str, Any] | None) -> str | None:
    """The Tenant a Namespace is labelled as belonging to, if any."""
    labels = ((namespace or {}).get("metadata") or {}).get("labels") or {}
    value = labels.get(std.TENANT)
    return str(value) if value else None


def created_by(tenant_name: str, uid: str | None, namespace: Mapping[str, Any]) -> bool:
    """Whether the Tenant ``tenant_name`` (with ``uid``) created this Namespace, which it holds.

    The ``CREATED_BY`` annotation says so. A namespace that predates the
    annotation counts as created when it carries the Tenant's own ownerReference:
    that is what made ``Delete`` remove it before, and it is put there only by the
    Tenant's apply.
    """
    meta = namespace.get("metadata") or {}
    if holder(namespace) != tenant_name:
        return False
    annotations = meta.get("annotations") or {}
    if builders.CREATED_BY in annotations:
        return bool(annotations[builders.CREATED_BY] == tenant_name)
    return uid is not None and any(ref.get("uid") == uid for ref in meta.get("ownerReferences") or [])


def claim(tenant: Tenant, namespace: Mapping[str, Any] | None) -> Claim:
    """May ``tenant`` have its namespace, as the API server has it (None: it does not exist)?

    - absent: yes, and it creates it;
    - labelled as this Tenant's: yes (created or adopted, as before);
    - labelled as another Tenant's: no, NamespaceTaken, ``adopt`` or not;
    - unlabelled: only with ``spec.adopt``, and never as created.
    """
    name = builders.namespace_name(tenant)
    me = builders.tenant_name(tenant)
    uid = tenant.metadata.get("uid")
    created = (f"Namespace {name} was created by this Tenant; deletionPolicy Delete deletes it with "
               f"the Tenant.")
    adopted = (f"Namespace {name} is this Tenant's, adopted: it was not created by this Tenant, so deleting "
               f"the Tenant never deletes it, whatever deletionPolicy says.")
    if namespace is None:
        return Claim(True, created, created=True)
    owner = holder(namespace)
    if owner == me:
        if created_by(me, uid, namespace):
            return Claim(True, created, created=True)
        return Claim(True, adopted)
    if owner is not None:
        return Claim(False, f"Namespace {name} belongs to Tenant {owner} (label {std.TENANT}={owner}); "
                            f"nothing was changed. Choose another spec.namespace; spec.adopt cannot take "
                            f"a namespace from another Tenant.", owner=owner)
    if tenant.spec.adopt:
        return Claim(True, adopted, adopting=True)
    return Claim(False, f"Namespace {name} already exists and belongs to no Tenant; nothing was changed. "
                        f"Set spec.adopt: true to adopt it (its pods then fall under this Tenant's quota, "
                        f"limits, isolation and owners), or choose another spec.namespace.")


def refused(reason: TenantReason, message: str, generation: int, now: str,
            previous: list[Condition]) -> TenantStatus:
    """The status of a Tenant refused for good: Accepted and Ready False with ``reason``.

    Nothing was applied, so there is no namespace or usage to report; the
    other conditions stay as they were.
    """
    conditions = [
        make_condition(type_.value, ConditionStatus.FALSE, reason.value, message,
                       generation=generation, now=now, previous=previous)
        for type_ in (TenantConditionType.READY, TenantConditionType.ACCEPTED)
    ]
    decided = {c.type for c in conditions}
    others = [c for c in previous if c.type not in decided]
    return TenantStatus(observed_generation=generation, conditions=[*conditions, *others])


# --- The children ------------------------------------------------------------------------------


def usage(quota: Manifest | None) -> dict[str, str]:
    """``used/hard`` per quota entry, keyed by the ``spec.quota`` field name (``{"pods": "3/20"}``)."""
    observed = (quota or {}).get("status") or {}
    hard = observed.get("hard") or {}
    used = observed.get("used") or {}
    out = {_SPEC_FIELD.get(key, key): f"{used.get(key, '0')}/{limit}" for key, limit in hard.items()}
    return {key: out[key] for key in sorted(out)}


def uncounted(quota: Manifest | None) -> list[str]:
    """The keys of the quota's ``spec.hard`` its ``status.used`` lacks, sorted: not counted yet."""
    if quota is None:
        return []
    hard = (quota.get("spec") or {}).get("hard") or {}
    used = (quota.get("status") or {}).get("used") or {}
    return sorted(key for key in hard if key not in used)


def counted(quota: Manifest | None) -> bool:
    """Whether the quota controller has counted every limit of the quota (None: no quota read back)."""
    return quota is not None and not uncounted(quota)


def synced(quota: Manifest | None) -> bool:
    """Whether the quota controller has synced the quota's current ``spec.hard`` (``status.hard`` equals it).

    Only then does a key missing from ``status.used`` mean the controller cannot count it (it
    does not know the resource yet, e.g. a CRD younger than its 30 s discovery), rather than that
    it has not got round to the quota yet.
    """
    if quota is None:
        return False
    hard = (quota.get("spec") or {}).get("hard") or {}
    return bool(((quota.get("status") or {}).get("hard") or {}) == hard)


NUDGE_EVERY = 5.0
"""Seconds between re-applies of an uncounted quota's ``spec.hard``, for the first minute: the quota
controller discovers a new CRD within 30 s."""
NUDGE_MAX = 300.0
"""The slowest pace, that of the quota controller's own full re-sync."""


def nudge_delay(nudges: int) -> float:
    """Seconds to wait after the ``nudges``-th re-apply of an uncounted quota before the next one.

    Every 5 s for a minute, then doubling up to 5 minutes: a quota controller that has not counted
    a limit by then is not about to (not running, or the resource is not served).
    """
    slow = nudges - int(60 / NUDGE_EVERY)
    return NUDGE_EVERY if slow < 0 else min(NUDGE_EVERY * 2.0 ** (slow + 1), NUDGE_MAX)


_COUNTED_OBJECTS = {builders.APPS_QUOTA_KEY: "App"}


def _not_counted_message(tenant: Tenant, quota: Manifest | None) -> str:
    ns = builders.namespace_name(tenant)
    where = f"{ns}/{builders.CHILD_NAME}"
    missing = uncounted(quota)
    keys = missing or list(((quota or {}).get("spec") or {}).get("hard") or {})
    kinds = sorted({_COUNTED_OBJECTS.get(key, "Pod") for key in keys} or {"Pod"})
    refused = f"until it does the API server refuses new {' and '.join(f'{k}s' for k in kinds)} in {ns} " \
              f"(status unknown for quota)"
    if not synced(quota) or not missing:
        return (f"ResourceQuota {where} is not computed yet: the quota controller has not counted it, and "
                f"{refused}. This takes seconds; if it lasts, check that kube-controller-manager runs.")
    return (f"ResourceQuota {where} is not computed yet: the quota controller has not counted "
            f"{', '.join(missing)}, and {refused}. On a cluster whose CRDs are new it learns them within "
            f"a minute; the operator re-applies the quota until it has counted them.")


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


def _child(tenant: Tenant, kind: str, applied: dict[str, str | None],
           quota: Manifest | None) -> tuple[ConditionStatus, str, str]:
    if kind not in builders.wanted_kinds(tenant):
        return T, TenantReason.NOT_REQUESTED.value, _NOT_REQUESTED[kind]
    name = builders.namespace_name(tenant) if kind == "Namespace" else (
        f"{builders.namespace_name(tenant)}/{builders.CHILD_NAME}")
    if kind not in applied:
        return U, TenantReason.NOT_APPLIED.value, f"{kind} {name} has not been applied yet."
    error = applied[kind]
    if error is not None:
        return F, TenantReason.APPLY_FAILED.value, f"{kind} {name} could not be applied: {error}"
    if kind == "ResourceQuota" and not counted(quota):
        return F, TenantReason.QUOTA_NOT_COMPUTED.value, _not_counted_message(tenant, quota)
    return T, TenantReason.APPLIED.value, _applied_message(tenant, kind)


def compute(
    tenant: Tenant,
    generation: int,
    applied: dict[str, str | None],
    quota: Manifest | None,
    now: str,
    previous: list[Condition],
    *,
    accepted: Claim,
) -> TenantStatus:
    """The Tenant's status: namespace, quota usage, Accepted, and a condition per child plus Ready.

    ``applied`` maps a child kind to None (applied fine) or the API server's
    error message; ``quota`` is the ResourceQuota as read back (None when there
    is none; an applied one is ready only once :func:`counted`); ``now`` is an
    RFC 3339 time, used only for conditions whose status changed since
    ``previous``; ``accepted`` is the claim that let the children be applied (a
    refused one is :func:`refused` instead).
    """
    children = [(type_, _child(tenant, kind, applied, quota)) for kind, type_ in CHILD_CONDITIONS]
    failed = [(reason, message) for _, (status, reason, message) in children if status is F]
    waiting = [type_.value for type_, (status, _, _) in children if status is U]
    if failed:
        uncounted_only = {reason for reason, _ in failed} == {TenantReason.QUOTA_NOT_COMPUTED.value}
        ready = (F, TenantReason.QUOTA_NOT_COMPUTED.value if uncounted_only
                 else TenantReason.CHILDREN_NOT_READY.value, " ".join(message for _, message in failed))
    elif waiting:
        ready = (U, TenantReason.CHILDREN_NOT_READY.value, f"Waiting for {', '.join(waiting)}.")
    else:
        ready = (T, TenantReason.ALL_CHILDREN_READY.value,
                 f"Namespace {builders.namespace_name(tenant)} and its guard rails are in place.")
    claimed = (T, TenantReason.NAMESPACE_CLAIMED.value, accepted.message)
    conditions = [
        make_condition(type_.value, status, reason, message,
                       generation=generation, now=now, previous=previous)
        for type_, (status, reason, message) in [(TenantConditionType.READY, ready),
                                                  (TenantConditionType.ACCEPTED, claimed), *children]
    ]
    return TenantStatus(
        namespace=builders.namespace_name(tenant),
        usage=usage(quota),
        observed_generation=generation,
        conditions=conditions,
    )
