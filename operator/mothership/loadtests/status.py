"""A LoadTest's status, computed purely: the ONE place its phase is decided.

Why one function: k6-operator's reconciler switches on a free-text stage that
five files assign, and its decisions mix stages and conditions. Here the
handler (on create and resume) and the coordination daemon (every poll) both
describe what they observed as an :class:`Observed` and call :func:`compute`;
neither ever writes ``phase`` itself. Inputs are plain values (the spec, the
refusal if any, the worker pods as the API returned them, the coordinator's
latest numbers and its verdict, "now"), so every transition is a unit test.

Phase, by precedence (the first rule that applies wins)::

    previous phase final ........................ unchanged (results stay)
    refused (Accepted=False) .................... Errored
    failed workers > toleratedWorkerFailures .... Errored
    verdict Errored ............................. Errored
    verdict Stopped ............................. Stopped
    verdict Aborted (abortOnFail) ............... Failed
    verdict NoData (thresholds, nothing done) ... Failed
    verdict Completed ........................... Passed if every threshold holds, else Failed
    (a worker failure while the coordinator still winds down shows as Stopping until its verdict)
    stop requested .............................. Stopping
    start barrier reached (now >= startAt) ...... Running
    start barrier chosen, or children launched .. Starting
    otherwise ................................... Pending

Conditions, in the spirit of k6-operator's k6conditions.go: each type below
says what Unknown, False and True mean along the lifecycle. Their reasons are
CamelCase constants (:class:`LoadTestReason`), and their messages are
sentences a tenant can act on. This module does no I/O and knows nothing of
kopf, HTTP or the coordinator's classes.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from mothership.api.common import Condition, ConditionStatus, Manifest
from mothership.api.loadtest import (
    FINAL_PHASES,
    STATUS_REQUEST_ROWS,
    LoadTestConditionType,
    LoadTestPhase,
    LoadTestReason,
    LoadTestSpec,
    LoadTestStatus,
    RequestStats,
    Summary,
    ThresholdResult,
    WorkerCounts,
    WorkerFailure,
    busiest,
)

INDEX_KEY = "batch.kubernetes.io/job-completion-index"
"""Annotation (and, since Kubernetes 1.28, label) on each pod of an Indexed Job: its index."""

FAILURE_MESSAGE_LIMIT = 300
"""Characters of a pod's message kept in ``status.workers.failures`` (a summary envelope is not a message)."""




REFUSAL_REASONS = frozenset({
    LoadTestReason.INVALID_SPEC, LoadTestReason.TARGET_NOT_ALLOWED,
    LoadTestReason.TOO_MANY_WORKERS, LoadTestReason.TOO_MANY_VIRTUAL_USERS,
    LoadTestReason.EXCEEDS_QUOTA,
})


class Verdict(StrEnum):
    """How the coordination ended; :func:`compute` turns it into a final phase."""

    COMPLETED = "Completed"
    """Load ran for its duration; thresholds decide Passed or Failed."""
    ABORTED = "Aborted"
    """An abortOnFail threshold failed; the test stopped early and is Failed."""
    NO_DATA = "NoData"
    """Load ran for its duration but no request got a response and no WebSocket handshake completed,
    while the spec has thresholds (and none says zero is fine): Failed, never Passed."""
    STOPPED = "Stopped"
    """``spec.stop`` (or the test's deletion) stopped it; Stopped with a partial summary."""
    ERRORED = "Errored"
    """The test could not run to a verdict (workers unreachable, never ready); Errored."""


@dataclass(frozen=True)
class Refusal:
    """Why the operator will not run a test: an Accepted=False reason and a sentence."""

    reason: LoadTestReason
    message: str


@dataclass(frozen=True)
class Observed:
    """Everything :func:`compute` decides from; each writer fills in what it knows."""

    now: datetime.datetime
    """Wall-clock time of the observation (timezone-aware); compared with ``start_at``."""
    spec: LoadTestSpec | None = None
    """The validated spec; None when it did not validate (then ``refusal`` says why)."""
    refusal: Refusal | None = None
    launched: bool = False
    """The ConfigMap, Secret and Job exist (were created by the handler)."""
    pods: Sequence[Mapping[str, Any]] = ()
    """The worker pods as listed from the API (label mothership.dev/loadtest=NAME)."""
    job: Mapping[str, Any] | None = None
    """The Job, when read: its DeadlineExceeded condition fails the workers it never ran."""
    stop_requested: bool = False
    start_at: str | None = None
    """RFC 3339 start barrier, once chosen and persisted."""
    summary: Summary | None = None
    """The coordinator's latest merged summary; None keeps the previous one."""
    thresholds: Sequence[ThresholdResult] | None = None
    """The coordinator's latest threshold results; None keeps the previous ones."""
    by_request: Sequence[RequestStats] | None = None
    """The coordinator's whole per-request table; status keeps its busiest rows. None keeps the previous."""
    verdict: Verdict | None = None
    verdict_message: str = ""
    """A sentence on how it ended (e.g. the abortOnFail threshold that failed, the unreachable worker)."""
    generation: int | None = None
    workers_total: int | None = None
    """Worker count when ``spec`` is unknown (e.g. a refused spec); else the spec's."""
    extra_failures: Sequence[WorkerFailure] = field(default_factory=tuple)
    """Failures seen other than from pods (e.g. a worker that stopped answering)."""
    coordinating: bool = False
    """The coordinator is still winding the run down: a failure it must still stop for shows as
    Stopping, so the final phase is written once, with the final summary."""


