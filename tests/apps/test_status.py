"""App status: one test per phase transition, plus what the status says around it.

The Deployment is a plain dict shaped like what the API server returns, so
each test reads as "the Deployment controller reported X, so the App says Y".
"""

from __future__ import annotations

from typing import Any

from mothership.api.app import AppPhase, AppStatus
from mothership.api.common import Condition, ConditionStatus
from mothership.apps import status
from tests.apps.examples import FULL, MINIMAL, app

NOW = "2026-01-02T03:04:05Z"
LATER = "2026-01-02T03:09:00Z"


def deployment(
    *,
    generation: int = 1,
    observed: int | None = 1,
    wanted: int = 3,
    replicas: int | None = None,
    updated: int | None = None,
    ready: int | None = None,
    available: int | None = None,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A Deployment as read back; counts default to a finished rollout of ``wanted`` replicas."""
    st: dict[str, Any] = {
        "replicas": wanted if replicas is None else replicas,
        "updatedReplicas": wanted if updated is None else updated,
        "readyReplicas": wanted if ready is None else ready,
        "availableReplicas": wanted if available is None else available,
    }
    if observed is not None:
        st["observedGeneration"] = observed
    if conditions is not None:
        st["conditions"] = conditions
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "shop", "namespace": "acme", "generation": generation},
        "spec": {"replicas": wanted},
        "status": st,
    }


def cond(result: AppStatus, type_: str) -> Condition:
    return next(c for c in result.conditions if c.type == type_)


def compute(dep: dict[str, Any] | None, problems: list[tuple[str, str]] | None = None,
            *, spec: dict[str, Any] | None = None, previous: list[Condition] | None = None,
            now: str = NOW) -> AppStatus:
    the_app = app(spec or {**MINIMAL, "replicas": 3})
    return status.compute(the_app, 7, dep, problems or [], now, previous or [])


# --- Transitions -------------------------------------------------------------------------------


def test_without_a_deployment_the_app_is_pending_and_ready_is_unknown() -> None:
    result = compute(None)
    assert result.phase is AppPhase.PENDING
    ready = cond(result, "Ready")
    assert (ready.status, ready.reason) == (ConditionStatus.UNKNOWN, "DeploymentNotObserved")
    assert "acme/shop" in ready.message
    assert result.ready == "0/3"


def test_a_deployment_its_controller_has_not_reported_on_is_pending() -> None:
    dep = deployment()
    del dep["status"]
    assert compute(dep).phase is AppPhase.PENDING


def test_a_deployment_whose_new_spec_is_not_yet_observed_is_progressing() -> None:
    result = compute(deployment(generation=2, observed=1))
    assert result.phase is AppPhase.PROGRESSING
    ready = cond(result, "Ready")
    assert (ready.status, ready.reason) == (ConditionStatus.FALSE, "RolloutInProgress")
    assert cond(result, "Progressing").status is ConditionStatus.TRUE


def test_fewer_updated_replicas_than_wanted_is_progressing_and_says_how_many() -> None:
    result = compute(deployment(updated=1, ready=1))
    assert result.phase is AppPhase.PROGRESSING
    assert "1 of 3 replicas run the current spec" in cond(result, "Ready").message


def test_old_replicas_still_terminating_is_progressing() -> None:
    result = compute(deployment(replicas=4))
    assert result.phase is AppPhase.PROGRESSING
    assert "1 old replicas are still terminating" in cond(result, "Ready").message


def test_new_replicas_not_ready_yet_during_a_rollout_is_progressing_not_degraded() -> None:
    rolling = [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}]
    result = compute(deployment(ready=1, available=1, conditions=rolling))
    assert result.phase is AppPhase.PROGRESSING


def test_all_wanted_replicas_updated_and_ready_is_ready() -> None:
    result = compute(deployment())
    assert result.phase is AppPhase.READY
    assert (result.replicas, result.ready_replicas, result.ready) == (3, 3, "3/3")
    ready = cond(result, "Ready")
    assert (ready.status, ready.reason) == (ConditionStatus.TRUE, "AllReplicasReady")
    assert (cond(result, "Progressing").status, cond(result, "Progressing").reason) == (
        ConditionStatus.TRUE, "RolloutComplete")
    assert cond(result, "Available").status is ConditionStatus.TRUE


def test_a_problem_the_handler_found_makes_the_app_degraded_with_its_reason_and_message() -> None:
    problem = ("SecretNotFound", "envFrom secret 'db' does not exist in namespace acme.")
    result = compute(deployment(ready=0, available=0), [problem])
    assert result.phase is AppPhase.DEGRADED
    ready = cond(result, "Ready")
    assert (ready.status, ready.reason, ready.message) == (ConditionStatus.FALSE, *problem)


def test_several_problems_are_all_in_the_message_and_the_first_gives_the_reason() -> None:
    problems = [("SecretNotFound", "Secret db is missing."),
                ("ConfigMapNotFound", "ConfigMap flags is missing.")]
    ready = cond(compute(deployment(), problems), "Ready")
    assert ready.reason == "SecretNotFound"
    assert ready.message == "Secret db is missing. ConfigMap flags is missing."


def test_a_problem_before_the_deployment_exists_is_still_degraded() -> None:
    assert compute(None, [("SecretNotFound", "Secret db is missing.")]).phase is AppPhase.DEGRADED


def test_a_finished_rollout_with_a_replica_gone_unready_is_degraded() -> None:
    done = [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]
    result = compute(deployment(ready=2, available=2, conditions=done))
    assert result.phase is AppPhase.DEGRADED
    ready = cond(result, "Ready")
    assert (ready.reason, ready.status) == ("ReplicasNotReady", ConditionStatus.FALSE)
    assert "2 of 3" in ready.message and "kubectl describe pods -n acme" in ready.message


def test_progress_deadline_exceeded_fails_the_app() -> None:
    stalled = [{
        "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
        "message": 'ReplicaSet "shop-5d8f" has timed out progressing.',
    }]
    result = compute(deployment(updated=1, ready=0, available=0, conditions=stalled))
    assert result.phase is AppPhase.FAILED
    for type_ in ("Ready", "Progressing"):
        c = cond(result, type_)
        assert (c.status, c.reason) == (ConditionStatus.FALSE, "ProgressDeadlineExceeded")
        assert 'ReplicaSet "shop-5d8f" has timed out progressing.' in c.message


def test_progress_deadline_exceeded_wins_over_problems_but_keeps_them_in_the_message() -> None:
    stalled = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]
    result = compute(deployment(ready=0, conditions=stalled), [("SecretNotFound", "Secret db is missing.")])
    assert result.phase is AppPhase.FAILED
    assert "Secret db is missing." in cond(result, "Ready").message


# --- lastTransitionTime ---------------------------------------------------------------------------


def test_last_transition_time_is_kept_when_a_conditions_status_did_not_change() -> None:
    first = compute(deployment(updated=1, ready=1))
    second = compute(deployment(updated=2, ready=2), previous=first.conditions, now=LATER)
    assert cond(second, "Ready").last_transition_time == NOW
    assert cond(second, "Ready").message != cond(first, "Ready").message


def test_last_transition_time_moves_when_a_conditions_status_changes() -> None:
    first = compute(deployment(updated=1, ready=1))
    second = compute(deployment(), previous=first.conditions, now=LATER)
    assert cond(second, "Ready").last_transition_time == LATER
    assert cond(second, "Progressing").last_transition_time == NOW


def test_first_conditions_get_now_and_the_generation() -> None:
    result = compute(deployment())
    assert [c.type for c in result.conditions] == ["Ready", "Progressing", "Available"]
    assert {c.last_transition_time for c in result.conditions} == {NOW}
    assert {c.observed_generation for c in result.conditions} == {7}
    assert result.observed_generation == 7


# --- What else the status says ------------------------------------------------------------------


def test_url_is_the_services_in_cluster_dns_name() -> None:
    assert compute(None).url == "http://shop.acme.svc.cluster.local"


def test_external_url_is_https_with_tls_and_http_without() -> None:
    tls = compute(None, spec=FULL)
    expose = {"host": "shop.example.com", "tls": False, "path": "/api"}
    plain = compute(None, spec={**MINIMAL, "expose": expose})
    assert tls.external_url == "https://shop.example.com"
    assert plain.external_url == "http://shop.example.com/api"
    assert compute(None).external_url is None


def test_under_autoscale_the_wanted_count_is_what_the_hpa_set_on_the_deployment() -> None:
    spec = {**MINIMAL, "autoscale": {"min": 2, "max": 10}}
    result = compute(deployment(wanted=6), spec=spec)
    assert (result.phase, result.ready) == (AppPhase.READY, "6/6")
    assert compute(None, spec=spec).ready == "0/2"


def test_scaled_to_zero_is_ready_but_not_available() -> None:
    result = compute(deployment(wanted=0), spec={**MINIMAL, "replicas": 0})
    assert result.phase is AppPhase.READY
    available = cond(result, "Available")
    assert (available.status, available.reason) == (ConditionStatus.FALSE, "ScaledToZero")


def test_available_follows_the_deployments_own_available_condition() -> None:
    down = [{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"}]
    available = cond(compute(deployment(ready=1, available=1, conditions=down)), "Available")
    assert (available.status, available.reason) == (ConditionStatus.FALSE, "MinimumReplicasUnavailable")


def test_the_status_is_the_same_for_the_same_observation() -> None:
    assert compute(deployment()).wire() == compute(deployment()).wire()


def test_an_invalid_spec_fails_the_app_and_keeps_the_other_conditions() -> None:
    before = compute(deployment())
    message = "invalid spec: spec.port: Input should be a valid integer"
    result = status.invalid(8, message, LATER, before.conditions)
    assert result.phase is AppPhase.FAILED
    ready = cond(result, "Ready")
    assert (ready.status, ready.reason, ready.message) == (ConditionStatus.FALSE, "InvalidSpec", message)
    assert ready.last_transition_time == LATER
    assert cond(result, "Available") == cond(before, "Available")
    assert result.observed_generation == 8
