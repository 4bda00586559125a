"""App handlers: kopf triggers around one :func:`reconcile`; the I/O and nothing else.

What an App becomes is decided by ``apps.builders`` (pure) and what its status
says by ``apps.status.compute`` (pure, the one writer of ``phase``). This
module only moves data between them and the API server:

- ``@kopf.on.create/update/resume`` on Apps, and drift repair, call the same
  :func:`reconcile`: validate the spec into the model, build the children,
  server-side apply each (the response is the read-back), delete optional
  children no longer built, look for what the schema cannot catch, compute and
  write the status.
- ``@kopf.on.event`` on every child kind (watched server-side filtered by
  ``app.kubernetes.io/managed-by=mothership``) finds the owning App in the
  ``app_index`` (so no GET), re-applies when the child was deleted or no longer
  carries what we applied (a hand edit), and otherwise just refreshes the App's
  status from the Deployment's, so ``phase`` follows a rollout as it happens.
- ``@kopf.on.event`` on the Apps' pods turns kubelet waiting reasons
  (``CreateContainerConfigError`` for a missing Secret or a root-only image,
  image pull errors, crash loops) into Degraded problems.

Status is written by us, under a per-App lock, with a merge patch on the status
subresource — not through kopf's ``patch``: kopf applies that after the handler
returns, so a Deployment event handled in between could have its fresher status
overwritten by an older one. The handlers return None (kopf would store return
values under ``status``, which our structural schema prunes).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
from pydantic import ValidationError

from mothership import errors, metrics
from mothership import labels as std
from mothership.api.app import App, AppPhase, AppStatus
from mothership.api.common import (
    Condition,
    ConditionStatus,
    Manifest,
    Owner,
    conditions_of,
    invalid_spec_message,
)
from mothership.apps import builders, status
from mothership.children import apply_children
from mothership.kube import FIELD_MANAGER, KINDS, ApiError, Kube, carries, managers_of, merge_patch

logger = logging.getLogger(__name__)

APPS = ("mothership.dev", "v1alpha1", "apps")
MANAGED = {std.MANAGED_BY: std.MANAGER}
SELECTOR = f"{std.MANAGED_BY}={std.MANAGER}"

CHILDREN: dict[str, tuple[str, str] | tuple[str, str, str]] = {
    "Deployment": ("apps", "v1", "deployments"),
    "Service": ("v1", "services"),
    "Ingress": ("networking.k8s.io", "v1", "ingresses"),
    "HorizontalPodAutoscaler": ("autoscaling", "v2", "horizontalpodautoscalers"),
    "PodDisruptionBudget": ("policy", "v1", "poddisruptionbudgets"),
}
"""Every kind an App may own, as kopf resource selectors (group, version, plural)."""

POD_PROBLEMS = {
    "CreateContainerConfigError", "CreateContainerError", "RunContainerError", "ImagePullBackOff",
    "ErrImagePull", "InvalidImageName", "CrashLoopBackOff",
}
"""Container waiting reasons that mean "this will not fix itself": the App turns Degraded."""

Key = tuple[str, str]
Problem = tuple[str, str]


@dataclass
class Runtime:
    """Per-process memory of the App controller (in kopf's ``memo.apps``)."""

    locks: dict[Key, asyncio.Lock] = field(default_factory=dict)
    written: dict[Key, Manifest] = field(default_factory=dict)
    """The last status we wrote per App: the base of the next merge patch, and the dedup."""
    applied: dict[Key, dict[str, str | None]] = field(default_factory=dict)
    """Per App, per child kind: None when the last apply worked, else the error message."""
    announced: dict[Key, set[str]] = field(default_factory=dict)
    """Problem reasons already posted as Events, so each is posted once per occurrence."""
    pods: dict[Key, dict[str, list[Problem]]] = field(default_factory=dict)
    """Per App, per pod name: the problems its containers report."""
    phases: dict[Key, str] = field(default_factory=dict)
    released: set[Key] = field(default_factory=set)
    """Autoscaled Apps whose Deployment's ``spec.replicas`` we no longer own (or never did):
    no handover needed, so no GET. Forgotten whenever we apply a fixed count again."""

    def lock(self, key: Key) -> asyncio.Lock:
        return self.locks.setdefault(key, asyncio.Lock())

    def forget(self, key: Key) -> None:
        for table in (self.locks, self.written, self.applied, self.announced, self.pods, self.phases):
            table.pop(key, None)
        self.released.discard(key)
        self.count_phases()

    def count_phases(self) -> None:
        counts: dict[str, int] = {}
        for phase in self.phases.values():
            counts[phase] = counts.get(phase, 0) + 1
        metrics.set_counts(metrics.APPS, counts, tuple(p.value for p in AppPhase))


def runtime(memo: Any) -> Runtime:
    rt = memo.get("apps")
    if rt is None:  # handlers only run after startup; this is for direct calls in tests
        rt = memo["apps"] = Runtime()
    return rt  # type: ignore[no-any-return]


@kopf.on.startup()
async def apps_startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Watch only our children (server-side label selector), and set up the controller's memory."""
    for selector in CHILDREN.values():
        settings.watching.label_selectors[selector] = SELECTOR
    settings.watching.label_selectors["v1", "pods"] = SELECTOR
    memo["apps"] = Runtime()


# --- Indexes: what exists, without a GET -----------------------------------------------


@kopf.index(*APPS)
def app_index(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Key, Manifest]:
    """Each App's identity, spec and status, so a child's event finds its owner without a GET."""
    return {(namespace or "", name): _snapshot(body)}


def _child_index(kind: str) -> None:
    def index(namespace: str | None, name: str, meta: kopf.Meta, **_: Any) -> dict[Key, str]:
        return {(namespace or "", name): _owner_uid(meta) or ""}

    kopf.index(*CHILDREN[kind], labels=MANAGED, id=f"managed_{kind.lower()}")(index)


for _kind in CHILDREN:
    _child_index(_kind)


# --- Triggers ----------------------------------------------------------------------------


@kopf.on.resume(*APPS)
@kopf.on.create(*APPS)
@kopf.on.update(*APPS)
async def app_changed(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **kwargs: Any) -> None:
    """Create, spec change and operator restart: reconcile, write status, raise what kopf should retry."""
    rt = runtime(memo)
    key = (body.metadata.namespace or "", body.metadata.name or "")
    with metrics.reconciling("app"):
        async with rt.lock(key):
            new, error = await reconcile(dict(body), memo.kube, rt, _indexes(kwargs), logger)
            await _write(memo.kube, rt, dict(body), new)
        if error is not None:
            raise error


@kopf.on.event(*APPS)
async def app_event(
    event: kopf.RawEvent, namespace: str | None, name: str, memo: kopf.Memo, **kwargs: Any
) -> None:
    """Keep the apps-by-phase gauge and forget a deleted App's memory."""
    rt = runtime(memo)
    key = (namespace or "", name)
    if event["type"] == "DELETED":
        rt.forget(key)
    else:
        phase = ((event["object"] or {}).get("status") or {}).get("phase")
        if phase and rt.phases.get(key) != phase:
            rt.phases[key] = phase
            rt.count_phases()
    metrics.MANAGED_OBJECTS.labels("App").set(len(kwargs["app_index"]))


async def child_event(
    event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **kwargs: Any
) -> None:
    """A child changed or vanished: put it back if it drifted, else follow its status."""
    kind = body.get("kind") or _kind_of(kwargs)
    metrics.MANAGED_OBJECTS.labels(kind).set(len(kwargs.get(f"managed_{kind.lower()}", ())))
    owner = _owner(body, kwargs["app_index"])
    if owner is None:
        return
    rt = runtime(memo)
    kube: Kube = memo.kube
    key = (owner["metadata"]["namespace"], owner["metadata"]["name"])
    deleted = event["type"] == "DELETED"
    if deleted:
        # The App may be going away too (GC deletes its children): ask the server, not the index.
        fresh = await kube.get(KINDS["App"], key[1], key[0])
        if fresh is None or fresh["metadata"].get("deletionTimestamp"):
            return
        if fresh["metadata"]["uid"] != owner["metadata"]["uid"]:
            return
        owner = dict(fresh)
    async with rt.lock(key):
        desired = _desired(owner, kind, body.metadata.name or "")
        if desired is None and not deleted:
            return  # not a child this App builds (any more): the next reconcile deletes it
        if deleted or (desired is not None and not carries(dict(body), desired)):
            with metrics.reconciling("app"):
                logger.info("%s %s was %s by hand; putting it back", kind, body.metadata.name,
                            "deleted" if deleted else "changed")
                new, error = await reconcile(owner, kube, rt, _indexes(kwargs), logger)
                await _write(kube, rt, owner, new)
            if error is not None:
                logger.warning("drift repair of %s/%s failed: %s", *key, error)
        elif kind == "Deployment":
            with metrics.reconciling("app"):
                refreshed = await _status_only(owner, dict(body), kube, rt)
                if refreshed is not None:
                    await _write(kube, rt, owner, refreshed)


for _kind, _selector in CHILDREN.items():
    kopf.on.event(*_selector, labels=MANAGED, id=f"drift_{_kind.lower()}")(child_event)


@kopf.on.event("v1", "pods", labels=MANAGED)
async def pod_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """Turn container waiting reasons of an App's pods into Degraded problems on the App."""
    labels = body.metadata.labels or {}
    app_name = labels.get(std.INSTANCE)
    namespace = body.metadata.namespace or ""
    if not app_name or labels.get(std.NAME) != app_name or std.COMPONENT in labels:
        return  # not an App's pod (a LoadTest worker has name mothership-loadtest and a component)
    owner = _first(kwargs["app_index"], (namespace, app_name))
    if owner is None:
        return
    rt = runtime(memo)
    key = (namespace, app_name)
    pods = rt.pods.setdefault(key, {})
    found = [] if event["type"] == "DELETED" else pod_problems(dict(body))
    if pods.get(body.metadata.name or "", []) == found:
        return
    if found:
        pods[body.metadata.name or ""] = found
    else:
        pods.pop(body.metadata.name or "", None)
    async with rt.lock(key):
        with metrics.reconciling("app"):
            new = await _status_only(owner, None, memo.kube, rt)
            if new is not None:
                await _write(memo.kube, rt, owner, new)


@kopf.timer(*APPS, interval=15, initial_delay=15, idle=5,
            when=lambda status, **_: status.get("phase") == AppPhase.DEGRADED)
async def degraded_recheck(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **kwargs: Any) -> None:
    """A Degraded App may heal without any event we watch (the missing Secret gets created)."""
    rt = runtime(memo)
    key = (body.metadata.namespace or "", body.metadata.name or "")
    async with rt.lock(key):
        with metrics.reconciling("app"):
            new, _error = await reconcile(dict(body), memo.kube, rt, _indexes(kwargs), logger)
            await _write(memo.kube, rt, dict(body), new)


# --- The reconcile -------------------------------------------------------------------------


async def reconcile(
    body: Manifest,
    kube: Kube,
    rt: Runtime,
    indexes: Mapping[str, Any],
    log: logging.Logger | logging.LoggerAdapter[Any],
) -> tuple[Manifest, Exception | None]:
    """Converge an App's children and compute its status; returns (status, error for kopf or None).

    The caller writes the status (under the App's lock) and raises the error:
    a permanent error is already recorded as a condition, a temporary one retries.
    """
    meta = body["metadata"]
    key = (meta["namespace"], meta["name"])
    generation = meta.get("generation")
    previous = _previous(rt, body)
    try:
        app = App.model_validate({k: body[k] for k in ("apiVersion", "kind", "metadata", "spec")})
    except ValidationError as exc:
        message = invalid_spec_message(exc)
        await _announce(kube, rt, body, [("InvalidSpec", message)])
        return invalid_status(generation, message, previous), kopf.PermanentError(message)

    children = builders.build_children(app, Owner.of(body))
    built = {m["kind"] for m in children}
    handover = await hand_over_replicas(kube, rt, app, Owner.of(body), key)
    if handover is not None:  # applied now, the Deployment could drop to one replica: not yet
        children = [m for m in children if m["kind"] != "Deployment"]
    outcome = await apply_children(kube, [children])
    if handover is not None:
        outcome.messages["Deployment"] = errors.classify(handover).args[0]
        outcome.failure = outcome.failure or handover
    elif app.spec.autoscale is None:
        rt.released.discard(key)  # a fixed count is (or is about to be) ours again
    applied, failure = outcome.messages, outcome.failure
    deployment = outcome.observed.get("Deployment")
    await _prune(kube, key, built, indexes)
    rt.applied[key] = applied

    problems = [*await missing_references(kube, app, key[0]), *_pod_problems(rt, key)]
    problems += [("ApplyFailed", f"{kind}: {msg}") for kind, msg in applied.items() if msg]
    await _announce(kube, rt, body, problems)
    new = status.compute(app, generation or 0, deployment, problems, _now(), previous)
    return new.wire(), (errors.classify(failure) if failure else None)


async def hand_over_replicas(kube: Kube, rt: Runtime, app: App, owner: Owner, key: Key) -> ApiError | None:
    """Before an autoscaled App's Deployment is applied without ``replicas``, hand the field over.

    If our field manager still owns ``spec.replicas`` (the App had a fixed count),
    dropping it from our apply would make the API server delete it, and the
    Deployment would fall to the default of one replica until the HPA noticed.
    So another manager, ``HANDOVER_MANAGER``, first applies the live count (see
    ``builders.build_replicas_handover``); the field then stays with it when our
    apply lets go, and the HPA rescales from there.

    Decided from managedFields, so it is idempotent and safe across a restart: if
    the operator dies between the two applies, we still own the field, and the
    next reconcile hands it over again (the same count) before applying. Returns
    the API error that stopped the handover; the Deployment must then wait.
    """
    if app.spec.autoscale is None or key in rt.released:
        return None
    try:
        live = await kube.get(KINDS["Deployment"], builders.child_name(key[1]), key[0])
        if live is not None and FIELD_MANAGER in managers_of(live, "spec", "replicas"):
            count = (live.get("spec") or {}).get("replicas")
            handover = builders.build_replicas_handover(app, owner, count if isinstance(count, int) else 1)
            await kube.apply(handover, field_manager=builders.HANDOVER_MANAGER)
            logger.info("app %s/%s: spec.replicas (%s) handed over to the autoscaler", *key,
                        handover["spec"]["replicas"])
    except ApiError as exc:
        return exc
    # A co-owner now keeps the count whenever ours lets go (only our own apply of a fixed
    # count could take it back, and that clears this), so later reconciles skip the GET.
    rt.released.add(key)
    return None


async def _status_only(
    owner: Manifest, deployment: Manifest | None, kube: Kube, rt: Runtime
) -> Manifest | None:
    """Recompute the status from a fresh Deployment (or the last one) without touching children."""
    meta = owner["metadata"]
    key = (meta["namespace"], meta["name"])
    try:
        app = App.model_validate({k: owner[k] for k in ("apiVersion", "kind", "metadata", "spec")})
    except ValidationError:
        return None  # the App handler owns the InvalidSpec status
    if deployment is None:
        deployment = await kube.get(KINDS["Deployment"], builders.child_name(key[1]), key[0])
    applied = rt.applied.get(key, {})
    problems = [*await missing_references(kube, app, key[0]), *_pod_problems(rt, key)]
    problems += [("ApplyFailed", f"{kind}: {msg}") for kind, msg in applied.items() if msg]
    await _announce(kube, rt, owner, problems)
    new = status.compute(app, meta.get("generation") or 0, deployment, problems, _now(),
                         _previous(rt, owner))
    return new.wire()


async def _prune(kube: Kube, key: Key, built: set[str], indexes: Mapping[str, Any]) -> None:
    """Delete optional children this App no longer builds (expose removed -> Ingress deleted).

    The child indexes say what exists, so an App that never had an Ingress costs no call.
    """
    name = builders.child_name(key[1])
    doomed = []
    for _api_version, kind, _plural in builders.OPTIONAL_CHILDREN:
        if kind in built:
            continue
        index = indexes.get(f"managed_{kind.lower()}")
        if index is None or (key[0], name) in index:
            doomed.append(kube.delete(KINDS[kind], name, key[0]))
    await asyncio.gather(*doomed)


async def missing_references(kube: Kube, app: App, namespace: str) -> list[Problem]:
    """Secrets and ConfigMaps the App reads that do not exist: the schema cannot know."""
    wanted: dict[tuple[str, str], str] = {}
    for source in app.spec.env_from:
        if source.secret_ref:
            wanted.setdefault(("Secret", source.secret_ref), "envFrom")
        if source.config_map_ref:
            wanted.setdefault(("ConfigMap", source.config_map_ref), "envFrom")
    for var in app.spec.env:
        ref = var.value_from
        if ref is not None and ref.secret_key_ref:
            wanted.setdefault(("Secret", ref.secret_key_ref.name), f"env {var.name}")
        if ref is not None and ref.config_map_key_ref:
            wanted.setdefault(("ConfigMap", ref.config_map_key_ref.name), f"env {var.name}")
    if not wanted:
        return []
    found = await asyncio.gather(*(kube.get(KINDS[k], n, namespace) for k, n in wanted))
    return [
        (f"{kind}NotFound",
         f"{kind} {name} (used by {where}) does not exist in namespace {namespace}; "
         f"create it, or remove it from the App's spec")
        for ((kind, name), where), obj in zip(wanted.items(), found, strict=True) if obj is None
    ]


def pod_problems(pod: Manifest) -> list[Problem]:
    """What a pod's containers say will not fix itself, as (reason, message) pairs."""
    out: list[Problem] = []
    pod_status = pod.get("status") or {}
    name = pod.get("metadata", {}).get("name", "?")
    statuses = [*(pod_status.get("initContainerStatuses") or []),
                *(pod_status.get("containerStatuses") or [])]
    for cs in statuses:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason not in POD_PROBLEMS:
            continue
        message = waiting.get("message") or reason
        if "runAsNonRoot" in message and "root" in message:
            out.append(("ImageRunsAsRoot",
                        f"pod {name}: {message}; use an image with a non-root USER, "
                        f"or set spec.securityContext.runAsUser"))
        elif "not found" in message and ("secret" in message or "configmap" in message.lower()):
            out.append(("ReferenceNotFound", f"pod {name}: {message}"))
        else:
            out.append((reason, f"pod {name}, container {cs.get('name', '?')}: {message}"))
    return out




def invalid_status(generation: int | None, message: str, previous: list[Condition]) -> Manifest:
    """The status of an App whose spec the model refuses: Failed, Ready=False/InvalidSpec, nothing touched."""
    now = _now()
    ready = Condition(type="Ready", status=ConditionStatus.FALSE, reason="InvalidSpec",
                      message=message, observed_generation=generation, last_transition_time=now)
    for old in previous:
        if old.type == "Ready" and old.status == ready.status and old.reason == ready.reason:
            ready.last_transition_time = old.last_transition_time
    others = [c for c in previous if c.type != "Ready"]
    return AppStatus(phase=AppPhase.FAILED, observed_generation=generation,
                     conditions=[ready, *others]).wire()


# --- Helpers --------------------------------------------------------------------------------


async def _write(kube: Kube, rt: Runtime, body: Manifest, new: Manifest) -> None:
    """Merge-patch the status if it changed; log a phase transition once."""
    meta = body["metadata"]
    key = (meta["namespace"], meta["name"])
    old = rt.written.get(key)
    if old is None:
        old = body.get("status") or {}
    if (new.get("observedGeneration") or 0) < (old.get("observedGeneration") or 0):
        return  # computed from an older spec than what is already recorded
    if new == old:
        rt.written[key] = new
        return
    try:
        await kube.patch_status(KINDS["App"], key[1], key[0], merge_patch(old, new))
    except ApiError as exc:
        if exc.status == 404:
            return  # the App is gone
        raise errors.classify(exc) from exc
    rt.written[key] = new
    if old.get("phase") != new.get("phase"):
        logger.info("app %s/%s: phase %s -> %s", *key, old.get("phase") or "-", new.get("phase"))
        rt.phases[key] = new["phase"]
        rt.count_phases()


async def _announce(kube: Kube, rt: Runtime, body: Manifest, problems: list[Problem]) -> None:
    """Post a Warning Event for each problem reason newly seen; forget reasons that cleared."""
    key = (body["metadata"]["namespace"], body["metadata"]["name"])
    seen = rt.announced.setdefault(key, set())
    current = {reason for reason, _ in problems}
    for reason, message in problems:
        if reason not in seen:
            await kube.post_event(body, reason=reason, message=message, type="Warning")
    seen.clear()
    seen.update(current)


def _previous(rt: Runtime, body: Manifest) -> list[Condition]:
    meta = body["metadata"]
    return conditions_of(rt.written.get((meta["namespace"], meta["name"])) or body.get("status"))


def _pod_problems(rt: Runtime, key: Key) -> list[Problem]:
    seen: dict[str, Problem] = {}
    for problems in rt.pods.get(key, {}).values():
        for reason, message in problems:
            seen.setdefault(reason, (reason, message))  # one per reason, not one per pod
    return list(seen.values())


def _desired(owner: Manifest, kind: str, name: str) -> Manifest | None:
    """The manifest we would apply for this child now, or None if the App does not build it."""
    try:
        app = App.model_validate({k: owner[k] for k in ("apiVersion", "kind", "metadata", "spec")})
    except ValidationError:
        return None
    for manifest in builders.build_children(app, Owner.of(owner)):
        if manifest["kind"] == kind and manifest["metadata"]["name"] == name:
            return manifest
    return None


def _owner(child: kopf.Body, app_index: kopf.Index[Key, Manifest]) -> Manifest | None:
    """The App that owns this child, from the index (by ownerReference, else by instance label)."""
    namespace = child.metadata.namespace or ""
    for ref in child.metadata.get("ownerReferences") or []:
        if ref.get("kind") == "App" and ref.get("apiVersion", "").startswith("mothership.dev/"):
            app = _first(app_index, (namespace, ref["name"]))
            return app if app is not None and app["metadata"]["uid"] == ref.get("uid") else None
    name = (child.metadata.labels or {}).get(std.INSTANCE)
    if name and builders.child_name(name) == child.metadata.name:
        return _first(app_index, (namespace, name))
    return None


def _first(index: kopf.Index[Key, Manifest], key: Key) -> Manifest | None:
    store = index.get(key)
    if not store:
        return None
    for value in store:
        return value
    return None


def _owner_uid(meta: Mapping[str, Any]) -> str | None:
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == "App":
            return str(ref.get("uid"))
    return None


def _snapshot(body: kopf.Body) -> Manifest:
    meta = body.metadata
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {
            "name": meta.name, "namespace": meta.namespace, "uid": meta.uid,
            "generation": meta.get("generation"), "labels": dict(meta.labels or {}),
            "annotations": {k: v for k, v in (meta.annotations or {}).items()
                            if not k.startswith("mothership.dev/")},
            "deletionTimestamp": meta.get("deletionTimestamp"),
        },
        "spec": dict(body.spec),
        "status": dict(body.status),
    }


def _indexes(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k.startswith("managed_") or k == "app_index"}


def _kind_of(kwargs: Mapping[str, Any]) -> str:
    resource = kwargs.get("resource")
    return getattr(resource, "kind", "") or ""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