# --- worker pods -> counts ------------------------------------------------------------

_WAITING_FAILURES = frozenset({
    "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull",
    "CreateContainerConfigError", "CreateContainerError", "CrashLoopBackOff", "RunContainerError",
})
"""Waiting reasons of a container that will not start without someone changing something."""


def pod_index(pod: Mapping[str, Any]) -> int | None:
    """The completion index of an Indexed Job's pod (annotation, else label); None if absent."""
    meta = pod.get("metadata") or {}
    for source in (meta.get("annotations") or {}, meta.get("labels") or {}):
        value = source.get(INDEX_KEY)
        if value is not None and str(value).isdigit():
            return int(value)
    return None


def pod_ready(pod: Mapping[str, Any]) -> bool:
    """Running with condition Ready=True (the worker's /healthz answered)."""
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in status.get("conditions") or [])


def pod_ip(pod: Mapping[str, Any]) -> str | None:
    ip = (pod.get("status") or {}).get("podIP")
    return str(ip) if ip else None


def termination_message(pod: Mapping[str, Any]) -> str | None:
    """The worker container's termination message (its summary envelope), when it terminated."""
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (cs.get("state") or {}).get("terminated")
        if terminated and terminated.get("message"):
            return str(terminated["message"])
    return None


def _short(message: str) -> str:
    """A failure message fit for status: the envelope's ``error`` if it is one, else the text cut short."""
    text = message.strip()
    if text.startswith("{"):
        try:
            envelope = json.loads(text)
        except ValueError:
            envelope = None
        if isinstance(envelope, dict):
            text = str(envelope.get("error") or f"worker ended {envelope.get('state', 'badly')}")
    return text[:FAILURE_MESSAGE_LIMIT]


def pod_failure(pod: Mapping[str, Any], index: int) -> WorkerFailure | None:
    """Why a worker pod failed (or will never run), or None if it has not."""
    status = pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    for cs in statuses:
        state = cs.get("state") or {}
        waiting = state.get("waiting") or {}
        if waiting.get("reason") in _WAITING_FAILURES:
            return WorkerFailure(index=index, reason=str(waiting["reason"]),
                                 message=_short(str(waiting.get("message") or "")))
    if status.get("phase") != "Failed":
        return None
    for cs in statuses:
        terminated = (cs.get("state") or {}).get("terminated")
        if terminated:
            reason = str(terminated.get("reason") or "Error")
            code = terminated.get("exitCode")
            message = _short(str(terminated.get("message") or ""))
            if reason == "OOMKilled" and not message:
                message = "the worker ran out of memory; raise spec.resources.memory"
            elif not message and code is not None:
                message = f"the worker exited with code {code}"
            return WorkerFailure(index=index, reason=reason, message=message)
    return WorkerFailure(index=index, reason=str(status.get("reason") or "Failed"),
                         message=_short(str(status.get("message") or "")))


