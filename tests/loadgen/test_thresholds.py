"""Thresholds on merged snapshots: every op, every metric kind, no data, abortOnFail."""

from __future__ import annotations

from typing import Any

import pytest

from mothership.api.loadtest import Threshold
from mothership.api.vocabulary import ErrorClass
from mothership.loadgen.stats import Stats, merge_snapshots
from mothership.loadgen.thresholds import (
    abort_reasons,
    can_recover,
    completed,
    describe,
    evaluate,
    evaluate_one,
    no_data,
    zero_is_fine,
)


def th(metric: str, stat: str, abort: bool = False, **op: str) -> Threshold:
    return Threshold.model_validate({"metric": metric, "stat": stat, "abortOnFail": abort, **op})


def snapshot() -> dict[str, Any]:
    """Two workers: 100 requests of 10..109 ms, 2 timeouts, one WebSocket session, 5 VUs peak."""
    a, b = Stats(["s"]), Stats(["s"])
    for i in range(100):
        (a if i % 2 else b).http(0, 200, (10 + i) / 1000, 100, 200)
    a.error(0, ErrorClass.TIMEOUT, 1.0)
    b.error(0, ErrorClass.TIMEOUT, 1.0)
    b.ws_session_started(0)
    b.ws_connected(0.002)
    b.ws_sent(5)
    b.ws_received(5, 0.001)
    a.virtual_users = 2
    b.virtual_users = 3
    return merge_snapshots([a.snapshot(), b.snapshot()])


@pytest.mark.parametrize(
    ("op", "limit", "ok"),
    [("lt", "102.5", True), ("lt", "102", False), ("lte", "102", True), ("lte", "101", False),
     ("gt", "101", True), ("gt", "102", False), ("gte", "102", True), ("gte", "103", False)],
)
def test_each_comparison_holds_exactly_at_its_boundary(op: str, limit: str, ok: bool) -> None:
    result = evaluate_one(th("http_reqs", "count", **{op: limit}), snapshot(), 10.0)
    assert result.value == 102.0
    assert result.ok is ok
    assert result.op == op and result.limit == float(limit)


def test_counter_rate_is_per_second_over_the_elapsed_time() -> None:
    result = evaluate_one(th("http_reqs", "rate", gte="10"), snapshot(), 10.0)
    assert result.value == pytest.approx(10.2) and result.ok


def test_errors_rate_is_a_ratio_of_requests_plus_sessions_and_takes_percent() -> None:
    [rate, count] = evaluate(
        [th("errors", "rate", lt="1%"), th("errors", "count", lte="2")], snapshot(), 10.0
    )
    assert rate.value == pytest.approx(2 / 103) and rate.limit == 0.01 and not rate.ok
    assert count.value == 2 and count.ok


def test_trend_stats_are_in_seconds_against_duration_limits() -> None:
    snap = snapshot()
    results = evaluate(
        [th("http_req_duration", "p95", lt="200ms"), th("http_req_duration", "max", lt="1s"),
         th("http_req_duration", "min", gte="10ms"), th("http_req_duration", "p50", lt="50ms")],
        snap, 10.0,
    )
    p95, max_, min_, p50 = results
    assert p95.limit == 0.2 and p95.value == pytest.approx(0.105, rel=0.01) and p95.ok
    assert max_.value == 1.0 and not max_.ok  # lt is strict
    assert min_.value == pytest.approx(0.010) and min_.ok
    assert p50.value == pytest.approx(0.060, rel=0.01) and not p50.ok


def test_gauge_max_is_the_sum_of_worker_peaks() -> None:
    result = evaluate_one(th("virtual_users", "max", lte="5"), snapshot(), 1.0)
    assert result.value == 5.0 and result.ok


def test_websocket_metrics_are_checked_like_any_other() -> None:
    latency, sent = evaluate(
        [th("ws_msg_latency", "p99", lt="50ms"), th("ws_msgs_sent", "count", gte="1")], snapshot(), 1.0
    )
    assert latency.value == pytest.approx(0.001, rel=0.01) and latency.ok
    assert sent.value == 1 and sent.ok


