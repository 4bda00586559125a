"""Tenant status: a condition per child from what applying it did, Ready over all, quota usage."""

from __future__ import annotations

from typing import Any

from mothership.api.common import Condition, ConditionStatus
from mothership.api.tenant import TenantStatus
from mothership.tenants import status
from tests.tenants.examples import FULL, MINIMAL, tenant

NOW = "2026-01-02T03:04:05Z"
LATER = "2026-01-02T03:09:00Z"
ALL_APPLIED: dict[str, str | None] = {
    "Namespace": None, "ResourceQuota": None, "LimitRange": None, "NetworkPolicy": None, "RoleBinding": None,
}


HARD = {"requests.cpu": "8", "requests.memory": "16Gi", "pods": "50", "count/apps.mothership.dev": "10"}
COUNTED: dict[str, Any] = {"spec": {"hard": HARD}, "status": {
    "hard": HARD,
    "used": {"requests.cpu": "0", "requests.memory": "0", "pods": "0", "count/apps.mothership.dev": "0"},
}}
"""FULL's quota as the quota controller leaves it once it has counted every limit."""
UNCOUNTED: dict[str, Any] = {"spec": {"hard": HARD}, "status": {
    "hard": HARD, "used": {"requests.cpu": "0", "requests.memory": "0", "pods": "0"},
}}
"""Synced before the quota controller knew the App CRD: no usage for ``count/apps.mothership.dev``."""


def compute(applied: dict[str, str | None], spec: dict[str, Any] | None = None,
            quota: dict[str, Any] | None = COUNTED, previous: list[Condition] | None = None,
            now: str = NOW) -> TenantStatus:
    t = tenant(FULL if spec is None else spec)
    return status.compute(t, 2, applied, quota, now, previous or [], accepted=status.claim(t, None))


def cond(result: TenantStatus, type_: str) -> Condition:
    return next(c for c in result.conditions if c.type == type_)


def test_every_child_applied_makes_the_tenant_ready() -> None:
    result = compute(ALL_APPLIED)
    assert [c.type for c in result.conditions] == [
        "Ready", "Accepted", "NamespaceReady", "QuotaReady", "LimitsReady", "IsolationReady", "AccessReady",
    ]
    assert {c.status for c in result.conditions} == {ConditionStatus.TRUE}
    assert cond(result, "Ready").reason == "AllChildrenReady"
    assert cond(result, "Accepted").reason == "NamespaceClaimed"
    assert {c.reason for c in result.conditions[2:]} == {"Applied"}
    assert result.namespace == "team-acme"
    assert result.observed_generation == 2


def test_a_child_the_api_server_refused_is_false_with_its_error_and_so_is_ready() -> None:
    applied = {**ALL_APPLIED, "NetworkPolicy": "networkpolicies is forbidden: cannot create"}
    result = compute(applied)
    isolation = cond(result, "IsolationReady")
    assert (isolation.status, isolation.reason) == (ConditionStatus.FALSE, "ApplyFailed")
    assert isolation.message == (
        "NetworkPolicy team-acme/mothership could not be applied: networkpolicies is forbidden: cannot create"
    )
    ready = cond(result, "Ready")
    assert (ready.status, ready.reason) == (ConditionStatus.FALSE, "ChildrenNotReady")
    assert "networkpolicies is forbidden" in ready.message


def test_a_child_not_applied_yet_is_unknown_and_so_is_ready() -> None:
    result = compute({"Namespace": None})
    assert cond(result, "QuotaReady").status is ConditionStatus.UNKNOWN
    assert cond(result, "QuotaReady").reason == "NotApplied"
    ready = cond(result, "Ready")
    assert ready.status is ConditionStatus.UNKNOWN
    assert ready.message == "Waiting for QuotaReady, LimitsReady, IsolationReady, AccessReady."


def test_a_failed_namespace_makes_the_namespace_condition_false() -> None:
    result = compute({**ALL_APPLIED, "Namespace": "namespace team-acme is being terminated"})
    assert cond(result, "NamespaceReady").status is ConditionStatus.FALSE
    assert cond(result, "Ready").status is ConditionStatus.FALSE


def test_children_the_spec_does_not_ask_for_are_true_not_requested_and_say_what_it_means() -> None:
    result = compute({"Namespace": None, "LimitRange": None}, spec={**MINIMAL, "isolation": {"mode": "none"}})
    for type_ in ("QuotaReady", "IsolationReady", "AccessReady"):
        c = cond(result, type_)
        assert (c.status, c.reason) == (ConditionStatus.TRUE, "NotRequested"), type_
    assert "any namespace may reach" in cond(result, "IsolationReady").message
    assert cond(result, "Ready").status is ConditionStatus.TRUE


def test_applied_messages_name_the_child_and_what_it_does() -> None:
    result = compute(ALL_APPLIED)
    messages = {c.type: c.message for c in result.conditions}
    assert messages["NamespaceReady"] == "Namespace team-acme exists and enforces Pod Security restricted."
    assert messages["QuotaReady"] == "ResourceQuota team-acme/mothership limits cpu, memory, pods, apps."
    assert messages["AccessReady"] == "RoleBinding team-acme/mothership grants edit to 4 owner(s)."


