"""A LoadTest's I/O: launching its children, and the daemon that runs its coordinator.

Why apart from ``handlers.py``: the kopf decorators stay a page of thin
triggers, while what they trigger (and every API call it makes) lives here,
next to the data it moves. What is decided lives elsewhere: the children by
``builders`` (pure), where the load may go by ``targets`` (pure), the phase
and conditions by ``status.compute`` (pure, the only writer of ``phase``), and
the run itself by ``loadgen.coordinator`` (which knows nothing of Kubernetes).

Two entry points:

- :func:`launch` (on create and resume): validate the spec, resolve the target,
  GET the Service its host names in this namespace (one call, when it names one;
  ``targets`` decides, knowing whether it exists and is ``ExternalName``), and
  check it against the Tenant's and the operator's allow-lists and the Tenant's
  limits, then (not yet accepted) its workers against what the Tenant's
  ResourceQuota has left (one GET; ``quota`` decides). A refusal is written as
  ``Accepted=False`` plus a Warning Event, and raised as
  ``kopf.PermanentError``; nothing is created. Otherwise apply the plan
  ConfigMap and the token Secret (the token is generated once and read back ever
  after), create the Indexed Job (409 is success), apply a PodMonitor when that
  API exists, and write ``Accepted=True``. A test whose phase is final is left
  alone: its results stay, its children may be gone.
- :func:`coordinate` (the per-LoadTest ``kopf.daemon``): wait for the launch,
  wait for every worker pod to be Ready (read from kopf's index of the pod
  watch the operator already runs, not a LIST every second; while one is
  missing, its Job's ``FailedCreate`` Events say whether quota admission
  refused it, which ends the test Errored at once), then run the
  :class:`~mothership.loadgen.coordinator.Coordinator` against
  ``http://podIP:9090`` with the token. The start barrier is persisted in
  ``status.startAt`` *before* any worker is told (the ``on_start_at`` hook), so
  a restarted operator re-attaches instead of starting twice; if the test ended
  while the operator was down, the result is rebuilt from the pods'
  termination messages. Status is patched on every coordinator poll (about
  every 2 s) and the operator's per-LoadTest gauges follow it. ``spec.stop``,
  a failed worker pod, or the LoadTest's deletion stop the workers. After the
  end, ``ttlSecondsAfterFinished`` deletes the Job, the ConfigMaps and the Secret and
  keeps the LoadTest with its status. ``status.byRequest`` keeps the 10 busiest
  rows of the per-request table; the whole table is applied to the ConfigMap
  ``<name>-results`` (``results.json``) every 30 s and at the end.

No handler or daemon here ever sleeps: waiting is ``await stopped.wait(t)``
(kopf's stop flag, so deletion and shutdown wake it at once) or asyncio.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import logging
import math
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import kopf
from pydantic import ValidationError

from mothership import errors, metrics
from mothership import labels as std
from mothership.api.common import Manifest, Owner, invalid_spec_message
from mothership.api.loadtest import (
    FINAL_PHASES,
    LoadTest,
    LoadTestConditionType,
    LoadTestPhase,
    LoadTestReason,
    LoadTestSpec,
    LoadTestStatus,
    WorkerFailure,
)
from mothership.api.tenant import LoadTestLimits
from mothership.kube import KINDS, ApiError, Kube
from mothership.loadgen.coordinator import Coordinator, Result, result_from_summaries
from mothership.loadgen.coordinator import Verdict as RunVerdict
from mothership.loadtests import builders, quota, targets
from mothership.loadtests.status import (
    FAILURE_MESSAGE_LIMIT,
    Observed,
    Refusal,
    Verdict,
    compute,
    condition,
    latest_by_index,
    pod_failure,
    pod_ip,
    pod_ready,
    read_status,
    termination_message,
    wire,
    worker_counts,
)

log = logging.getLogger(__name__)

LOADTESTS = ("mothership.dev", "v1alpha1", "loadtests")
"""The kopf resource selector of LoadTests."""

POLL_SECONDS = 2.0
"""Seconds between coordinator polls, hence between live status patches."""
PODS_SECONDS = 1.0
"""Seconds between listings of the worker pods (readiness before the start, failures after)."""
READY_TIMEOUT_SECONDS = builders.READY_TIMEOUT_SECONDS - 30
"""How long the operator waits for every worker pod to be Ready; a little less than the
workers themselves wait, so the test is judged Errored before they give up and exit."""
RESULTS_SECONDS = 30.0
"""How often the results ConfigMap is rewritten while a test runs (and once at the end)."""
WAIT_POD_END_SECONDS = 10.0
"""After the run, how long to wait for the released workers' pods to terminate (final counts)."""
RELEASE_SECONDS = 30.0
"""How long to keep stopping the workers of a test that ended before it started."""
DELETE_GRACE_SECONDS = 2.0
"""When a running LoadTest is deleted, how long telling its workers to stop may take (kopf
keeps the finalizer this long, then cancels the daemon)."""