def test_a_threshold_without_data_holds_with_no_value() -> None:
    empty = Stats(["s"]).snapshot()
    results = evaluate(
        [th("http_req_duration", "p95", lt="1ms"), th("errors", "rate", lt="0"),
         th("http_reqs", "rate", gt="1")],
        empty, 0.0,
    )
    assert [(r.value, r.ok) for r in results] == [(None, True)] * 3


def test_abort_reasons_name_only_failed_abort_on_fail_thresholds() -> None:
    thresholds = [
        th("errors", "rate", abort=True, lt="1%"),
        th("http_req_duration", "max", lt="1s"),  # fails, but does not abort
        th("http_req_duration", "p50", abort=True, lt="1s"),  # holds
    ]
    results = evaluate(thresholds, snapshot(), 10.0)
    assert abort_reasons(thresholds, results, 10.0) == [describe(results[0])]
    assert describe(results[0]).startswith("errors rate 0.0194175 !< 0.01")


def test_a_count_not_yet_reached_does_not_abort_because_it_can_still_grow() -> None:
    growing = th("http_reqs", "count", abort=True, gt="1000")
    capped = th("http_reqs", "count", abort=True, lt="10")
    assert can_recover(growing) and not can_recover(capped)
    results = evaluate([growing, capped], snapshot(), 10.0)
    assert [r.ok for r in results] == [False, False]
    assert abort_reasons([growing, capped], results, 10.0) == [describe(results[1])]


def test_an_abort_threshold_is_not_judged_before_its_delay_abort_eval() -> None:
    default = th("errors", "rate", abort=True, lt="1%")
    quick = Threshold.model_validate({"metric": "errors", "stat": "rate", "lt": "1%", "abortOnFail": True,
                                      "delayAbortEval": "500ms"})
    results = evaluate([default, quick], snapshot(), 10.0)
    assert [r.ok for r in results] == [False, False]
    assert abort_reasons([default, quick], results, 0.4) == []
    assert abort_reasons([default, quick], results, 0.5) == [describe(results[1])]
    assert abort_reasons([default, quick], results, 9.99) == [describe(results[1])]
    assert abort_reasons([default, quick], results, 10.0) == [describe(results[0]), describe(results[1])]


def test_completed_counts_responses_of_any_status_and_finished_handshakes_not_failures() -> None:
    stats = Stats(["s"])
    stats.error(0, ErrorClass.INTERRUPTED, 5.0)
    stats.error(0, ErrorClass.CONNECT, 0.001)
    stats.ws_session_started(0)
    stats.ws_handshake_failed(0, ErrorClass.TIMEOUT)
    assert completed(stats.snapshot()) == 0
    stats.http(0, 503, 0.01, 1, 1)
    assert completed(stats.snapshot()) == 1
    stats.ws_connected(0.01)
    assert completed(stats.snapshot()) == 2


@pytest.mark.parametrize(("threshold", "fine"), [
    (th("http_reqs", "count", lt="1"), True),
    (th("http_reqs", "count", lte="0"), True),
    (th("ws_sessions", "count", lt="5"), True),
    (th("http_reqs", "count", gt="0"), False),
    (th("http_reqs", "rate", lt="100"), False),  # a rate is no statement about zero
    (th("errors", "count", lt="1"), False),
    (th("http_req_duration", "p95", lt="1s"), False),
])
def test_only_a_count_of_requests_or_sessions_holding_at_zero_says_zero_is_fine(
    threshold: Threshold, fine: bool,
) -> None:
    assert zero_is_fine(threshold) is fine


def test_no_data_needs_thresholds_and_nothing_completed() -> None:
    empty = Stats(["s"]).snapshot()
    p95 = th("http_req_duration", "p95", lt="1s")
    assert no_data([p95], empty) and not no_data([], empty)
    assert not no_data([p95, th("http_reqs", "count", lt="1")], empty)
    assert not no_data([p95], snapshot())
