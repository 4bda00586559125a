"""An App's status from what was observed: the one place its phase is decided.

Why one pure function: k6-operator's scar is a free-text stage assigned in five
files. Here the handler reads the Deployment back, collects the problems the
schema cannot catch (a missing Secret, an image that cannot run as non-root),
and hands both to ``compute``, which derives the conditions and from them the
phase. Nothing else assigns ``phase``. The clock is an argument (``now``), so
the same observation always gives the same status and tests need no time.

The phase, in order of precedence:

- Failed: the Deployment's Progressing condition is False with reason
  ProgressDeadlineExceeded (bad image, crash loop past the deadline);
- Degraded: the handler found problems, or a finished rollout has fewer
  ready replicas than wanted;
- Pending: there is no Deployment, or its controller has not reported yet;
- Progressing: a rollout is under way, as ``kubectl rollout status`` judges it
  (new spec not yet observed, fewer updated replicas than wanted, old replicas
  still terminating) or new replicas are still becoming ready;
- Ready: every wanted replica runs the current spec and is ready.

A spec the model refuses never reaches ``compute`` (there is no App to read);
``invalid`` gives its status instead: Failed, Ready=False with reason InvalidSpec.

Must not know: kopf, the kube client, or how children are built (beyond their names).
"""

from __future__ import annotations

from typing import Any

from mothership.api.app import App, AppConditionType, AppPhase, AppReason, AppStatus
from mothership.api.common import Condition, ConditionStatus, Manifest, make_condition

from . import builders

T, F, U = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN
DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
ROLLOUT_DONE = "NewReplicaSetAvailable"
"""The Deployment controller's Progressing reason once a rollout has completed."""


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _deployment_condition(status: Manifest, type_: str) -> Manifest | None:
    for cond in status.get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == type_:
            return cond
    return None


def wanted_replicas(app: App, deployment: Manifest | None) -> int:
    """Replicas wanted now: the spec's count, or under autoscale what the HPA last set."""
    if app.spec.autoscale is not None and deployment is not None:
        replicas = (deployment.get("spec") or {}).get("replicas")
        if isinstance(replicas, int) and not isinstance(replicas, bool):
            return replicas
    return app.spec.desired_replicas()


