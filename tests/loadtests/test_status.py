"""LoadTest status: one test per phase transition, worker pods read into counts and failures,
refusals (the policy checks before any child exists) and the coordinator's verdicts as phases."""

from __future__ import annotations

import datetime
import json
from typing import Any

from mothership.api.loadtest import (
    LoadTestPhase,
    LoadTestSpec,
    LoadTestStatus,
    Summary,
    ThresholdResult,
    WorkerFailure,
)
from mothership.api.tenant import LoadTestLimits
from mothership.loadgen.coordinator import Result
from mothership.loadgen.coordinator import Verdict as RunVerdict
from mothership.loadtests import coordination
from mothership.loadtests import status as st
from mothership.loadtests.status import (
    LoadTestConditionType as C,
)
from mothership.loadtests.status import (
    LoadTestReason as R,
)
from mothership.loadtests.status import (
    Observed,
    Refusal,
    Verdict,
    compute,
    worker_counts,
)
from mothership.loadtests.targets import ServiceLookup

NOW = datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
LATER = NOW + datetime.timedelta(seconds=10)
START_AT = "2025-01-02T03:04:07Z"  # two seconds after NOW


def spec(**over: Any) -> LoadTestSpec:
    base: dict[str, Any] = {
        "target": {"url": "http://127.0.0.1:8089"},
        "scenarios": [{"name": "browse", "requests": [{"path": "/"}]}],
        "virtualUsers": 6,
        "workers": 3,
        "duration": "3s",
    }
    return LoadTestSpec.model_validate({**base, **over})


