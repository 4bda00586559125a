"""The quota pre-flight (pure): workers x resources against what the namespace's ResourceQuota has left."""

from __future__ import annotations

from typing import Any

import pytest

from mothership.api.loadtest import LoadTestSpec, load_spec
from mothership.loadtests.coordination import refused_by_quota
from mothership.loadtests.quota import amount, demand, exceeded, shortfalls, show


def spec(workers: int = 4, cpu: str = "1", memory: str = "256Mi") -> LoadTestSpec:
    return load_spec({
        "target": {"url": "http://127.0.0.1:1"},
        "scenarios": [{"name": "s", "requests": [{"path": "/"}]}],
        "virtualUsers": workers, "workers": workers, "duration": "30s",
        "resources": {"cpu": cpu, "memory": memory},
    })


def quota(hard: dict[str, str], used: dict[str, str] | None = None, *,
          counted: bool = True) -> dict[str, Any]:
    """A ResourceQuota as read; ``counted=False`` before the quota controller wrote its status."""
    status = {"hard": hard, "used": used or dict.fromkeys(hard, "0")} if counted else {}
    return {"metadata": {"name": "mothership"}, "spec": {"hard": hard}, "status": status}


@pytest.mark.parametrize(("text", "value"), [
    ("2", 2.0), ("1500m", 1.5), ("4Gi", 4 * 2**30), ("256Mi", 2**28), ("1k", 1000.0), ("1e3", 1000.0),
    ("0", 0.0), ("100u", 1e-4), ("1.5", 1.5), ("abc", None), ("", None),
])
def test_quantities_read_as_the_api_server_writes_them(text: str, value: float | None) -> None:
    assert amount(text) == (pytest.approx(value) if value is not None else None)


def test_the_workers_demand_requests_limits_and_one_pod_each() -> None:
    need = demand(spec(workers=4, cpu="500m", memory="1Gi"))
    assert need["requests.cpu"] == need["limits.cpu"] == need["cpu"] == 2.0
    assert need["requests.memory"] == need["limits.memory"] == 4 * 2**30
    assert need["pods"] == need["count/pods"] == 4


def test_four_workers_of_one_cpu_exceed_a_quota_of_two_naming_the_numbers() -> None:
    message = exceeded(spec(), quota({"requests.cpu": "2", "requests.memory": "4Gi"}))
    assert message is not None
    assert "4 worker(s) of cpu 1 and memory 256Mi exceed the namespace's quota" in message
    assert "requests.cpu 4 but only 2 is free (hard 2, used 0)" in message
    assert "requests.memory" not in message, "memory fits: not named"
    assert "spec.quota on the Tenant" in message


def test_what_is_already_used_counts() -> None:
    q = quota({"requests.cpu": "8", "requests.memory": "4Gi"},
              {"requests.cpu": "6500m", "requests.memory": "1Gi"})
    assert exceeded(spec(workers=1), q) is None
    short = shortfalls(spec(workers=2), q)
    assert [(s.key, s.needed, s.free) for s in short] == [("requests.cpu", 2.0, 1.5)]
    message = exceeded(spec(workers=2), q) or ""
    assert "requests.cpu 2 but only 1500m is free (hard 8, used 6500m)" in message


def test_the_pods_limit_counts() -> None:
    q = quota({"pods": "5"}, {"pods": "3"})
    assert exceeded(spec(workers=2), q) is None
    assert "pods 3 but only 2 is free (hard 5, used 3)" in (exceeded(spec(workers=3), q) or "")


def test_limits_and_memory_are_judged_too() -> None:
    q = quota({"limits.memory": "1Gi", "limits.cpu": "10"})
    assert "limits.memory 1280Mi but only 1Gi is free" in (exceeded(spec(workers=5), q) or "")


def test_an_exact_fit_is_no_shortfall() -> None:
    fits = quota({"requests.cpu": "2", "requests.memory": "512Mi", "pods": "2"})
    assert exceeded(spec(workers=2), fits) is None


def test_no_quota_or_keys_the_workers_do_not_use_refuse_nothing() -> None:
    assert exceeded(spec(), None) is None
    assert exceeded(spec(), quota({"count/apps.mothership.dev": "0", "requests.storage": "1Gi"})) is None


def test_a_quota_not_counted_yet_is_judged_on_its_spec_as_unused() -> None:
    assert exceeded(spec(workers=2), quota({"requests.cpu": "2"}, counted=False)) is None
    assert "hard 2, used 0" in (exceeded(spec(workers=3), quota({"requests.cpu": "2"}, counted=False)) or "")


@pytest.mark.parametrize(("key", "value", "text"), [
    ("requests.cpu", 4.0, "4"), ("cpu", 0.25, "250m"), ("requests.memory", 2**32, "4Gi"),
    ("memory", 3 * 2**20, "3Mi"), ("limits.memory", 1000.0, "1000"), ("pods", 3.0, "3"),
])
def test_amounts_are_shown_as_a_tenant_writes_them(key: str, value: float, text: str) -> None:
    assert show(key, value) == text


def test_only_a_quota_refusal_among_failed_creates_ends_the_test() -> None:
    unknown = {"message": 'Error creating: pods "x-workers-1-abc" is forbidden: status unknown for quota: '
                          "mothership, resource: requests.cpu", "lastTimestamp": "2026-01-01T00:00:01Z"}
    exceeded_ = {"message": 'Error creating: pods "x-workers-1-abc" is forbidden: exceeded quota: other, '
                            "requested: pods=1, used: pods=1, limited: pods=1",
                 "lastTimestamp": "2026-01-01T00:00:02Z"}
    assert refused_by_quota([]) is None
    assert refused_by_quota([unknown]) is None
    assert refused_by_quota([unknown, exceeded_]) == (
        'pods "x-workers-1-abc" is forbidden: exceeded quota: other, requested: pods=1, used: pods=1, '
        "limited: pods=1")