class Config(Protocol):
    """What this module reads from ``controller.Config`` (duck-typed, so tests can pass their own)."""

    allowed_targets: Sequence[str]
    worker_image: str
    pod_monitors: bool


class Stopped(Protocol):
    """kopf's ``stopped`` flag of a daemon (``kopf.DaemonStopped``)."""

    def __bool__(self) -> bool: ...

    @property
    def reason(self) -> kopf.DaemonStoppingReason | None: ...

    def wait(self, timeout: float | None = None) -> Awaitable[Any]: ...


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _key(body: Mapping[str, Any]) -> tuple[str, str]:
    meta = body.get("metadata") or {}
    return str(meta.get("namespace")), str(meta.get("name"))


def _generation(body: Mapping[str, Any]) -> int | None:
    value = (body.get("metadata") or {}).get("generation")
    return int(value) if value is not None else None


def validate(body: Mapping[str, Any]) -> LoadTest:
    """The LoadTest model of a stored object; pydantic's ValidationError when the spec is invalid."""
    meta = body.get("metadata") or {}
    return LoadTest.model_validate({
        "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace")},
        "spec": dict(body.get("spec") or {}),
    })


# --- policy ----------------------------------------------------------------------------------


async def tenant_limits(kube: Kube, namespace: str) -> LoadTestLimits:
    """The ``loadTests`` limits of the one Tenant that owns this namespace.

    The owner is the Tenant the Namespace is labelled for (``mothership.dev/tenant``,
    which only the Tenant controller writes, and only for the Tenant whose claim it
    accepted), and that Tenant must still name this namespace. Another Tenant whose
    spec merely names it is no owner. A namespace no Tenant owns gets the defaults:
    only in-namespace Services, and the default worker and virtual-user caps.
    """
    ns = await kube.get("Namespace", namespace)
    owner = (((ns or {}).get("metadata") or {}).get("labels") or {}).get(std.TENANT)
    if not owner:
        return LoadTestLimits()
    tenant = await kube.get("Tenant", owner)
    spec = (tenant or {}).get("spec") or {}
    if tenant is None or (spec.get("namespace") or owner) != namespace:
        return LoadTestLimits()
    try:
        return LoadTestLimits.model_validate(spec.get("loadTests") or {})
    except ValidationError:
        return LoadTestLimits()


async def lookup_service(kube: Kube, spec: LoadTestSpec, namespace: str) -> targets.ServiceLookup | None:
    """What the API says about the Service of ``namespace`` the target's host names (one GET), or
    None when the host names none (see ``targets.service_named``)."""
    name = targets.service_named(targets.host_of(targets.resolve(spec, namespace)), namespace)
    if name is None:
        return None
    try:
        return targets.ServiceLookup.of(name, await kube.get("Service", name, namespace))
    except ApiError as exc:
        raise errors.classify(exc) from exc


def refusal_for(spec: LoadTestSpec, namespace: str, limits: LoadTestLimits,
                operator_targets: Sequence[str], service: targets.ServiceLookup | None) -> Refusal | None:
    """Why this spec may not run here (target, workers, virtual users), or None. Pure.

    ``service`` is :func:`lookup_service`'s answer. An App's Service that does not
    exist yet is no refusal: :func:`launch` waits for it (the App controller makes it).
    """
    url = targets.resolve(spec, namespace)
    app_pending = spec.target.app is not None and service is not None and not service.exists
    try:
        if not app_pending:
            targets.check(url, namespace, [*limits.allowed_targets, *operator_targets], service)
    except targets.TargetNotAllowed as exc:
        return Refusal(LoadTestReason.TARGET_NOT_ALLOWED, str(exc))
    workers = spec.worker_count()
    if workers > limits.max_workers:
        return Refusal(LoadTestReason.TOO_MANY_WORKERS,
                       f"The test needs {workers} workers but this tenant allows at most "
                       f"{limits.max_workers}; lower spec.workers or raise virtualUsersPerWorker, "
                       f"or ask for a higher spec.loadTests.maxWorkers on the Tenant.")
    users = spec.peak_virtual_users()
    if users > limits.max_virtual_users:
        return Refusal(LoadTestReason.TOO_MANY_VIRTUAL_USERS,
                       f"The test reaches {users} virtual users but this tenant allows at most "
                       f"{limits.max_virtual_users}; lower the load or ask for a higher "
                       f"spec.loadTests.maxVirtualUsers on the Tenant.")
    return None