def test_usage_is_used_over_hard_keyed_by_the_spec_quota_field() -> None:
    quota = {"status": {
        "hard": {
            "requests.cpu": "8", "requests.memory": "16Gi", "pods": "50", "count/apps.mothership.dev": "10",
        },
        "used": {"requests.cpu": "1500m", "requests.memory": "3Gi", "pods": "3"},
    }}
    assert compute(ALL_APPLIED, quota=quota).usage == {
        "apps": "0/10", "cpu": "1500m/8", "memory": "3Gi/16Gi", "pods": "3/50",
    }


def test_without_a_quota_or_its_status_usage_is_empty() -> None:
    assert compute(ALL_APPLIED, quota=None).usage == {}
    assert compute(ALL_APPLIED, quota={"spec": {"hard": {"pods": "5"}}}).usage == {}


def test_a_quota_lacking_usage_for_a_limit_is_not_ready_and_says_what_the_api_server_refuses() -> None:
    result = compute(ALL_APPLIED, quota=UNCOUNTED)
    quota = cond(result, "QuotaReady")
    assert (quota.status, quota.reason) == (ConditionStatus.FALSE, "QuotaNotComputed")
    assert quota.message == (
        "ResourceQuota team-acme/mothership is not computed yet: the quota controller has not counted "
        "count/apps.mothership.dev, and until it does the API server refuses new Apps in team-acme (status "
        "unknown for quota). On a cluster whose CRDs are new it learns them within a minute; the operator "
        "re-applies the quota until it has counted them.")
    ready = cond(result, "Ready")
    assert (ready.status, ready.reason, ready.message) == (ConditionStatus.FALSE, "QuotaNotComputed",
                                                           quota.message)


def test_a_quota_not_synced_yet_or_not_read_is_not_ready() -> None:
    unsynced = {"spec": {"hard": HARD}, "status": {"hard": {}, "used": {}}}
    for quota in ({"spec": {"hard": HARD}}, unsynced, None):
        result = compute(ALL_APPLIED, quota=quota)
        c = cond(result, "QuotaReady")
        assert (c.status, c.reason) == (ConditionStatus.FALSE, "QuotaNotComputed"), quota
        assert "refuses new Apps and Pods in team-acme" in c.message or quota is None, c.message
        assert cond(result, "Ready").status is ConditionStatus.FALSE


def test_an_uncounted_quota_and_another_failure_make_ready_children_not_ready() -> None:
    result = compute({**ALL_APPLIED, "RoleBinding": "forbidden"}, quota=UNCOUNTED)
    ready = cond(result, "Ready")
    assert (ready.status, ready.reason) == (ConditionStatus.FALSE, "ChildrenNotReady")
    assert "count/apps.mothership.dev" in ready.message and "forbidden" in ready.message


def test_a_quota_not_requested_needs_no_count() -> None:
    result = compute({"Namespace": None, "LimitRange": None}, spec={**MINIMAL, "isolation": {"mode": "none"}},
                     quota=None)
    assert cond(result, "QuotaReady").reason == "NotRequested"
    assert cond(result, "Ready").status is ConditionStatus.TRUE


def test_uncounted_lists_the_hard_keys_without_usage_and_synced_compares_status_hard() -> None:
    assert status.uncounted(UNCOUNTED) == ["count/apps.mothership.dev"]
    assert status.uncounted(COUNTED) == [] and status.counted(COUNTED)
    assert status.uncounted({"spec": {"hard": HARD}}) == sorted(HARD)
    assert not status.counted(None) and not status.counted(UNCOUNTED)
    assert status.synced(UNCOUNTED) and status.synced(COUNTED)
    assert not status.synced({"spec": {"hard": HARD}}) and not status.synced(None)
    assert not status.synced({"spec": {"hard": HARD}, "status": {"hard": {"pods": "50"}}})


def test_nudges_come_every_5_s_for_a_minute_then_back_off_to_5_minutes() -> None:
    delays = [status.nudge_delay(n) for n in range(1, 22)]
    assert delays[:11] == [5.0] * 11
    assert delays[11:16] == [10.0, 20.0, 40.0, 80.0, 160.0]
    assert set(delays[16:]) == {300.0}
    assert sum(delays[:11]) < 60 <= sum(delays[:12])


def test_last_transition_time_is_kept_when_a_conditions_status_did_not_change() -> None:
    first = compute({"Namespace": None})
    second = compute(ALL_APPLIED, previous=first.conditions, now=LATER)
    assert cond(second, "NamespaceReady").last_transition_time == NOW
    assert cond(second, "QuotaReady").last_transition_time == LATER
    assert cond(second, "Ready").last_transition_time == LATER


def test_conditions_carry_the_generation_they_were_computed_from() -> None:
    assert {c.observed_generation for c in compute(ALL_APPLIED).conditions} == {2}