def pod(index: int, phase: str = "Pending", *, ready: bool = False, created: str = "2025-01-02T03:04:05Z",
        terminated: dict[str, Any] | None = None, waiting: dict[str, Any] | None = None,
        reason: str | None = None, label_only: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": f"lt-workers-{index}-abcde", "creationTimestamp": created,
                            "labels": {st.INDEX_KEY: str(index)}}
    if not label_only:
        meta["annotations"] = {st.INDEX_KEY: str(index)}
    status: dict[str, Any] = {"phase": phase}
    if phase == "Running":
        status["podIP"] = f"127.0.0.{index + 2}"
        status["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
    if terminated is not None:
        status["containerStatuses"] = [{"name": "worker", "state": {"terminated": terminated}}]
    if waiting is not None:
        status["containerStatuses"] = [{"name": "worker", "state": {"waiting": waiting}}]
    if reason is not None:
        status["reason"] = reason
    return {"metadata": meta, "status": status}


def cond(status: LoadTestStatus, type_: C) -> tuple[str, str]:
    c = st.condition(status, type_)
    assert c is not None, f"no {type_} condition"
    return c.status.value, c.reason


def threshold(ok: bool, value: float | None = 0.1) -> ThresholdResult:
    return ThresholdResult(metric="http_req_duration", stat="p95", op="lt", limit=0.2, value=value, ok=ok)


def running_status() -> LoadTestStatus:
    return compute(Observed(now=LATER, spec=spec(), launched=True, start_at=START_AT,
                            pods=[pod(i, "Running", ready=True) for i in range(3)],
                            summary=Summary(requests=10)))


# --- phases -------------------------------------------------------------------------


def test_a_test_not_yet_looked_at_is_pending_with_unknown_conditions() -> None:
    status = compute(Observed(now=NOW, spec=spec()))
    assert status.phase is LoadTestPhase.PENDING
    assert cond(status, C.ACCEPTED) == ("Unknown", R.PENDING)
    assert cond(status, C.WORKERS_READY) == ("Unknown", R.PENDING)
    assert cond(status, C.COMPLETED) == ("Unknown", R.PENDING)
    assert status.completion_time is None


def test_a_launched_test_is_starting_and_waits_for_its_workers() -> None:
    status = compute(Observed(now=NOW, spec=spec(), launched=True,
                              pods=[pod(0, "Running", ready=True), pod(1, "Running"), pod(2)]))
    assert status.phase is LoadTestPhase.STARTING
    assert cond(status, C.ACCEPTED) == ("True", R.ACCEPTED)
    assert cond(status, C.WORKERS_READY) == ("False", R.WAITING_FOR_WORKERS)
    assert cond(status, C.STARTED) == ("False", R.WAITING_FOR_WORKERS)
    assert cond(status, C.COMPLETED) == ("False", R.IN_PROGRESS)
    assert status.workers.model_dump() == {"total": 3, "ready": 1, "running": 2, "succeeded": 0,
                                           "failed": 0, "failures": []}


def test_all_workers_ready_sets_workers_ready_true() -> None:
    status = compute(Observed(now=NOW, spec=spec(), launched=True,
                              pods=[pod(i, "Running", ready=True) for i in range(3)]))
    assert status.phase is LoadTestPhase.STARTING
    assert cond(status, C.WORKERS_READY) == ("True", R.ALL_WORKERS_READY)


def test_a_chosen_barrier_in_the_future_is_still_starting() -> None:
    status = compute(Observed(now=NOW, spec=spec(), launched=True, start_at=START_AT))
    assert status.phase is LoadTestPhase.STARTING
    assert status.start_at == START_AT
    assert status.start_time is None
    assert cond(status, C.STARTED) == ("True", R.START_SCHEDULED)


def test_passing_the_barrier_makes_it_running_with_a_start_time() -> None:
    status = running_status()
    assert status.phase is LoadTestPhase.RUNNING
    assert status.start_time == START_AT
    assert status.summary.requests == 10
    assert cond(status, C.COMPLETED) == ("False", R.IN_PROGRESS)


def test_stop_true_moves_a_running_test_to_stopping() -> None:
    status = compute(Observed(now=LATER, spec=spec(stop=True), launched=True, start_at=START_AT,
                              stop_requested=True), running_status())
    assert status.phase is LoadTestPhase.STOPPING


def test_the_stopped_verdict_ends_stopped_with_the_partial_summary() -> None:
    status = compute(Observed(now=LATER, spec=spec(), launched=True, start_at=START_AT,
                              stop_requested=True, verdict=Verdict.STOPPED,
                              summary=Summary(requests=42)), running_status())
    assert status.phase is LoadTestPhase.STOPPED
    assert status.summary.requests == 42
    assert cond(status, C.COMPLETED) == ("True", R.STOPPED_BY_USER)
    assert status.completion_time == st.rfc3339(LATER)


def test_completed_with_every_threshold_holding_is_passed() -> None:
    status = compute(Observed(now=LATER, spec=spec(thresholds=[
        {"metric": "http_req_duration", "stat": "p95", "lt": "200ms"}]), launched=True,
        start_at=START_AT, verdict=Verdict.COMPLETED, thresholds=[threshold(True)]), running_status())
    assert status.phase is LoadTestPhase.PASSED
    assert cond(status, C.THRESHOLDS_PASSED) == ("True", R.ALL_THRESHOLDS_PASSED)
    assert cond(status, C.COMPLETED) == ("True", R.RAN_TO_COMPLETION)


def test_completed_with_a_failing_threshold_is_failed_and_says_which() -> None:
    status = compute(Observed(now=LATER, spec=spec(thresholds=[
        {"metric": "http_req_duration", "stat": "p95", "lt": "200ms"}]), launched=True,
        start_at=START_AT, verdict=Verdict.COMPLETED, thresholds=[threshold(False, 0.3)]), running_status())
    assert status.phase is LoadTestPhase.FAILED
    c = st.condition(status, C.THRESHOLDS_PASSED)
    assert c is not None and c.reason == R.THRESHOLD_FAILED and "http_req_duration p95 = 0.3" in c.message


def test_an_abort_on_fail_verdict_is_failed() -> None:
    status = compute(Observed(now=LATER, spec=spec(), launched=True, start_at=START_AT,
                              verdict=Verdict.ABORTED, verdict_message="errors rate 0.5 !< 0.01",
                              thresholds=[threshold(False)]), running_status())
    assert status.phase is LoadTestPhase.FAILED
    c = st.condition(status, C.COMPLETED)
    assert c is not None and (c.reason, c.message) == (R.ABORTED_ON_THRESHOLD, "errors rate 0.5 !< 0.01")


def test_a_no_data_verdict_is_failed_even_though_every_threshold_holds_on_nothing() -> None:
    status = compute(Observed(now=LATER, spec=spec(thresholds=[
        {"metric": "http_req_duration", "stat": "p95", "lt": "200ms"}]), launched=True, start_at=START_AT,
        verdict=Verdict.NO_DATA, verdict_message="NoData: no HTTP request got a response.",
        thresholds=[threshold(True, None)]), running_status())
    assert status.phase is LoadTestPhase.FAILED
    assert cond(status, C.COMPLETED) == ("True", R.NO_DATA)
    assert cond(status, C.THRESHOLDS_PASSED) == ("False", R.NO_DATA)


def test_the_coordinators_no_data_failure_maps_to_the_no_data_verdict() -> None:
    from mothership.loadgen.coordinator import Result
    from mothership.loadgen.coordinator import Verdict as RunVerdict
    from mothership.loadtests.coordination import verdict_of

    assert verdict_of(Result(verdict=RunVerdict.FAILED, no_data=True)) is Verdict.NO_DATA
    assert verdict_of(Result(verdict=RunVerdict.FAILED)) is Verdict.COMPLETED
    assert verdict_of(Result(verdict=RunVerdict.FAILED, aborted=True)) is Verdict.ABORTED


def test_a_coordination_failure_is_errored() -> None:
    status = compute(Observed(now=LATER, spec=spec(), launched=True, verdict=Verdict.ERRORED,
                              verdict_message="worker 1 at 127.0.0.3:9090 stopped answering"))
    assert status.phase is LoadTestPhase.ERRORED
    assert cond(status, C.COMPLETED) == ("True", R.COORDINATION_FAILED)
    assert cond(status, C.STARTED) == ("False", R.NEVER_STARTED)


def test_a_refused_target_is_errored_with_accepted_false() -> None:
    refusal = Refusal(R.TARGET_NOT_ALLOWED, "target host evil.example.com is outside namespace team-a")
    status = compute(Observed(now=NOW, spec=spec(), refusal=refusal))
    assert status.phase is LoadTestPhase.ERRORED
    assert cond(status, C.ACCEPTED) == ("False", R.TARGET_NOT_ALLOWED)
    assert cond(status, C.COMPLETED) == ("True", R.REFUSED)
    assert cond(status, C.WORKERS_READY) == ("Unknown", R.PENDING)
    assert status.completion_time == st.rfc3339(NOW)


def test_an_invalid_spec_is_errored_without_a_spec() -> None:
    status = compute(Observed(now=NOW, spec=None, refusal=Refusal(R.INVALID_SPEC, "spec.x: bad")))
    assert status.phase is LoadTestPhase.ERRORED
    assert cond(status, C.ACCEPTED) == ("False", R.INVALID_SPEC)


def test_a_failed_worker_beyond_the_tolerance_is_errored_and_named() -> None:
    pods = [pod(0, "Running", ready=True), pod(2, "Running", ready=True),
            pod(1, "Failed", terminated={"exitCode": 137, "reason": "OOMKilled"})]
    status = compute(Observed(now=LATER, spec=spec(), launched=True, start_at=START_AT, pods=pods),
                     running_status())
    assert status.phase is LoadTestPhase.ERRORED
    assert status.workers.failed == 1
    assert status.workers.failures[0].index == 1
    assert status.workers.failures[0].reason == "OOMKilled"
    c = st.condition(status, C.COMPLETED)
    assert c is not None and c.reason == R.WORKER_FAILED and "worker 1: OOMKilled" in c.message
    assert cond(status, C.WORKERS_READY) == ("False", R.WORKER_FAILED)


def test_a_tolerated_worker_failure_keeps_the_test_running() -> None:
    pods = [pod(0, "Running", ready=True), pod(2, "Running", ready=True),
            pod(1, "Failed", terminated={"exitCode": 1, "reason": "Error"})]
    status = compute(Observed(now=LATER, spec=spec(toleratedWorkerFailures=1), launched=True,
                              start_at=START_AT, pods=pods), running_status())
    assert status.phase is LoadTestPhase.RUNNING
    assert status.workers.failed == 1
    assert cond(status, C.WORKERS_READY) == ("True", R.ALL_WORKERS_READY)


def test_a_worker_failure_outranks_a_completed_verdict() -> None:
    pods = [pod(0, "Succeeded"), pod(1, "Succeeded"),
            pod(2, "Failed", terminated={"exitCode": 1, "reason": "Error"})]
    status = compute(Observed(now=LATER, spec=spec(), launched=True, start_at=START_AT, pods=pods,
                              verdict=Verdict.COMPLETED), running_status())
    assert status.phase is LoadTestPhase.ERRORED


def test_a_final_phase_never_changes_and_results_stay() -> None:
    passed = compute(Observed(now=LATER, spec=spec(), launched=True, start_at=START_AT,
                              verdict=Verdict.COMPLETED, summary=Summary(requests=99)), running_status())
    later = compute(Observed(now=LATER + datetime.timedelta(hours=1), spec=spec(stop=True),
                             stop_requested=True, summary=Summary(requests=1)), passed)
    assert later == passed
    assert later.summary.requests == 99


def test_results_stay_when_the_pods_are_gone() -> None:
    before = running_status()
    after = compute(Observed(now=LATER, spec=spec(), launched=True, start_at=START_AT), before)
    assert after.summary.requests == 10
    assert after.workers == before.workers


def test_transition_times_change_only_when_a_condition_changes() -> None:
    first = compute(Observed(now=NOW, spec=spec(), launched=True))
    second = compute(Observed(now=LATER, spec=spec(), launched=True, start_at=START_AT), first)
    accepted_1 = st.condition(first, C.ACCEPTED)
    accepted_2 = st.condition(second, C.ACCEPTED)
    started_2 = st.condition(second, C.STARTED)
    assert accepted_1 is not None and accepted_2 is not None and started_2 is not None
    assert accepted_2.last_transition_time == accepted_1.last_transition_time == st.rfc3339(NOW)
    assert started_2.last_transition_time == st.rfc3339(LATER)


def test_no_thresholds_reads_as_passed_and_thresholds_without_data_as_unknown() -> None:
    assert cond(running_status(), C.THRESHOLDS_PASSED) == ("True", R.NO_THRESHOLDS)
    status = compute(Observed(now=LATER, spec=spec(thresholds=[
        {"metric": "http_req_duration", "stat": "p95", "lt": "200ms"}]), launched=True,
        thresholds=[threshold(True, None)]))
    assert cond(status, C.THRESHOLDS_PASSED) == ("Unknown", R.NO_DATA)


def test_the_status_round_trips_through_its_wire_form() -> None:
    status = running_status()
    assert st.read_status(st.wire(status)) == status
    assert st.read_status(None) == LoadTestStatus()


# --- worker pods --------------------------------------------------------------------


def test_counts_come_from_the_newest_pod_per_index() -> None:
    pods = [pod(0, "Failed", created="2025-01-01T00:00:00Z", terminated={"exitCode": 1}),
            pod(0, "Running", ready=True, created="2025-01-01T00:00:09Z"),
            pod(1, "Succeeded"), pod(2, "Running"), pod(7, "Running", ready=True)]
    counts = worker_counts(pods, 3)
    assert (counts.ready, counts.running, counts.succeeded, counts.failed) == (1, 2, 1, 0)


def test_the_index_label_is_enough_without_the_annotation() -> None:
    assert st.pod_index(pod(2, label_only=True)) == 2
    assert st.pod_index({"metadata": {}}) is None


def test_an_image_pull_failure_counts_as_failed_before_the_pod_runs() -> None:
    counts = worker_counts([pod(0, waiting={"reason": "ImagePullBackOff", "message": "no such image"})], 1)
    assert counts.failures == [WorkerFailure(index=0, reason="ImagePullBackOff", message="no such image")]
    assert worker_counts([pod(0, waiting={"reason": "ErrImagePull"})], 1).failures[0].reason == "ErrImagePull"
    assert worker_counts([pod(0, waiting={"reason": "ContainerCreating"})], 1).failed == 0


def test_an_error_exit_carries_the_envelope_error_not_the_whole_summary() -> None:
    envelope = json.dumps({"v": 1, "state": "failed", "error": "RuntimeError: boom", "snapshot": "mss1:xx"})
    counts = worker_counts([pod(0, "Failed", terminated={"exitCode": 1, "reason": "Error",
                                                         "message": envelope})], 1)
    assert counts.failures == [WorkerFailure(index=0, reason="Error", message="RuntimeError: boom")]


def test_an_error_exit_without_message_names_the_exit_code() -> None:
    counts = worker_counts([pod(0, "Failed", terminated={"exitCode": 137, "reason": "Error"})], 1)
    assert counts.failures[0].message == "the worker exited with code 137"


def test_an_oom_kill_says_to_raise_memory() -> None:
    counts = worker_counts([pod(0, "Failed", terminated={"exitCode": 137, "reason": "OOMKilled"})], 1)
    assert counts.failures[0].reason == "OOMKilled"
    assert "spec.resources.memory" in counts.failures[0].message


def test_a_pod_deadline_is_a_failure_and_so_is_the_jobs() -> None:
    assert worker_counts([pod(0, "Failed", reason="DeadlineExceeded")], 1).failures[0].reason == (
        "DeadlineExceeded")
    job = {"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                                      "message": "Job was active longer than specified deadline"}]}}
    counts = worker_counts([pod(0, "Succeeded"), pod(1, "Running", ready=True)], 3, job=job)
    assert [(f.index, f.reason) for f in counts.failures] == [
        (1, "DeadlineExceeded"), (2, "DeadlineExceeded")]
    assert (counts.succeeded, counts.running, counts.ready) == (1, 0, 0)


def test_extra_failures_join_the_pod_failures_once_per_index() -> None:
    counts = worker_counts([pod(0, "Running", ready=True)], 2, extra_failures=[
        WorkerFailure(index=1, reason="Unreachable", message="connection refused")])
    assert [(f.index, f.reason) for f in counts.failures] == [(1, "Unreachable")]


def failed_job(reason: str = "MaxFailedIndexesExceeded", failed_indexes: str = "1",
               type_: str = "Failed") -> dict[str, Any]:
    return {"status": {"failedIndexes": failed_indexes, "conditions": [
        {"type": type_, "status": "True", "reason": reason, "message": "Job has exceeded maxFailedIndexes"}]}}


def test_workers_the_job_controller_ended_after_the_job_failed_are_not_failures() -> None:
    """maxFailedIndexes exceeded: the Job controller deletes the other pods; the coordinator then
    loses them, and the one killed worker stays the only failure named."""
    deleted = pod(0, "Succeeded", terminated={"exitCode": 0, "reason": "Completed"})
    deleted["metadata"]["deletionTimestamp"] = "2025-01-02T03:04:09Z"
    killed = pod(1, "Failed", terminated={"exitCode": 137, "reason": "Error"})
    lost = [WorkerFailure(index=i, reason="Unreachable", message="no snapshot in 3 polls") for i in (0, 2)]
    for type_ in ("FailureTarget", "Failed"):
        status = compute(Observed(now=LATER, spec=spec(), launched=True, start_at=START_AT,
                                  pods=[deleted, killed], job=failed_job(type_=type_), extra_failures=lost,
                                  verdict=Verdict.ERRORED), running_status())
        assert status.phase is LoadTestPhase.ERRORED
        assert [(f.index, f.reason) for f in status.workers.failures] == [(1, "Error")]
        c = st.condition(status, C.COMPLETED)
        assert c is not None and c.reason == R.WORKER_FAILED and "worker 0" not in c.message


def test_a_deleted_pod_that_failed_is_no_failure_once_the_job_failed_unless_the_job_lists_it() -> None:
    deleted = pod(0, "Failed", terminated={"exitCode": 137, "reason": "Error"})
    deleted["metadata"]["deletionTimestamp"] = "2025-01-02T03:04:09Z"
    killed = pod(1, "Failed", terminated={"exitCode": 137, "reason": "Error"})
    counts = worker_counts([deleted, killed], 3, job=failed_job())
    assert [(f.index, f.reason) for f in counts.failures] == [(1, "Error")]
    counts = worker_counts([deleted, killed], 3, job=failed_job(failed_indexes="0-1"))
    assert [(f.index, f.reason) for f in counts.failures] == [(0, "Error"), (1, "Error")]


def test_without_a_failed_job_a_lost_or_deleted_worker_is_a_failure() -> None:
    deleted = pod(0, "Failed", terminated={"exitCode": 137, "reason": "Error"})
    deleted["metadata"]["deletionTimestamp"] = "2025-01-02T03:04:09Z"
    lost = [WorkerFailure(index=2, reason="Unreachable", message="no snapshot in 3 polls")]
    running = {"status": {"active": 2}}
    counts = worker_counts([deleted], 3, job=running, extra_failures=lost)
    assert [(f.index, f.reason) for f in counts.failures] == [(0, "Error"), (2, "Unreachable")]
    # A Job failed by its deadline names every worker that did not finish (as before).
    counts = worker_counts([pod(0, "Succeeded")], 2, job=failed_job(reason="DeadlineExceeded",
                                                                    failed_indexes=""))
    assert [(f.index, f.reason) for f in counts.failures] == [(1, "DeadlineExceeded")]


def test_the_jobs_failed_indexes_read_as_ranges() -> None:
    assert st.ended_by_job({}, failed_job(failed_indexes="0,2-3"), 5) == {1, 4}
    assert st.ended_by_job({}, failed_job(failed_indexes=""), 2) == {0, 1}
    assert st.ended_by_job({}, {"status": {}}, 2) == set()


def test_a_worker_failure_shows_as_stopping_while_the_coordinator_winds_down() -> None:
    pods = [pod(0, "Running", ready=True), pod(2, "Running", ready=True),
            pod(1, "Failed", terminated={"exitCode": 137, "reason": "Error"})]
    status = compute(Observed(now=LATER, spec=spec(), launched=True, start_at=START_AT, pods=pods,
                              coordinating=True), running_status())
    assert status.phase is LoadTestPhase.STOPPING
    assert status.workers.failures[0].index == 1


# --- refusals (coordination.refusal_for is pure) and the coordinator's verdicts -------------------


def refusal(limits: LoadTestLimits | None = None, operator: tuple[str, ...] = (),
            service: ServiceLookup | None = None, **over: Any) -> Refusal | None:
    return coordination.refusal_for(spec(**over), "team-a", limits or LoadTestLimits(), operator, service)


def test_a_target_outside_the_namespace_is_refused_by_default_and_the_message_says_what_to_do() -> None:
    found = refusal(target={"url": "http://shop.team-b.svc:80"})
    assert found is not None and found.reason is R.TARGET_NOT_ALLOWED
    assert "shop.team-b.svc" in found.message and "allowedTargets" in found.message
    status = compute(Observed(now=NOW, spec=spec(), refusal=found))
    assert status.phase is LoadTestPhase.ERRORED


def test_existing_services_of_the_namespace_and_apps_are_allowed_without_patterns() -> None:
    shop = ServiceLookup.of("shop", {"spec": {"type": "ClusterIP"}})
    assert refusal(target={"url": "http://shop.team-a.svc.cluster.local:80"}, service=shop) is None
    assert refusal(target={"app": "shop"}, service=shop) is None


def test_a_missing_or_external_name_service_is_refused_but_an_apps_missing_service_is_waited_for() -> None:
    missing = ServiceLookup.of("shop", None)
    alias = ServiceLookup.of("shop", {"spec": {"type": "ExternalName", "externalName": "evil.example.com"}})
    found = refusal(target={"url": "http://shop.team-a"}, service=missing)
    assert found is not None and found.reason is R.TARGET_NOT_ALLOWED
    assert "Service shop in namespace team-a does not exist" in found.message
    assert refusal(target={"app": "shop"}, service=missing) is None  # launch waits for it
    for target in ({"url": "http://shop.team-a"}, {"app": "shop"}):
        found = refusal(target=target, service=alias)
        assert found is not None and "ExternalName Service (to evil.example.com)" in found.message


def test_the_tenants_patterns_and_the_operators_both_allow_a_target() -> None:
    assert refusal(LoadTestLimits(allowed_targets=["127.0.0.1:*"])) is None
    assert refusal(operator=("127.0.0.1",)) is None
    assert refusal(LoadTestLimits(allowed_targets=["*.example.com"])) is not None


def test_the_tenants_worker_and_virtual_user_caps_are_enforced() -> None:
    limits = LoadTestLimits(max_workers=2, max_virtual_users=5, allowed_targets=["127.0.0.1:*"])
    too_many_workers = refusal(limits)  # 3 workers
    assert too_many_workers is not None and too_many_workers.reason is R.TOO_MANY_WORKERS
    assert "at most 2" in too_many_workers.message
    too_many_users = refusal(limits, workers=2, virtualUsers=6)
    assert too_many_users is not None and too_many_users.reason is R.TOO_MANY_VIRTUAL_USERS


def test_the_coordinators_verdicts_map_onto_the_phases() -> None:
    def phase(verdict: RunVerdict, reason: str = "", ok: bool = True) -> LoadTestPhase:
        result = Result(verdict=verdict, reason=reason, final=True, thresholds=[threshold(ok)])
        return compute(Observed(now=LATER, spec=spec(), launched=True, start_at=START_AT,
                                verdict=coordination.verdict_of(result), thresholds=result.thresholds),
                       running_status()).phase

    assert phase(RunVerdict.PASSED) is LoadTestPhase.PASSED
    assert phase(RunVerdict.FAILED, "1 of 1 thresholds failed", ok=False) is LoadTestPhase.FAILED
    assert phase(RunVerdict.FAILED, "aborted: errors rate 0.5 !< 0.01", ok=False) is LoadTestPhase.FAILED
    assert phase(RunVerdict.STOPPED) is LoadTestPhase.STOPPED
    assert phase(RunVerdict.ERRORED) is LoadTestPhase.ERRORED
    assert coordination.verdict_of(Result()) is None


def test_the_start_barrier_survives_its_round_trip_through_status_to_the_microsecond() -> None:
    epoch = 1795943092.947105
    assert abs(coordination.rfc3339_to_epoch(coordination.epoch_to_rfc3339(epoch)) - epoch) < 1e-6


def test_status_keeps_the_ten_busiest_request_rows_in_table_order_and_the_row_count() -> None:
    from mothership.api.loadtest import RequestStats

    rows = [RequestStats(scenario="shop", name=f"r{k}", requests=k % 7 * 10 + k) for k in range(25)]
    busy = compute(Observed(now=LATER, spec=spec(), launched=True, start_at=START_AT, by_request=rows),
                   running_status())
    expected = sorted(rows, key=lambda r: -r.requests)[:10]
    assert [r.name for r in busy.by_request] == [r.name for r in rows if r in expected]
    assert busy.by_request_rows == 25
    kept = compute(Observed(now=LATER, spec=spec(), launched=True, start_at=START_AT), busy)
    assert kept.by_request == busy.by_request and kept.by_request_rows == 25  # None keeps them
    assert len(json.dumps(busy.wire())) < 8000  # bounded: 10 rows whatever the spec