async def quota_refusal(kube: Kube, spec: LoadTestSpec, namespace: str) -> Refusal | None:
    """``ExceedsQuota`` when the workers cannot fit what the Tenant's ResourceQuota has left (one GET)."""
    try:
        resource_quota = await kube.get("ResourceQuota", quota.QUOTA_NAME, namespace)
    except ApiError as exc:
        raise errors.classify(exc) from exc
    message = quota.exceeded(spec, resource_quota)
    return Refusal(LoadTestReason.EXCEEDS_QUOTA, message) if message is not None else None


# --- launch (create / resume) ----------------------------------------------------------------


async def write_status(kube: Kube, body: Mapping[str, Any], status: LoadTestStatus) -> None:
    namespace, name = _key(body)
    try:
        await kube.patch_status("LoadTest", name, namespace, wire(status))
    except ApiError as exc:
        raise errors.classify(exc) from exc


async def refuse(kube: Kube, body: Mapping[str, Any], refusal: Refusal, spec: LoadTestSpec | None,
                 logger: logging.Logger | logging.LoggerAdapter[Any]) -> kopf.PermanentError:
    """Record a refusal (condition, phase Errored, Warning Event); return the error to raise."""
    previous = read_status(body.get("status"))
    status = compute(Observed(now=now(), spec=spec, refusal=refusal, generation=_generation(body)),
                     previous)
    await write_status(kube, body, status)
    set_gauges(*_key(body), status)
    await kube.post_event(body, reason=refusal.reason.value, message=refusal.message, type="Warning",
                          action="Validate")
    logger.debug("refused: %s", refusal.message)
    return kopf.PermanentError(f"{refusal.reason.value}: {refusal.message}")


async def read_token(kube: Kube, namespace: str, name: str) -> str | None:
    """The control token already stored for this test, if its Secret exists."""
    try:
        secret = await kube.get("Secret", builders.token_name(name), namespace)
    except ApiError as exc:
        raise errors.classify(exc) from exc
    data = ((secret or {}).get("data") or {}).get(builders.TOKEN_KEY)
    if not data:
        return None
    return base64.b64decode(data).decode().strip() or None


async def launch(body: Mapping[str, Any], kube: Kube, config: Config,
                 logger: logging.Logger | logging.LoggerAdapter[Any]) -> None:
    """Validate, check policy, create the children and accept the test (see the module docstring)."""
    namespace, name = _key(body)
    previous = read_status(body.get("status"))
    if previous.phase in FINAL_PHASES:
        return
    try:
        lt = validate(body)
    except ValidationError as exc:
        raise await refuse(kube, body, Refusal(LoadTestReason.INVALID_SPEC, invalid_spec_message(exc)),
                           None, logger) from None
    spec = lt.spec
    try:
        limits = await tenant_limits(kube, namespace)
    except ApiError as exc:
        raise errors.classify(exc) from exc
    service = await lookup_service(kube, spec, namespace)
    refusal = refusal_for(spec, namespace, limits, config.allowed_targets, service)
    accepted = condition(previous, LoadTestConditionType.ACCEPTED)
    already = accepted is not None and accepted.status == "True"
    if refusal is None and not already:  # once accepted, its own pods are in the quota's `used`
        refusal = await quota_refusal(kube, spec, namespace)
    if refusal is not None:
        raise await refuse(kube, body, refusal, spec, logger)
    if spec.stop and previous.start_at is None and not already:
        status = compute(Observed(now=now(), spec=spec, verdict=Verdict.STOPPED, stop_requested=True,
                                  verdict_message="spec.stop was set before the test was launched.",
                                  generation=_generation(body)), previous)
        await write_status(kube, body, status)
        set_gauges(namespace, name, status)
        return
    if spec.target.app is not None:
        try:
            app = await kube.get("App", spec.target.app, namespace)
        except ApiError as exc:
            raise errors.classify(exc) from exc
        if app is None:
            raise kopf.TemporaryError(f"App {spec.target.app} does not exist in {namespace} yet; waiting",
                                      delay=5)
        if service is not None and not service.exists:
            raise kopf.TemporaryError(f"the Service of App {spec.target.app} does not exist in {namespace} "
                                      f"yet; waiting", delay=5)
    url = targets.resolve(spec, namespace)
    owner = Owner.of(dict(body))
    token = await read_token(kube, namespace, name) or secrets.token_urlsafe(32)
    try:
        await kube.apply(builders.build_plan(lt, owner))
        await kube.apply(builders.build_token_secret(lt, owner, token))
        created = await kube.create(builders.build_job(lt, owner, image=config.worker_image, target_url=url))
    except ApiError as exc:
        raise errors.classify(exc) from exc
    if config.pod_monitors:
        await apply_pod_monitor(kube, lt, owner)
    if created is not None:
        logger.info("Launched %d worker(s) against %s.", spec.worker_count(), url)
    if already:
        return  # resumed: the daemon owns the status from here on
    status = compute(Observed(now=now(), spec=spec, launched=True, generation=_generation(body)), previous)
    await write_status(kube, body, status)
    set_gauges(namespace, name, status)