def compute(
    app: App,
    generation: int,
    deployment: Manifest | None,
    problems: list[tuple[str, str]],
    now: str,
    previous: list[Condition],
) -> AppStatus:
    """The App's status: phase, URLs, replica counts and Ready/Progressing/Available conditions.

    ``deployment`` is the Deployment as read back (None when absent);
    ``problems`` are (reason, message) pairs the handler found; ``now`` is an
    RFC 3339 time used only for conditions whose status changed since ``previous``.
    """
    name = app.metadata.get("name", "")
    namespace = app.metadata.get("namespace")
    pods = f"kubectl describe pods -n {namespace} -l app.kubernetes.io/instance={name}"
    wanted = wanted_replicas(app, deployment)
    observed: Manifest = (deployment or {}).get("status") or {}
    replicas = _int(observed.get("replicas"))
    updated = _int(observed.get("updatedReplicas"))
    ready = _int(observed.get("readyReplicas"))
    available = _int(observed.get("availableReplicas"))

    progressing = _deployment_condition(observed, "Progressing") or {}
    deadline = progressing.get("status") == "False" and progressing.get("reason") == DEADLINE_EXCEEDED
    done = progressing.get("reason") == ROLLOUT_DONE
    seen_generation = observed.get("observedGeneration")
    spec_generation = ((deployment or {}).get("metadata") or {}).get("generation")
    if isinstance(seen_generation, int) and isinstance(spec_generation, int) and (
        seen_generation < spec_generation
    ):
        rollout: str | None = "The Deployment controller has not picked up the current spec yet."
    elif updated < wanted:
        rollout = f"{updated} of {wanted} replicas run the current spec."
    elif replicas > updated:
        rollout = f"{replicas - updated} old replicas are still terminating."
    else:
        rollout = None

    problem_text = " ".join(message for _, message in problems)
    if deadline:
        phase = AppPhase.FAILED
        detail = progressing.get("message") or "The rollout timed out."
        ready_cond = (F, AppReason.PROGRESS_DEADLINE_EXCEEDED.value,
                      f"The rollout made no progress within the Deployment's deadline: {detail} "
                      f"Look for image pull errors, crash loops or failing readiness with `{pods}`."
                      + (f" {problem_text}" if problem_text else ""))
    elif problems:
        phase = AppPhase.DEGRADED
        ready_cond = (F, problems[0][0], problem_text)
    elif deployment is None or not observed:
        phase = AppPhase.PENDING
        ready_cond = (U, AppReason.DEPLOYMENT_NOT_OBSERVED.value,
                      f"Waiting for the Deployment controller to report on Deployment {namespace}/{name}.")
    elif rollout is not None:
        phase = AppPhase.PROGRESSING
        ready_cond = (F, AppReason.ROLLOUT_IN_PROGRESS.value, f"Rolling out: {rollout}")
    elif ready >= wanted:
        phase = AppPhase.READY
        ready_cond = (T, AppReason.ALL_REPLICAS_READY.value,
                      f"{ready}/{wanted} replicas run the current spec and are ready.")
    elif done:
        phase = AppPhase.DEGRADED
        ready_cond = (F, AppReason.REPLICAS_NOT_READY.value,
                      f"Only {ready} of {wanted} replicas are ready; see why with `{pods}`.")
    else:
        phase = AppPhase.PROGRESSING
        ready_cond = (F, AppReason.ROLLOUT_IN_PROGRESS.value,
                      f"Rolling out: {ready} of {wanted} replicas are ready; waiting for the rest "
                      "to pass readiness.")

    if deadline:
        progressing_cond = (F, AppReason.PROGRESS_DEADLINE_EXCEEDED.value, ready_cond[2])
    elif deployment is None or not observed:
        progressing_cond = (U, AppReason.DEPLOYMENT_NOT_OBSERVED.value,
                            "The Deployment controller has not reported yet.")
    elif rollout is not None or (ready < wanted and not done):
        progressing_cond = (T, AppReason.ROLLOUT_IN_PROGRESS.value,
                            rollout or f"{ready} of {wanted} replicas are ready.")
    else:
        progressing_cond = (T, AppReason.ROLLOUT_COMPLETE.value,
                            f"All {wanted} replicas run the current spec.")

    # The Deployment's own Available condition accounts for maxUnavailable; without it, any replica counts.
    deployment_available = _deployment_condition(observed, "Available")
    if deployment_available is not None:
        serving = deployment_available.get("status") == "True"
    else:
        serving = available > 0
    if deployment is None or not observed:
        available_cond = (U, AppReason.DEPLOYMENT_NOT_OBSERVED.value,
                          "The Deployment controller has not reported yet.")
    elif wanted == 0:
        available_cond = (F, AppReason.SCALED_TO_ZERO.value,
                          "replicas is 0, so nothing serves traffic; raise spec.replicas to serve.")
    elif serving:
        available_cond = (T, AppReason.MINIMUM_REPLICAS_AVAILABLE.value,
                          f"{available} of {wanted} replicas are available.")
    else:
        available_cond = (F, AppReason.MINIMUM_REPLICAS_UNAVAILABLE.value,
                          f"Only {available} of {wanted} replicas are available; see why with `{pods}`.")

    conditions = [
        make_condition(type_.value, status, reason, message,
                       generation=generation, now=now, previous=previous)
        for type_, (status, reason, message) in (
            (AppConditionType.READY, ready_cond),
            (AppConditionType.PROGRESSING, progressing_cond),
            (AppConditionType.AVAILABLE, available_cond),
        )
    ]

    external_url = None
    expose = app.spec.expose
    if expose is not None:
        scheme = "https" if expose.tls else "http"
        external_url = f"{scheme}://{expose.host}{'' if expose.path == '/' else expose.path}"
    return AppStatus(
        phase=phase,
        url=f"http://{builders.child_name(name)}.{namespace}.svc.cluster.local" if namespace else None,
        external_url=external_url,
        replicas=replicas,
        ready_replicas=ready,
        ready=f"{ready}/{wanted}",
        observed_generation=generation,
        conditions=conditions,
    )


def invalid(generation: int, message: str, now: str, previous: list[Condition]) -> AppStatus:
    """The status of an App whose spec the model refuses: Failed, Ready=False/InvalidSpec.

    Nothing was applied, so the other conditions are kept as they were.
    """
    ready = make_condition(AppConditionType.READY.value, F, AppReason.INVALID_SPEC.value, message,
                           generation=generation, now=now, previous=previous)
    others = [c for c in previous if c.type != AppConditionType.READY.value]
    return AppStatus(phase=AppPhase.FAILED, observed_generation=generation, conditions=[ready, *others])
