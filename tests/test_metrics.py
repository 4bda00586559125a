"""The operator's metrics: names, labels and what ``reconciling`` counts for each outcome."""

from __future__ import annotations

import asyncio

import kopf
import pytest

from mothership import metrics


def value(name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_a_successful_reconcile_counts_success_and_is_timed() -> None:
    before = value("mothership_reconcile_total", controller="t-ok", result="success")
    with metrics.reconciling("t-ok"):
        pass
    assert value("mothership_reconcile_total", controller="t-ok", result="success") == before + 1
    assert value("mothership_reconcile_time_seconds_count", controller="t-ok") >= 1
    assert value("mothership_reconcile_errors_total", controller="t-ok") == 0


def test_a_temporary_error_counts_requeue_after_and_an_error() -> None:
    with pytest.raises(kopf.TemporaryError), metrics.reconciling("t-tmp"):
        raise kopf.TemporaryError("conflict", delay=1)
    assert value("mothership_reconcile_total", controller="t-tmp", result="requeue_after") == 1
    assert value("mothership_reconcile_errors_total", controller="t-tmp") == 1


def test_a_permanent_error_or_a_bug_counts_error() -> None:
    with pytest.raises(kopf.PermanentError), metrics.reconciling("t-perm"):
        raise kopf.PermanentError("invalid")
    with pytest.raises(KeyError), metrics.reconciling("t-perm"):
        raise KeyError("bug")
    assert value("mothership_reconcile_total", controller="t-perm", result="error") == 2
    assert value("mothership_reconcile_errors_total", controller="t-perm") == 2


async def test_a_cancelled_reconcile_is_neither_counted_nor_timed() -> None:
    async def work() -> None:
        with metrics.reconciling("t-cancel"):
            await asyncio.sleep(3600)

    task = asyncio.create_task(work())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert value("mothership_reconcile_time_seconds_count", controller="t-cancel") == 0


def test_apps_by_phase_reads_zero_for_phases_no_app_is_in() -> None:
    metrics.set_counts(metrics.APPS, {"Ready": 3}, ("Pending", "Ready", "Failed"))
    assert value("mothership_apps", phase="Ready") == 3
    assert value("mothership_apps", phase="Pending") == 0
    metrics.set_counts(metrics.APPS, {}, ("Pending", "Ready", "Failed"))
    assert value("mothership_apps", phase="Ready") == 0


def test_a_deleted_loadtest_leaves_no_series_behind() -> None:
    metrics.LOADTEST_RPS.labels("ns", "lt").set(100)
    metrics.LOADTEST_P95.labels("ns", "lt").set(0.2)
    metrics.LOADTEST_PHASE.labels("ns", "lt", "Running").set(1)
    metrics.forget_loadtest("ns", "lt", ("Running", "Passed"))
    assert metrics.registry.get_sample_value(
        "mothership_loadtest_status_rps", {"namespace": "ns", "name": "lt"}) is None
    assert metrics.registry.get_sample_value(
        "mothership_loadtest_status_phase", {"namespace": "ns", "name": "lt", "phase": "Running"}) is None


def test_every_operator_metric_is_named_in_controller_runtime_style() -> None:
    names = {m.name for m in metrics.registry.collect() if m.name.startswith("mothership_")}
    assert {
        "mothership_reconcile",  # counters are collected without their _total suffix
        "mothership_reconcile_errors",
        "mothership_reconcile_time_seconds",
        "mothership_managed_objects",
        "mothership_apps",
        "mothership_loadtest_status_phase",
        "mothership_loadtest_status_rps",
        "mothership_loadtest_status_error_rate",
        "mothership_loadtest_status_http_req_duration_p50_seconds",
        "mothership_loadtest_status_http_req_duration_p95_seconds",
        "mothership_loadtest_status_http_req_duration_p99_seconds",
    } <= names


def test_initialize_creates_every_controllers_series_at_zero_so_rate_and_alerts_see_them() -> None:
    metrics.initialize()
    for controller in ("tenant", "app", "loadtest"):
        assert metrics.registry.get_sample_value(
            "mothership_reconcile_errors_total", {"controller": controller}) is not None
        for result in ("success", "error", "requeue_after"):
            assert metrics.registry.get_sample_value(
                "mothership_reconcile_total", {"controller": controller, "result": result}) is not None
