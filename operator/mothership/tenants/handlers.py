"""Tenant handlers: kopf triggers around one :func:`reconcile`; the I/O and nothing else.

What a Tenant becomes is ``tenants.builders`` (pure): a Namespace, a
ResourceQuota, a LimitRange, a NetworkPolicy and a RoleBinding, owned by the
(cluster-scoped) Tenant under ``deletionPolicy: Delete``. Its status is ``tenants.status.compute`` (pure).
Here we only apply and report:

- create, update, resume, a watch on the guard rails (server-side selected by
  the tenant label; a quota, limit range, network policy or role binding
  deleted or edited by hand is put back within seconds) and a slow timer (the
  backstop, e.g. for the Namespace itself: every 5 minutes, its first tick
  jittered so the Tenants' timers spread out) call
  :func:`reconcile`: Namespace first (everything else lives in it), then the
  rest concurrently with server-side apply.
- a quota is Ready only once the quota controller has counted every limit
  (``status.counted``). It re-syncs a quota when its ``spec.hard`` changes, and
  otherwise only every 5 minutes, so a quota first synced before the controller
  knew a resource (``count/apps.mothership.dev`` on a cluster whose CRDs are
  younger than its 30 s discovery) would refuse Apps for minutes: while a synced
  quota lacks usage for a key, the reconcile re-applies ``spec.hard`` without
  those keys and at once with them again (:func:`nudge_quota`), every 5 s at
  first, from a 5 s timer that runs only while QuotaReady says QuotaNotComputed;
  a watch event of a quota counted at last rechecks the Tenant at once.
- ``spec.deletionPolicy`` on delete (kopf holds our finalizer until we return):
  ``Delete`` deletes the namespace and with it everything inside, if this
  Tenant created it (an adopted one is kept; its owned guard rails go with the
  Tenant); ``Retain`` first strips the Tenant's ownerReference from every
  child, so the garbage collector has nothing to collect and the tenant's apps
  keep running.

Before anything is applied, the Namespace is read and ``status.claim`` decides
whether it is this Tenant's (new, labelled as its own, or adopted with
``spec.adopt``). A namespace that does not exist is created with a plain
create first, so of two Tenants racing for a name one gets 409 and is then
refused. Any other namespace is refused as NamespaceTaken (Accepted=False,
one Warning Event, not one per recheck) and nothing is touched; a 30 s timer
that runs only while it says NamespaceTaken rechecks it. A system
namespace or the operator's own is refused as InvalidSpec, adopt or not.
Status is written by us under a per-Tenant lock (as for Apps: the timer and
the change handler must not overwrite each other's newer status).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
from pydantic import ValidationError

from mothership import errors, metrics
from mothership import labels as std
from mothership.api.common import (
    Condition,
    ConditionStatus,
    Manifest,
    Owner,
    conditions_of,
    invalid_spec_message,
)
from mothership.api.tenant import DeletionPolicy, Tenant, TenantConditionType, TenantReason
from mothership.children import apply_children
from mothership.kube import KINDS, ApiError, Kube, carries, kind_of, merge_patch
from mothership.tenants import builders, status

logger = logging.getLogger(__name__)

TENANTS = ("mothership.dev", "v1alpha1", "tenants")
PROTECTED_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})
"""Namespaces a Tenant may never claim (the operator's own is added at run time)."""


@dataclass
class Runtime:
    """Per-process memory of the Tenant controller (in kopf's ``memo.tenants``)."""

    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    written: dict[str, Manifest] = field(default_factory=dict)
    """The last status we wrote per Tenant: the base of the next merge patch, and the dedup."""
    known: set[str] = field(default_factory=set)
    built: dict[str, set[str]] = field(default_factory=dict)
    """Per Tenant, the kinds the last reconcile applied: an optional kind that drops out is deleted."""
    nudges: dict[str, tuple[int, float]] = field(default_factory=dict)
    """Per Tenant whose quota is not counted yet: re-applies of ``spec.hard`` so far, and when the next
    is due (``time.monotonic``). Memory only: a restarted operator nudges at once."""

    def lock(self, name: str) -> asyncio.Lock:
        return self.locks.setdefault(name, asyncio.Lock())


def runtime(memo: Any) -> Runtime:
    rt = memo.get("tenants")
    if rt is None:
        rt = memo["tenants"] = Runtime()
    return rt  # type: ignore[no-any-return]


@kopf.on.startup()
async def tenants_startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Watch only the guard rails a Tenant made (server-side label selector), not every one in the cluster."""
    for resource in GUARD_RAILS:
        settings.watching.label_selectors[resource] = std.TENANT
    memo["tenants"] = Runtime()


@kopf.on.resume(*TENANTS)
@kopf.on.create(*TENANTS)
@kopf.on.update(*TENANTS)
async def tenant_changed(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """Create, spec change, operator restart: converge the children and write the status."""
    await _run(dict(body), memo, logger, raise_errors=True)


DRIFT_EVERY = 300.0
"""Seconds between a Tenant's backstop reconciles: minutes, since the watches catch guard-rail drift."""
REFUSED_EVERY = 30.0
"""Seconds between rechecks of a Tenant refused as NamespaceTaken (the namespace may have become free)."""


def drift_delay(**_: Any) -> float:
    """The backstop's first delay, jittered over a whole interval so the Tenants' timers do not tick
    together (the create or resume handler has just reconciled, so there is nothing to hurry)."""
    return DRIFT_EVERY * (0.5 + random.random())  # a spread, not a secret


@kopf.timer(*TENANTS, interval=DRIFT_EVERY, initial_delay=drift_delay, idle=10)
async def tenant_drift(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """The backstop for drift no watch sees (the Namespace itself, whose watch kopf owns)."""
    await _run(dict(body), memo, logger, raise_errors=False)


def _has_condition(status: Mapping[str, Any] | None, type_: str, reason: str) -> bool:
    return any(c.get("type") == type_ and c.get("reason") == reason
               for c in (status or {}).get("conditions") or [])


def namespace_taken(status: Mapping[str, Any], **_: Any) -> bool:
    """Whether a Tenant's status says its namespace is another's (the refused recheck's filter)."""
    return _has_condition(status, TenantConditionType.ACCEPTED.value, TenantReason.NAMESPACE_TAKEN.value)


@kopf.timer(*TENANTS, interval=REFUSED_EVERY, initial_delay=REFUSED_EVERY, idle=10, when=namespace_taken)
async def tenant_refused_recheck(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """While the namespace is taken: recheck it (a refusal posts its Event once, not per tick)."""
    await _run(dict(body), memo, logger, raise_errors=False)


def quota_not_computed(status: Mapping[str, Any], **_: Any) -> bool:
    """Whether a Tenant's status says its quota is not counted yet (the recheck timer's filter)."""
    return _has_condition(status, TenantConditionType.QUOTA_READY.value,
                          TenantReason.QUOTA_NOT_COMPUTED.value)


@kopf.timer(*TENANTS, interval=status.NUDGE_EVERY, initial_delay=status.NUDGE_EVERY, when=quota_not_computed)
async def tenant_quota_recheck(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """While the quota controller has not counted the quota: recheck, and nudge it when due."""
    await _run(dict(body), memo, logger, raise_errors=False)


GUARD_RAILS = (
    ("v1", "resourcequotas"),
    ("v1", "limitranges"),
    ("networking.k8s.io", "v1", "networkpolicies"),
    ("rbac.authorization.k8s.io", "v1", "rolebindings"),
)
"""The namespaced children of a Tenant, watched to put them back: only those with the tenant label, by a
server-side label selector (``tenants_startup``), so the API server sends no other quota, limit range,
network policy or role binding in the cluster."""


async def guard_rail_event(
    event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """A guard rail was deleted or edited by hand: converge its Tenant within seconds.

    Our own applies come back as events too; they still carry what the Tenant
    wants, so they cost one GET and change nothing. A quota the quota controller
    has just counted rechecks a Tenant that says it is not counted.
    """
    tenant_name = (body.metadata.labels or {}).get(std.TENANT)
    if not tenant_name:
        return
    kube: Kube = memo.kube
    owner = await kube.get(KINDS["Tenant"], tenant_name)
    if owner is None or owner["metadata"].get("deletionTimestamp"):
        return  # the Tenant is going (or gone): its policy decides, not drift repair
    if event["type"] != "DELETED":
        try:
            tenant = Tenant.model_validate({k: owner[k] for k in ("apiVersion", "kind", "metadata", "spec")
                                            if k in owner})
        except ValidationError:
            return  # tenant_changed reports an invalid spec
        # Only the namespaced guard rails are compared here; ``created`` shapes the Namespace alone.
        wanted = builders.build_children(tenant, Owner.of(owner), memo.config.operator_namespace,
                                         created=False)
        desired = next((m for m in wanted if m["kind"] == body.get("kind")
                        and m["metadata"]["name"] == body.metadata.name), None)
        if desired is None:
            return
        if carries(dict(body), desired):
            if not _counted_at_last(memo, tenant_name, owner, dict(body)):
                return
            logger.info(f"ResourceQuota {body.metadata.name} is counted: rechecking Tenant {tenant_name}")
            await _run(owner, memo, logger, raise_errors=False)
            return
    logger.info(f"{body.get('kind')} {body.metadata.name} was changed by hand: putting it back")
    await _run(owner, memo, logger, raise_errors=False)


def _counted_at_last(memo: kopf.Memo, tenant_name: str, owner: Manifest, child: Manifest) -> bool:
    """A quota the quota controller has counted, while its Tenant says it is not (or is being reconciled).

    The controller's status write is what makes the Tenant Ready; a reconcile running now may
    have read the quota before it, so that case rechecks too (after it, under the lock).
    """
    if child.get("kind") != "ResourceQuota" or not status.counted(child):
        return False
    rt = runtime(memo)
    said = rt.written.get(tenant_name) or owner.get("status") or {}
    return quota_not_computed(said) or rt.lock(tenant_name).locked()


for _resource in GUARD_RAILS:
    kopf.on.event(*_resource, labels={std.TENANT: kopf.PRESENT})(guard_rail_event)


@kopf.on.event(*TENANTS)
async def tenant_event(event: kopf.RawEvent, name: str, memo: kopf.Memo, **_: Any) -> None:
    """Count Tenants for ``mothership_managed_objects`` and forget a deleted one."""
    rt = runtime(memo)
    if event["type"] == "DELETED":
        rt.known.discard(name)
        rt.locks.pop(name, None)
        rt.written.pop(name, None)
        rt.built.pop(name, None)
        rt.nudges.pop(name, None)
    else:
        rt.known.add(name)
    metrics.MANAGED_OBJECTS.labels("Tenant").set(len(rt.known))


@kopf.on.delete(*TENANTS)
async def tenant_deleted(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """Apply ``deletionPolicy`` before kopf releases the finalizer."""
    kube: Kube = memo.kube
    raw = dict(body)
    namespace = (raw.get("spec") or {}).get("namespace") or body.metadata.name
    policy = (raw.get("spec") or {}).get("deletionPolicy") or DeletionPolicy.RETAIN.value
    with metrics.reconciling("tenant"):
        try:
            if policy == DeletionPolicy.DELETE.value:
                if namespace in _protected(memo):
                    logger.warning("not deleting protected namespace %s", namespace)
                    return
                observed = await kube.get(KINDS["Namespace"], namespace)
                if observed is None:
                    return
                holder = status.holder(observed)
                if holder != body.metadata.name:
                    whose = f"Tenant {holder}'s" if holder else "no Tenant's"
                    logger.info(f"deletionPolicy Delete: namespace {namespace} is {whose}, "
                                f"not this one's; left alone")
                elif not status.created_by(body.metadata.name, body.metadata.uid, observed):
                    logger.info(f"deletionPolicy Delete: namespace {namespace} was adopted, not created, "
                                f"by this Tenant; kept (the Tenant's guard rails go with it)")
                elif await kube.delete(KINDS["Namespace"], namespace):
                    logger.info(f"deletionPolicy Delete: deleting namespace {namespace} and its contents")
            else:
                released = await orphan_children(kube, raw, memo.config.operator_namespace)
                logger.info(f"deletionPolicy Retain: namespace {namespace} kept; "
                            f"released {released} objects from the Tenant")
        except ApiError as exc:
            raise errors.classify(exc) from exc


# --- The reconcile ---------------------------------------------------------------------------


class Refused(kopf.PermanentError):
    """The Tenant was refused (InvalidSpec, NamespaceTaken): recorded as conditions and one Event."""


async def _run(body: Manifest, memo: kopf.Memo, log: Any, *, raise_errors: bool) -> None:
    rt = runtime(memo)
    name = body["metadata"]["name"]
    if body["metadata"].get("deletionTimestamp"):
        return
    with metrics.reconciling("tenant"):
        async with rt.lock(name):
            try:
                new, error = await reconcile(body, memo.kube, memo.config.operator_namespace,
                                             _previous(rt, body), _protected(memo), rt.built, rt.nudges)
            except ApiError as exc:  # reading or creating the Namespace: nothing decided, nothing to write
                new, error = None, errors.classify(exc)
            if new is not None:
                await _write(memo.kube, rt, body, new)
        if error is not None:
            if raise_errors:
                raise error
            if isinstance(error, Refused):
                log.debug(f"still refused: {error}")  # its one Event is posted; a Warning would post another
            else:
                log.warning(f"drift repair failed: {error}")


async def reconcile(
    body: Manifest,
    kube: Kube,
    operator_namespace: str,
    previous: list[Condition],
    protected: frozenset[str] = PROTECTED_NAMESPACES,
    built: dict[str, set[str]] | None = None,
    nudges: dict[str, tuple[int, float]] | None = None,
) -> tuple[Manifest, Exception | None]:
    """Apply the Tenant's children, delete optional ones no longer built; returns (status, error or None).

    ``built`` remembers per Tenant what the last reconcile applied, so an optional
    child is deleted once when the spec stops asking for it (and on the first
    reconcile in this process), not probed on every timer tick. ``nudges`` paces
    :func:`nudge_quota` (None: never nudge).
    """
    meta = body["metadata"]
    generation = meta.get("generation") or 0
    try:
        tenant = Tenant.model_validate({k: body[k] for k in ("apiVersion", "kind", "metadata", "spec")
                                        if k in body})
    except ValidationError as exc:
        return await _refuse(kube, body, generation, TenantReason.INVALID_SPEC, invalid_spec_message(exc),
                             previous)
    namespace = tenant.spec.namespace or meta["name"]
    if namespace in protected:
        return await _refuse(kube, body, generation, TenantReason.INVALID_SPEC,
                             f"spec.namespace: {namespace} is a system or operator namespace; "
                             f"a Tenant may not claim it, adopt or not", previous)
    claim, observed_namespace = await claim_namespace(kube, tenant)
    if not claim.accepted:
        return await _refuse(kube, body, generation, TenantReason.NAMESPACE_TAKEN, claim.message, previous)

    children = builders.build_children(tenant, Owner.of(body), operator_namespace, created=claim.created)
    if claim.adopting and observed_namespace is not None:
        # The first apply of an adoption overwrites the labels only if the namespace is still the one
        # judged unowned: had another Tenant adopted it meanwhile, this is a 409 and the next try refuses.
        children[0]["metadata"]["resourceVersion"] = observed_namespace["metadata"]["resourceVersion"]
    # The Namespace first: everything else lives in it, and would 404 without it.
    first = [m for m in children if not kind_of(m).namespaced]
    rest = [m for m in children if kind_of(m).namespaced]
    outcome = await apply_children(kube, [first, rest])
    applied, observed, failure = outcome.messages, outcome.observed, outcome.failure
    if failure is None:
        await _prune(kube, tenant, {m["kind"] for m in children}, built)
    quota = observed.get("ResourceQuota")
    if quota is not None and nudges is not None:
        wanted = next(m for m in children if m["kind"] == "ResourceQuota")
        quota = await nudge_quota(kube, meta["name"], wanted, quota, nudges, time.monotonic())
    new = status.compute(tenant, generation, applied, quota, _now(), previous, accepted=claim)
    wire = new.wire()
    return wire, (errors.classify(failure) if failure else None)


async def nudge_quota(kube: Kube, name: str, wanted: Manifest, quota: Manifest,
                      nudges: dict[str, tuple[int, float]], now: float) -> Manifest:
    """Get an uncounted quota counted: re-apply its ``spec.hard`` without the uncounted keys, then with them.

    The quota controller counts only the resources it knows (a CRD it learns at its next discovery,
    every 30 s), and re-syncs a quota when ``spec.hard`` changes, else every 5 minutes. So once it
    has synced the quota (``status.hard`` is ``spec.hard``) and still lacks a key's usage, the two
    applies make it sync again, when due (``status.nudge_delay``). Between them, for one round trip,
    those keys are not limited; while they are uncounted, the API server refuses all they count.
    Returns the quota as last applied. A failed apply is left to the next reconcile, which applies
    the whole ``spec.hard`` first in any case.
    """
    if status.counted(quota):
        nudges.pop(name, None)
        return quota
    done, due = nudges.get(name, (0, now))
    missing = status.uncounted(quota)
    if not status.synced(quota) or now < due or not missing:
        return quota  # the controller has not synced this spec.hard yet: its status comes back by the watch
    hard = {k: v for k, v in wanted["spec"]["hard"].items() if k not in missing}
    without = {**wanted, "spec": {**wanted["spec"], "hard": hard}}
    nudges[name] = (done + 1, now + status.nudge_delay(done + 1))
    try:
        await kube.apply(without)
        quota = await kube.apply(wanted)
    except ApiError as exc:
        logger.warning(f"re-applying ResourceQuota {quota['metadata'].get('namespace')}/"
                       f"{quota['metadata']['name']} failed: {exc}")
        return quota
    logger.info(f"ResourceQuota {quota['metadata'].get('namespace')}/{quota['metadata']['name']}: "
                f"the quota controller has not counted {', '.join(missing)}; re-applied spec.hard "
                f"(nudge {done + 1})")
    return quota


async def claim_namespace(kube: Kube, tenant: Tenant) -> tuple[status.Claim, Manifest | None]:
    """Read the Namespace (creating it when absent) and decide the claim; returns it and the Namespace.

    An absent namespace is created with a plain create of what never changes
    (labels and the ``CREATED_BY`` annotation), not an apply: if another Tenant
    created it between our GET and our create, the create is a 409 and the
    claim is decided again on what that Tenant made.
    """
    name = builders.namespace_name(tenant)
    observed = await kube.get(KINDS["Namespace"], name)
    if observed is None:
        observed = await kube.create(builders.namespace_to_create(tenant))
        if observed is None:
            observed = await kube.get(KINDS["Namespace"], name)
    return status.claim(tenant, observed), observed


async def _prune(kube: Kube, tenant: Tenant, kinds: set[str], built: dict[str, set[str]] | None) -> None:
    name = builders.tenant_name(tenant)
    before = None if built is None else built.get(name)
    doomed = [kind for _v, kind, _p in builders.OPTIONAL_CHILDREN
              if kind not in kinds and (before is None or kind in before)]
    await asyncio.gather(*(kube.delete(KINDS[kind], builders.CHILD_NAME, builders.namespace_name(tenant))
                           for kind in doomed))
    if built is not None:
        built[name] = kinds


async def orphan_children(kube: Kube, body: Manifest, operator_namespace: str) -> int:
    """Remove the Tenant's ownerReference from each child (Retain), so GC leaves them alone.

    A merge patch of ``ownerReferences`` with the resourceVersion we read: if
    someone changed the object meanwhile, the 409 retries the delete handler.
    """
    uid = body["metadata"]["uid"]
    try:
        tenant = Tenant.model_validate({k: body[k] for k in ("apiVersion", "kind", "metadata", "spec")
                                        if k in body})
        children = builders.build_children(tenant, Owner.of(body), operator_namespace, created=False)
        targets = [(kind_of(m), m["metadata"]["name"], m["metadata"].get("namespace")) for m in children]
    except ValidationError:
        ns = (body.get("spec") or {}).get("namespace") or body["metadata"]["name"]
        targets = [(KINDS["Namespace"], ns, None)]
    released = 0
    for kind, name, namespace in targets:
        obj = await kube.get(kind, name, namespace)
        if obj is None:
            continue
        refs = obj["metadata"].get("ownerReferences") or []
        kept = [r for r in refs if r.get("uid") != uid]
        if len(kept) == len(refs):
            continue
        await kube.patch(kind, name, namespace, {"metadata": {
            "ownerReferences": kept or None, "resourceVersion": obj["metadata"]["resourceVersion"]}})
        released += 1
    return released


# --- Helpers ------------------------------------------------------------------------------------


async def _refuse(
    kube: Kube, body: Manifest, generation: int, reason: TenantReason, message: str,
    previous: list[Condition],
) -> tuple[Manifest, Exception]:
    """Record a refusal (Accepted and Ready False) and touch nothing; kopf will not retry, the timer rechecks.

    The Warning Event is posted once per refusal, not on every timer tick: only
    when Accepted did not already say the same.
    """
    said = next((c for c in previous if c.type == TenantConditionType.ACCEPTED.value), None)
    if said is None or (said.status, said.reason, said.message) != (ConditionStatus.FALSE, reason.value,
                                                                      message):
        await kube.post_event(body, reason=reason.value, message=message, type="Warning")
    st = status.refused(reason, message, generation, _now(), previous)
    return st.wire(), Refused(f"{reason.value}: {message}")


async def _write(kube: Kube, rt: Runtime, body: Manifest, new: Manifest) -> None:
    name = body["metadata"]["name"]
    old = rt.written.get(name)
    if old is None:
        old = body.get("status") or {}
    if new == old:
        return
    try:
        await kube.patch_status(KINDS["Tenant"], name, None, merge_patch(old, new))
    except ApiError as exc:
        if exc.status == 404:
            return
        raise errors.classify(exc) from exc
    rt.written[name] = new


def _previous(rt: Runtime, body: Mapping[str, Any]) -> list[Condition]:
    return conditions_of(rt.written.get(body["metadata"]["name"]) or body.get("status"))


def _protected(memo: Any) -> frozenset[str]:
    return PROTECTED_NAMESPACES | {memo.config.operator_namespace}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