def _job_deadline_exceeded(job: Mapping[str, Any] | None) -> str | None:
    for c in ((job or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == "Failed" and c.get("status") == "True" and c.get("reason") == "DeadlineExceeded":
            return str(c.get("message") or "the Job ran past its activeDeadlineSeconds")
    return None


def _job_failed(job: Mapping[str, Any] | None) -> bool:
    """The Job failed, or is failing, for its failed indexes (not its deadline): its controller
    then ends every worker still running (``maxFailedIndexes`` exceeded)."""
    for c in ((job or {}).get("status") or {}).get("conditions") or []:
        if (c.get("type") in ("Failed", "FailureTarget") and c.get("status") == "True"
                and c.get("reason") != "DeadlineExceeded"):
            return True
    return False


def _indexes(text: str) -> set[int]:
    """``"1,3-5"`` (a Job's ``status.failedIndexes``) as {1, 3, 4, 5}; what does not parse is skipped."""
    out: set[int] = set()
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        if low.isdigit() and (not high or high.isdigit()):
            out.update(range(int(low), int(high or low) + 1))
    return out


def ended_by_job(chosen: Mapping[int, Mapping[str, Any]], job: Mapping[str, Any] | None,
                 total: int) -> set[int]:
    """Indexes whose worker the Job controller ended when the Job failed: not failures of their own.

    When the Job fails (more failed indexes than ``maxFailedIndexes``), its
    controller deletes every pod still running. Such a worker stops gracefully
    and its pod goes, so the coordinator loses it ("Unreachable"); that is a
    consequence of the failure, not another one. Never an index the Job lists in
    ``status.failedIndexes``, nor one whose pod failed without being deleted.
    """
    if not _job_failed(job):
        return set()
    assert job is not None
    failed = _indexes(str((job.get("status") or {}).get("failedIndexes") or ""))
    out = set()
    for index in range(total):
        if index in failed:
            continue
        pod = chosen.get(index)
        if pod is None or (pod.get("metadata") or {}).get("deletionTimestamp") \
                or pod_failure(pod, index) is None:
            out.add(index)
    return out


def _created(pod: Mapping[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("creationTimestamp") or "")


def latest_by_index(pods: Sequence[Mapping[str, Any]], total: int) -> dict[int, Mapping[str, Any]]:
    """One pod per index in 0..total-1: the newest (a replacement supersedes what it replaced)."""
    chosen: dict[int, Mapping[str, Any]] = {}
    for pod in sorted(pods, key=_created):
        index = pod_index(pod)
        if index is not None and 0 <= index < total:
            chosen[index] = pod
    return chosen


def worker_counts(
    pods: Sequence[Mapping[str, Any]],
    total: int,
    *,
    job: Mapping[str, Any] | None = None,
    extra_failures: Sequence[WorkerFailure] = (),
) -> WorkerCounts:
    """Count worker pods by state; each failure named by index and reason, in index order.

    Workers the Job controller ended because the Job failed (:func:`ended_by_job`)
    are not failures, whatever the coordinator saw of them.
    """
    chosen = latest_by_index(pods, total)
    ended = ended_by_job(chosen, job, total)
    ready = running = succeeded = 0
    failures: dict[int, WorkerFailure] = {}
    for index, pod in chosen.items():
        failure = pod_failure(pod, index) if index not in ended else None
        phase = (pod.get("status") or {}).get("phase")
        if failure is not None:
            failures[index] = failure
        elif phase == "Succeeded":
            succeeded += 1
        elif phase == "Running":
            running += 1
            ready += pod_ready(pod)
    deadline = _job_deadline_exceeded(job)
    if deadline is not None:
        for index in range(total):
            observed = chosen.get(index) or {}
            phase = (observed.get("status") or {}).get("phase")
            if index not in failures and phase != "Succeeded":
                failures[index] = WorkerFailure(index=index, reason="DeadlineExceeded",
                                                message=_short(deadline))
                if phase == "Running":
                    running -= 1
                    ready -= pod_ready(observed)
    for failure in extra_failures:
        if failure.index not in ended:
            failures.setdefault(failure.index, failure)
    return WorkerCounts(
        total=total, ready=ready, running=running, succeeded=succeeded, failed=len(failures),
        failures=[failures[i] for i in sorted(failures)],
    )


# --- status ----------------------------------------------------------------------------


def rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime.datetime:
    """An RFC 3339 timestamp (``Z`` or an offset, optional fraction) as an aware datetime."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _failures_text(failures: Sequence[WorkerFailure]) -> str:
    parts = [f"worker {f.index}: {f.reason}" + (f" ({f.message})" if f.message else "") for f in failures]
    return "; ".join(parts)


def _threshold_text(result: ThresholdResult) -> str:
    symbol = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}.get(result.op, result.op)
    value = "no data" if result.value is None else f"{result.value:.6g}"
    return f"{result.metric} {result.stat} = {value}, wanted {symbol} {result.limit:.6g}"


def compute(observed: Observed, previous: LoadTestStatus | None = None) -> LoadTestStatus:
    """The status for what was observed, carrying over what must not change (times, results).

    A final phase never changes again: the status is returned as it was, so
    results stay after the pods are gone and a late poll cannot rewrite history.
    """
    if previous is not None and previous.phase in FINAL_PHASES:
        return previous.model_copy(deep=True)
    prev = previous or LoadTestStatus()
    spec = observed.spec
    now = observed.now
    tolerated = spec.tolerated_worker_failures if spec is not None else 0
    total = spec.worker_count() if spec is not None else (observed.workers_total or 0)
    counts = worker_counts(observed.pods, total, job=observed.job, extra_failures=observed.extra_failures)
    if not observed.pods and not observed.extra_failures and observed.job is None:
        # Pods are gone (ttl, GC): keep the counts last seen rather than report zeros.
        counts = prev.workers.model_copy(deep=True) if prev.workers.total else counts
    summary = observed.summary if observed.summary is not None else prev.summary
    thresholds = list(observed.thresholds) if observed.thresholds is not None else list(prev.thresholds)
    if observed.by_request is not None:
        by_request = busiest(list(observed.by_request), STATUS_REQUEST_ROWS)
        by_request_rows = len(observed.by_request)
    else:
        by_request, by_request_rows = list(prev.by_request), prev.by_request_rows
    start_at = observed.start_at or prev.start_at
    refused = observed.refusal is not None
    workers_failed = counts.failed > tolerated

    # --- phase: the precedence table in the module docstring -------------------------
    verdict = observed.verdict
    thresholds_ok = all(t.ok for t in thresholds)
    if refused or workers_failed or verdict is Verdict.ERRORED:
        phase = LoadTestPhase.ERRORED
    elif verdict is Verdict.STOPPED:
        phase = LoadTestPhase.STOPPED
    elif verdict in (Verdict.ABORTED, Verdict.NO_DATA):
        phase = LoadTestPhase.FAILED
    elif verdict is Verdict.COMPLETED:
        phase = LoadTestPhase.PASSED if thresholds_ok else LoadTestPhase.FAILED
    elif observed.stop_requested:
        phase = LoadTestPhase.STOPPING
    elif start_at is not None and now >= parse_time(start_at):
        phase = LoadTestPhase.RUNNING
    elif start_at is not None or observed.launched:
        phase = LoadTestPhase.STARTING
    else:
        phase = LoadTestPhase.PENDING
    if workers_failed and not refused and verdict is None and observed.coordinating:
        phase = LoadTestPhase.STOPPING
    final = phase in FINAL_PHASES

    # --- conditions --------------------------------------------------------------------
    def cond(type_: LoadTestConditionType, status: ConditionStatus, reason: LoadTestReason,
             message: str) -> Condition:
        return Condition(type=type_.value, status=status, reason=reason.value, message=message,
                         observed_generation=observed.generation)

    T, F, U = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN
    C, R = LoadTestConditionType, LoadTestReason
    conditions: list[Condition] = []

    if observed.refusal is not None:
        conditions.append(cond(C.ACCEPTED, F, observed.refusal.reason, observed.refusal.message))
    elif observed.launched or start_at is not None or _was_true(prev, C.ACCEPTED):
        conditions.append(cond(C.ACCEPTED, T, R.ACCEPTED,
                               f"Running {total} worker(s) against the target."))
    else:
        conditions.append(cond(C.ACCEPTED, U, R.PENDING, "The operator has not validated this test yet."))

    if refused or (not observed.launched and start_at is None and not observed.pods):
        conditions.append(cond(C.WORKERS_READY, U, R.PENDING, "No worker pods yet."))
    elif workers_failed:
        conditions.append(cond(C.WORKERS_READY, F, R.WORKER_FAILED,
                               f"{counts.failed} of {total} worker(s) failed, more than the "
                               f"{tolerated} tolerated: {_failures_text(counts.failures)}."))
    elif start_at is not None or counts.ready >= total > 0:
        conditions.append(cond(C.WORKERS_READY, T, R.ALL_WORKERS_READY,
                               f"All {total} worker(s) were ready."))
    else:
        conditions.append(cond(C.WORKERS_READY, F, R.WAITING_FOR_WORKERS,
                               f"{counts.ready} of {total} worker(s) ready."))

    if refused:
        conditions.append(cond(C.STARTED, U, R.REFUSED, "The test was refused; see Accepted."))
    elif start_at is not None:
        conditions.append(cond(C.STARTED, T, R.START_SCHEDULED,
                               f"Every worker was told to start at {start_at}."))
    elif final:
        conditions.append(cond(C.STARTED, F, R.NEVER_STARTED, "The test ended before it started."))
    elif observed.launched:
        conditions.append(cond(C.STARTED, F, R.WAITING_FOR_WORKERS,
                               "Waiting for every worker to be ready before the start barrier."))
    else:
        conditions.append(cond(C.STARTED, U, R.PENDING, "Not launched yet."))

    if not final:
        status = U if phase is LoadTestPhase.PENDING else F
        reason = R.PENDING if phase is LoadTestPhase.PENDING else R.IN_PROGRESS
        conditions.append(cond(C.COMPLETED, status, reason, f"The test is {phase.value.lower()}."))
    elif refused:
        assert observed.refusal is not None
        conditions.append(cond(C.COMPLETED, T, R.REFUSED, observed.refusal.message))
    elif workers_failed:
        conditions.append(cond(C.COMPLETED, T, R.WORKER_FAILED,
                               f"Worker failure: {_failures_text(counts.failures)}."))
    else:
        reason = {
            Verdict.COMPLETED: R.RAN_TO_COMPLETION, Verdict.STOPPED: R.STOPPED_BY_USER,
            Verdict.ABORTED: R.ABORTED_ON_THRESHOLD, Verdict.ERRORED: R.COORDINATION_FAILED,
            Verdict.NO_DATA: R.NO_DATA,
        }[verdict or Verdict.ERRORED]
        message = observed.verdict_message or {
            R.RAN_TO_COMPLETION: "The test ran for its whole duration.",
            R.STOPPED_BY_USER: "spec.stop was set; the summary covers the run until then.",
            R.ABORTED_ON_THRESHOLD: "An abortOnFail threshold failed, so the test stopped early.",
            R.COORDINATION_FAILED: "The operator could not run the test to its end.",
            R.NO_DATA: "No request got a response and no WebSocket handshake completed.",
        }[reason]
        conditions.append(cond(C.COMPLETED, T, reason, message))

    failing = [t for t in thresholds if not t.ok]
    if spec is not None and not spec.thresholds:
        conditions.append(cond(C.THRESHOLDS_PASSED, T, R.NO_THRESHOLDS, "The spec sets no thresholds."))
    elif verdict is Verdict.NO_DATA and final:
        conditions.append(cond(C.THRESHOLDS_PASSED, F, R.NO_DATA,
                               "Nothing completed, so no threshold can be judged; a threshold like "
                               "http_reqs count < 1 allows this."))
    elif failing:
        conditions.append(cond(C.THRESHOLDS_PASSED, F, R.THRESHOLD_FAILED,
                               "; ".join(_threshold_text(t) for t in failing) + "."))
    elif thresholds and any(t.value is not None for t in thresholds):
        conditions.append(cond(C.THRESHOLDS_PASSED, T, R.ALL_THRESHOLDS_PASSED,
                               f"All {len(thresholds)} threshold(s) hold."))
    else:
        conditions.append(cond(C.THRESHOLDS_PASSED, U, R.NO_DATA, "No results yet."))

    stamp = rfc3339(now)
    for c in conditions:
        old = next((p for p in prev.conditions if p.type == c.type), None)
        same = old is not None and old.status == c.status and old.reason == c.reason
        c.last_transition_time = old.last_transition_time if same and old is not None else stamp

    start_time = prev.start_time
    if start_time is None and start_at is not None and phase is not LoadTestPhase.STARTING:
        start_time = start_at
    return LoadTestStatus(
        phase=phase,
        start_at=start_at,
        start_time=start_time,
        completion_time=(prev.completion_time or stamp) if final else None,
        workers=counts,
        summary=summary,
        by_request=by_request,
        by_request_rows=by_request_rows,
        thresholds=thresholds,
        conditions=conditions,
        observed_generation=observed.generation if observed.generation is not None
        else prev.observed_generation,
    )


def _was_true(prev: LoadTestStatus, type_: LoadTestConditionType) -> bool:
    return any(c.type == type_.value and c.status == ConditionStatus.TRUE for c in prev.conditions)


def condition(status: LoadTestStatus | Mapping[str, Any] | None,
              type_: LoadTestConditionType) -> Condition | None:
    """The condition of ``type_`` in a status (model or wire dict), if present."""
    if status is None:
        return None
    if not isinstance(status, LoadTestStatus):
        status = read_status(status)
    return next((c for c in status.conditions if c.type == type_.value), None)


def read_status(raw: Mapping[str, Any] | None) -> LoadTestStatus:
    """A status as stored (wire dict) back into the model; unknown or broken input reads as empty."""
    if not raw:
        return LoadTestStatus()
    try:
        return LoadTestStatus.model_validate(dict(raw))
    except ValueError:
        known = {k: v for k, v in raw.items() if k in LoadTestStatus.model_fields
                 or k in {f.alias for f in LoadTestStatus.model_fields.values() if f.alias}}
        try:
            return LoadTestStatus.model_validate(known)
        except ValueError:
            return LoadTestStatus()


def wire(status: LoadTestStatus) -> Manifest:
    """The status as the API stores it (camelCase, unset optionals left out)."""
    return status.wire()