async def apply_pod_monitor(kube: Kube, lt: LoadTest, owner: Owner) -> bool:
    """Apply the PodMonitor when the monitoring.coreos.com API exists; False (skipped) on 404."""
    try:
        await kube.apply(builders.build_pod_monitor(lt, owner))
    except ApiError as exc:
        if exc.status == 404:
            return False
        raise errors.classify(exc) from exc
    return True


# --- metrics ---------------------------------------------------------------------------------


def set_gauges(namespace: str, name: str, status: LoadTestStatus) -> None:
    """The operator's per-LoadTest gauges, labelled only by namespace and name."""
    for phase in LoadTestPhase:
        metrics.LOADTEST_PHASE.labels(namespace, name, phase.value).set(1 if status.phase is phase else 0)
    summary = status.summary
    metrics.LOADTEST_RPS.labels(namespace, name).set(summary.rps)
    metrics.LOADTEST_ERROR_RATE.labels(namespace, name).set(summary.error_rate)
    latency = summary.http_req_duration
    for gauge, value in ((metrics.LOADTEST_P50, latency.p50), (metrics.LOADTEST_P95, latency.p95),
                         (metrics.LOADTEST_P99, latency.p99)):
        gauge.labels(namespace, name).set(value / 1000.0 if value is not None else math.nan)


def forget_gauges(namespace: str, name: str) -> None:
    metrics.forget_loadtest(namespace, name, tuple(p.value for p in LoadTestPhase))


# --- the daemon ------------------------------------------------------------------------------


def verdict_of(result: Result) -> Verdict | None:
    """The coordinator's verdict in the terms ``status.compute`` decides from."""
    if result.verdict is None:
        return None
    if result.verdict is RunVerdict.STOPPED:
        return Verdict.STOPPED
    if result.verdict is RunVerdict.ERRORED:
        return Verdict.ERRORED
    if result.verdict is RunVerdict.FAILED and result.aborted:
        return Verdict.ABORTED
    if result.verdict is RunVerdict.FAILED and result.no_data:
        return Verdict.NO_DATA
    return Verdict.COMPLETED


QUOTA_REFUSED = re.compile(r"forbidden: (exceeded|failed) quota")
"""What quota admission says when it refuses a pod ("status unknown for quota" is passing)."""


def refused_by_quota(events: Sequence[Mapping[str, Any]]) -> str | None:
    """The latest quota refusal among a Job's ``FailedCreate`` Events, without "Error creating: "."""
    found = [e for e in events if QUOTA_REFUSED.search(str(e.get("message") or ""))]
    if not found:
        return None
    latest = max(found, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
    return str(latest["message"]).removeprefix("Error creating: ").strip()


def epoch_to_rfc3339(epoch: float) -> str:
    """Microsecond RFC 3339, so the barrier read back on a restart is the one sent (to the µs)."""
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rfc3339_to_epoch(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class Run:
    """One LoadTest's coordination, from the launch to the final status (state of one daemon)."""

    kube: Kube
    body: Mapping[str, Any]
    """kopf's live body: spec and status as last seen by the watch."""
    stopped: Stopped
    logger: logging.Logger | logging.LoggerAdapter[Any]
    spec: LoadTestSpec
    namespace: str
    name: str
    token: str = ""
    status: LoadTestStatus = field(default_factory=LoadTestStatus)
    """The status last written (the base of every next compute)."""
    pods: list[Manifest] = field(default_factory=list)
    job: Manifest | None = None
    positions: list[int] = field(default_factory=list)
    """Coordinator position -> worker index (the same unless some tolerated workers never ran)."""
    coordinator: Coordinator | None = None
    reported: set[int] = field(default_factory=set)
    """Worker indexes already reported failed to the coordinator."""
    stop_reason: str | None = None
    results_written: float = -math.inf
    """Loop time the results ConfigMap was last written."""
    pods_seen: Callable[[], list[Manifest]] | None = None
    """This test's worker pods as the operator's pod watch last saw them (kopf's index), or None:
    then every look is a LIST."""

    # --- reading the world --------------------------------------------------------

    @property
    def stop_requested(self) -> bool:
        return bool((self.body.get("spec") or {}).get("stop"))

    @property
    def deleted(self) -> bool:
        reason = self.stopped.reason
        return bool(self.stopped) and reason is not None and bool(
            reason & kopf.DaemonStoppingReason.RESOURCE_DELETED)

    async def list_pods(self) -> list[Manifest]:
        """The worker pods: from the operator's pod watch (``pods_seen``) when it has one, else a LIST."""
        if self.pods_seen is not None:
            self.pods = self.pods_seen()
        else:
            self.pods = await self.kube.list(
                "Pod", self.namespace, label_selector={builders.LOADTEST_LABEL: self.name})
        return self.pods

    async def read_job(self) -> Manifest | None:
        self.job = await self.kube.get("Job", builders.job_name(self.name), self.namespace)
        return self.job

    async def pods_refused(self) -> str | None:
        """The admission message of a worker pod the Job controller could not create for quota
        (its ``FailedCreate`` Warning Event on this Job), or None."""
        if self.job is None:
            await self.read_job()
        uid = ((self.job or {}).get("metadata") or {}).get("uid")
        if not uid:
            return None
        selector = (f"involvedObject.kind=Job,involvedObject.name={builders.job_name(self.name)},"
                    f"involvedObject.uid={uid},reason=FailedCreate")
        events = await self.kube.request("list", KINDS["Event"], namespace=self.namespace,
                                         params={"fieldSelector": selector})
        return refused_by_quota(events.get("items") or [])

    def observed(self, **values: Any) -> Observed:
        return Observed(now=now(), spec=self.spec, launched=True, pods=self.pods, job=self.job,
                        stop_requested=self.stop_requested, start_at=self.status.start_at,
                        generation=_generation(self.body), **values)

    async def publish(self, observed: Observed) -> LoadTestStatus:
        """Compute the status, patch it when it changed, log a phase transition once, set the gauges."""
        new = compute(observed, self.status)
        if new != self.status:
            await self.kube.patch_status("LoadTest", self.name, self.namespace, wire(new))
            if new.phase is not self.status.phase:
                level = logging.WARNING if new.phase is LoadTestPhase.ERRORED else logging.INFO
                self.logger.log(level, "Phase %s -> %s.%s", self.status.phase.value, new.phase.value,
                                _why(new))
            self.status = new
        set_gauges(self.namespace, self.name, new)
        return new

    # --- the whole run --------------------------------------------------------------

    async def run(self) -> None:
        token = await read_token(self.kube, self.namespace, self.name)
        if token is None:
            raise kopf.TemporaryError("the control-token Secret is missing; waiting for the launch", delay=5)
        self.token = token
        if self.status.start_at is None:
            endpoints = await self.wait_for_workers()
            if endpoints is None:
                return
            await self.drive(self.new_coordinator(endpoints), None)
        else:
            await self.resume()

    def new_coordinator(self, endpoints: Sequence[str]) -> Coordinator:
        return Coordinator(endpoints, self.token, self.spec, poll_interval=POLL_SECONDS,
                           ready_timeout=60.0, on_start_at=self.persist_start, on_update=self.update)

    async def wait_for_workers(self) -> list[str] | None:
        """Endpoints of every worker once all are Ready; None when the test ended instead."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT_SECONDS
        total = self.spec.worker_count()
        while True:
            await self.list_pods()
            status = await self.publish(self.observed())
            if status.phase in FINAL_PHASES:  # failed workers beyond the tolerance
                await self.release(self.pods)
                return None
            if self.stopped:
                if self.deleted:
                    await self.release(self.pods)
                return None
            if self.stop_requested:
                await self.release(self.pods)
                await self.publish(self.observed(verdict=Verdict.STOPPED, verdict_message=(
                    "spec.stop was set before the workers started; nothing ran.")))
                return None
            chosen = latest_by_index(self.pods, total)
            missing = sorted(set(range(total)) - set(chosen))
            refused = await self.pods_refused() if missing else None
            if refused is not None:  # quota admission: the Job controller would retry in vain
                await self.release(self.pods)
                await self.publish(self.observed(
                    verdict=Verdict.ERRORED,
                    extra_failures=[WorkerFailure(index=i, reason="FailedCreate", message=refused[
                        :FAILURE_MESSAGE_LIMIT]) for i in missing],
                    verdict_message=f"Worker pod(s) {', '.join(map(str, missing))} could not be "
                                    f"created: {refused}",
                ))
                return None
            failed = {i for i, p in chosen.items() if pod_failure(p, i) is not None}
            ready = {i for i, p in chosen.items() if pod_ready(p) and pod_ip(p) and i not in failed}
            if len(ready) + len(failed) == total and ready:
                self.positions = sorted(ready)
                self.reported = set(failed)
                return [f"http://{pod_ip(chosen[i])}:{builders.WORKER_PORT}" for i in self.positions]
            if loop.time() >= deadline:
                missing = sorted(set(range(total)) - ready - failed)
                await self.release(self.pods)
                await self.publish(self.observed(
                    verdict=Verdict.ERRORED,
                    extra_failures=[WorkerFailure(index=i, reason="NotReady", message=(
                        f"not Ready within {READY_TIMEOUT_SECONDS}s")) for i in missing],
                    verdict_message=f"Worker(s) {', '.join(map(str, missing))} were not Ready within "
                                    f"{READY_TIMEOUT_SECONDS}s; check the pods' events "
                                    f"(scheduling, image pulls, resources).",
                ))
                return None
            await self.stopped.wait(PODS_SECONDS)

    async def resume(self) -> None:
        """After an operator restart with ``startAt`` known: re-attach, or rebuild from summaries."""
        assert self.status.start_at is not None
        total = self.spec.worker_count()
        await self.list_pods()
        chosen = latest_by_index(self.pods, total)
        ended = {i: p for i, p in chosen.items()
                 if (p.get("status") or {}).get("phase") in ("Succeeded", "Failed")}
        if len(ended) == total or not chosen:
            self.logger.info("The test ended while the operator was away; reading the workers' summaries.")
            await self.finish(self.from_summaries(chosen, total))
            return
        self.positions = sorted(i for i, p in chosen.items() if pod_ip(p) and i not in ended)
        self.reported = {i for i, p in chosen.items() if pod_failure(p, i) is not None}
        endpoints = [f"http://{pod_ip(chosen[i])}:{builders.WORKER_PORT}" for i in self.positions]
        if not endpoints:
            await self.finish(self.from_summaries(chosen, total))
            return
        self.logger.info("Re-attaching to %d running worker(s).", len(endpoints))
        await self.drive(self.new_coordinator(endpoints), rfc3339_to_epoch(self.status.start_at))

    def from_summaries(self, chosen: Mapping[int, Mapping[str, Any]], total: int) -> Result:
        texts = [termination_message(chosen[i]) if i in chosen else None for i in range(total)]
        start_at = rfc3339_to_epoch(self.status.start_at) if self.status.start_at else None
        return result_from_summaries(texts, self.spec, start_at=start_at)

    async def persist_start(self, at: float) -> None:
        """The coordinator's ``on_start_at`` hook: status.startAt is stored before any worker hears it."""
        self.status = self.status.model_copy(update={"start_at": epoch_to_rfc3339(at)})
        await self.publish(self.observed())
        self.logger.info("Every worker starts at %s.", self.status.start_at)

    async def update(self, result: Result) -> None:
        """The coordinator's ``on_update`` hook: live status every poll; the final one comes from finish.

        The whole per-request table goes to the results ConfigMap every RESULTS_SECONDS (and at the end).
        """
        if result.final:
            return
        await self.publish(self.observed(summary=result.summary, thresholds=result.thresholds,
                                         by_request=result.by_request,
                                         extra_failures=self.failures_of(result), coordinating=True))
        loop = asyncio.get_running_loop()
        if loop.time() >= self.results_written + RESULTS_SECONDS:
            await self.write_results(result)

    async def write_results(self, result: Result) -> None:
        """Apply the ConfigMap ``<name>-results`` (``builders.build_results``); a failure is logged only:
        the status still has the totals and the busiest rows."""
        self.results_written = asyncio.get_running_loop().time()
        try:
            await self.kube.apply(builders.build_results(Owner.of(dict(self.body)), result))
        except ApiError as exc:
            self.logger.warning("Could not write the results ConfigMap %s: %s",
                                builders.results_name(self.name), exc)

    def failures_of(self, result: Result) -> list[WorkerFailure]:
        out = []
        for failure in result.failures:
            index = self.positions[failure.index] if failure.index < len(self.positions) else failure.index
            out.append(failure.model_copy(update={"index": index}))
        return out

    async def drive(self, coordinator: Coordinator, attach_at: float | None) -> None:
        """Run (or re-attach) the coordinator while watching pods, ``spec.stop`` and deletion."""
        self.coordinator = coordinator
        task = asyncio.create_task(coordinator.run() if attach_at is None else coordinator.attach(attach_at),
                                   name=f"coordinator {self.namespace}/{self.name}")
        try:
            while not task.done():
                woken = asyncio.ensure_future(self.stopped.wait(PODS_SECONDS))
                try:
                    await asyncio.wait({task, woken}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    woken.cancel()
                if task.done():
                    break
                if self.stopped:
                    if self.deleted:  # stop the workers now; their pods go with the Job
                        await self.stop_workers()
                    return  # else the operator is exiting: leave the workers running, re-attach later
                if self.stop_requested and self.stop_reason is None:
                    self.stop_reason = "spec.stop was set"
                    self.logger.info("Stop requested: stopping every worker.")
                    coordinator.stop(self.stop_reason)
                await self.watch_pods(coordinator)
            result = task.result()
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await self.finish(result)

    async def watch_pods(self, coordinator: Coordinator) -> None:
        """Report failed worker pods to the coordinator; stop the run past the tolerance."""
        await self.list_pods()
        total = self.spec.worker_count()
        chosen = latest_by_index(self.pods, total)
        if any(i not in chosen or (chosen[i].get("metadata") or {}).get("deletionTimestamp")
               for i in self.positions):
            # Pods deleted or gone mid-run: the Job says why (its deadline, or it failed and
            # its controller ends the rest, which are then no failures of their own).
            await self.read_job()
        failed = {f.index: f for f in worker_counts(self.pods, total, job=self.job).failures}
        for index, failure in sorted(failed.items()):
            if index in self.reported:
                continue
            self.reported.add(index)
            self.logger.warning("Worker %d failed: %s %s", index, failure.reason, failure.message)
            if index in self.positions:
                coordinator.worker_failed(self.positions.index(index), failure.reason, failure.message)
        if len(self.reported) > self.spec.tolerated_worker_failures and self.stop_reason is None:
            self.stop_reason = f"{len(self.reported)} worker(s) failed"
            coordinator.stop(self.stop_reason)

    async def finish(self, result: Result) -> None:
        """Write the final status: wait briefly for the released pods to end, prefer their summaries
        when the coordinator lost workers that did leave one."""
        loop = asyncio.get_running_loop()
        total = self.spec.worker_count()
        deadline = loop.time() + WAIT_POD_END_SECONDS
        while True:
            chosen = latest_by_index(await self.list_pods(), total)
            running = [p for p in chosen.values()
                       if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
            if not running or loop.time() >= deadline or self.stopped:
                break
            await self.stopped.wait(0.5)
        await self.read_job()
        lost = {f.index for f in self.failures_of(result)} - self.reported
        if lost and len(chosen) == total and all(termination_message(p) for p in chosen.values()):
            rebuilt = self.from_summaries(chosen, total)
            if rebuilt.verdict is not RunVerdict.ERRORED:
                rebuilt.time_series = result.time_series  # summaries have totals only; keep the series
                result = rebuilt
        await self.write_results(result)
        await self.publish(self.observed(
            summary=result.summary, thresholds=result.thresholds, by_request=result.by_request,
            verdict=verdict_of(result), verdict_message=_sentence(result.reason),
            extra_failures=self.failures_of(result)))

    async def stop_workers(self) -> None:
        """POST /stop once to every worker pod with an IP, concurrently, bounded (the test was deleted)."""
        timeout = aiohttp.ClientTimeout(total=DELETE_GRACE_SECONDS * 0.75)
        headers = {"Authorization": f"Bearer {self.token}"}
        urls = [f"http://{ip}:{builders.WORKER_PORT}/stop" for p in self.pods if (ip := pod_ip(p))]
        async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:

            async def stop(url: str) -> None:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                    async with session.post(url) as response:
                        await response.read()

            await asyncio.gather(*(stop(u) for u in urls))
        self.logger.info("The LoadTest was deleted: told %d worker(s) to stop.", len(urls))

    async def release(self, pods: Sequence[Manifest]) -> None:
        """Stop and release every worker of a test that ends before its start (no coordinator ran).

        POST /stop twice (stop, then release from lingering) to each worker pod
        with an IP, and keep at it, for at most ``RELEASE_SECONDS``, with pods
        still starting up, so they exit now rather than after their own ready
        timeout. Pods that never run (an image that cannot be pulled) stay until
        the Job's deadline or ``ttlSecondsAfterFinished``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RELEASE_SECONDS
        timeout = aiohttp.ClientTimeout(total=2)
        headers = {"Authorization": f"Bearer {self.token}"}
        released: set[str] = set()
        async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:

            async def stop(name: str, url: str) -> None:
                for _ in range(2):
                    try:
                        async with session.post(url + "/stop") as response:
                            await response.read()
                    except (aiohttp.ClientError, TimeoutError, OSError):
                        return
                released.add(name)

            while True:
                pending = {
                    str(p["metadata"]["name"]): f"http://{ip}:{builders.WORKER_PORT}" for p in pods
                    if (ip := pod_ip(p)) and (p.get("status") or {}).get("phase") == "Running"
                    and p["metadata"]["name"] not in released
                }
                starting = [p for p in pods if (p.get("status") or {}).get("phase") in (None, "Pending")
                            and pod_failure(p, 0) is None]
                if not pending and not starting:
                    return
                await asyncio.gather(*(stop(n, u) for n, u in pending.items()))
                if loop.time() >= deadline or self.stopped:  # deleted or exiting: one round is all
                    return
                await self.stopped.wait(PODS_SECONDS)
                pods = await self.list_pods()

    # --- after the end --------------------------------------------------------------

    async def clean_up_after_ttl(self) -> None:
        """Sleep (on kopf's stop flag) until completionTime + ttl, then delete the Job, ConfigMap, Secret."""
        ttl = self.spec.ttl_seconds_after_finished
        if ttl is None or self.status.completion_time is None:
            return
        done = datetime.datetime.fromisoformat(self.status.completion_time.replace("Z", "+00:00"))
        remaining = (done + datetime.timedelta(seconds=ttl) - now()).total_seconds()
        if remaining > 0:
            await self.stopped.wait(remaining)
            if self.stopped:
                return
        deleted = []
        try:
            for kind, child in (("Job", builders.job_name(self.name)),
                                ("ConfigMap", builders.plan_name(self.name)),
                                ("ConfigMap", builders.results_name(self.name)),
                                ("Secret", builders.token_name(self.name))):
                if await self.kube.delete(kind, child, self.namespace):
                    deleted.append(f"{kind} {child}")
        except ApiError as exc:
            raise errors.classify(exc) from exc
        if deleted:
            self.logger.info("ttlSecondsAfterFinished passed: deleted %s; the results stay.",
                             ", ".join(deleted))


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text.endswith(".") else text + "."


def _why(status: LoadTestStatus) -> str:
    completed = condition(status, LoadTestConditionType.COMPLETED)
    if status.phase in FINAL_PHASES and completed is not None and completed.message:
        return f" {completed.message}"
    return ""


async def coordinate(body: Mapping[str, Any], kube: Kube, stopped: Stopped,
                     logger: logging.Logger | logging.LoggerAdapter[Any],
                     pods_seen: Callable[[], list[Manifest]] | None = None) -> None:
    """The per-LoadTest daemon (see the module docstring); returns once there is nothing left to do."""
    namespace, name = _key(body)
    while True:  # wait for launch() to accept (or refuse) the test
        status = read_status(body.get("status"))
        accepted = condition(status, LoadTestConditionType.ACCEPTED)
        if status.phase in FINAL_PHASES or (accepted is not None and accepted.status == "True"):
            break
        if stopped:
            return
        await stopped.wait(0.5)
    try:
        spec = validate(body).spec
    except ValidationError:
        return  # launch() refused it
    run = Run(kube=kube, body=body, stopped=stopped, logger=logger, spec=spec, namespace=namespace,
              name=name, status=status, pods_seen=pods_seen)
    if status.phase not in FINAL_PHASES:
        try:
            await run.run()
        except ApiError as exc:
            raise errors.classify(exc) from exc
    set_gauges(namespace, name, run.status)
    if run.status.phase in FINAL_PHASES and not stopped:
        await run.clean_up_after_ttl()

