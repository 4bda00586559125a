"""The live view and the final summary are pure renderables: render them to text, check key lines."""

from __future__ import annotations

import io
import re

from rich.console import Console, RenderableType

from mothership.api.loadtest import (
    Percentiles,
    RequestStats,
    Summary,
    ThresholdResult,
    WebSocketSummary,
    WorkerFailure,
    load_spec,
)
from mothership.loadgen.coordinator import Result, Verdict, WorkerReport
from mothership.loadgen.live import format_live, format_ms, format_summary, format_threshold_value
from tests.conftest import LOADTEST_DOC


def text(renderable: RenderableType) -> str:
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined]


def result(**changes: object) -> Result:
    base = Result(
        elapsed=0.5,
        summary=Summary(
            requests=1234, rps=456.7, errors=3, error_rate=0.0024,
            errors_by_class={"timeout": 2, "status": 1},
            http_req_duration=Percentiles(count=1234, p50=1.5, p95=12.25, p99=150.0, max=2500.0),
            websocket=WebSocketSummary(sessions=10, connections=8, messages_sent=100, messages_received=99,
                                       message_latency=Percentiles(count=99, p50=0.4, p95=0.9, p99=1.2,
                                                                   max=3.0)),
        ),
        thresholds=[
            ThresholdResult(metric="http_req_duration", stat="p95", op="lt", limit=0.2, value=0.01225,
                            ok=True),
            ThresholdResult(metric="errors", stat="rate", op="lt", limit=0.001, value=0.0024, ok=False),
            ThresholdResult(metric="http_reqs", stat="count", op="gt", limit=5000, value=1234, ok=False),
        ],
        workers=[WorkerReport(index=0, state="running"), WorkerReport(index=1, state="lost")],
        failures=[WorkerFailure(index=1, reason="Unreachable", message="no snapshot in 3 polls")],
        ws_connections_now=7, virtual_users_now=20,
    )
    return base.model_copy(update=changes)


def test_the_live_view_shows_rates_latencies_errors_websocket_thresholds_and_progress() -> None:
    spec = load_spec(LOADTEST_DOC)  # duration 1s
    out = text(format_live(result(), spec, title="shop: 2 workers"))
    assert "shop: 2 workers" in out
    assert "0.5s / 1s" in out
    assert "1,234   rps (last window) 456.7" in out
    assert "3 (0.24%)   timeout 2, status 1" in out
    assert "10 sessions (7 open now, peak 8), messages sent 100 / received 99" in out
    assert re.search(r"http request +1,234 +1\.50ms +12\.2ms +150ms +2\.50s", out)
    assert "ok       http_req_duration p95 < 200ms: 12.2ms" in out
    assert "failing  errors rate < 0.10%: 0.24%" in out
    assert "not yet  http_reqs count > 5,000: 1,234" in out  # a count still growing is judged at the end
    assert "worker 1 Unreachable: no snapshot in 3 polls" in out


def test_the_final_summary_ends_with_the_verdict_and_marks_each_threshold() -> None:
    out = text(format_summary(result(verdict=Verdict.FAILED, reason="2 of 3 thresholds failed", final=True,
                                      elapsed=10.04), title="shop"))
    assert "shop: 10.0s of load" in out
    assert "rps (whole run) 456.7" in out and "open now" not in out
    assert "FAIL  errors rate < 0.10%: 0.24%" in out and "FAIL  http_reqs count" in out
    assert "pass  http_req_duration p95" in out
    assert out.strip().splitlines()[-1] == "FAILED  2 of 3 thresholds failed"


def test_dropped_iterations_show_live_and_as_a_warning_on_the_verdict_line() -> None:
    dropped = result(verdict=Verdict.PASSED, reason="all 1 thresholds passed", final=True)
    dropped.summary.dropped_iterations = 259
    spec = load_spec(LOADTEST_DOC)
    live = text(format_live(dropped, spec, title="t"))
    assert re.search(r"dropped +259 iterations \(all virtual users busy\)", live)
    last = text(format_summary(dropped, title="shop")).strip().splitlines()[-1]
    assert last == ("PASSED  all 1 thresholds passed  "
                    "(warning: 259 iterations dropped, all virtual users busy)")
    clean = result(verdict=Verdict.PASSED, reason="all 1 thresholds passed", final=True)
    assert "warning" not in text(format_summary(clean, title="shop"))


def test_values_are_shown_in_the_unit_a_person_reads() -> None:
    assert [format_ms(v) for v in (None, 0.123, 12.34, 123.4, 1234.5)] == ["-", "0.12ms", "12.3ms", "123ms",
                                                                           "1.23s"]
    assert format_threshold_value("http_req_duration", "p95", 0.2) == "200ms"
    assert format_threshold_value("errors", "rate", 0.01) == "1.00%"
    assert format_threshold_value("http_reqs", "rate", 99.5) == "99.5/s"
    assert format_threshold_value("ws_msgs_sent", "count", 1000) == "1,000"
    assert format_threshold_value("errors", "rate", None) == "no data"


def request_rows(n: int) -> list[RequestStats]:
    """``n`` HTTP rows, row k with k * 10 requests, and a WebSocket row last."""
    rows = [RequestStats(scenario="shop", name=f"req-{k}", requests=k * 10, rps=k * 1.5,
                         errors=k % 3, error_rate=(k % 3) / (k * 10),
                         duration=Percentiles(count=k * 10, p50=1.5, p95=12.25, p99=150.0))
            for k in range(1, n + 1)]
    rows.append(RequestStats(scenario="chat", name="WS /ws/echo", protocol="ws", requests=4, rps=0.5,
                             duration=Percentiles(count=50, p50=0.4, p95=0.9, p99=1.2)))
    return rows


def test_the_live_view_shows_the_busiest_fifteen_rows_and_the_summary_all_of_them() -> None:
    spec = load_spec(LOADTEST_DOC)
    live = text(format_live(result(by_request=request_rows(20)), spec, title="t"))
    shown = re.findall(r"shop\s+(req-\d+) ", live)
    assert shown == [f"req-{k}" for k in range(6, 21)]  # the 15 busiest, in table order
    assert "... 6 more (all in the final table and --out)" in live  # req-1..5 and the WebSocket row
    line = next(x for x in live.splitlines() if "req-20 " in x)
    assert line.split() == ["shop", "req-20", "200", "2", "(1.0%)", "1.50ms", "12.2ms", "150ms", "30.0"]
    final = text(format_summary(result(by_request=request_rows(20), verdict=Verdict.PASSED), title="t"))
    assert re.findall(r"shop\s+(req-\d+) ", final) == [f"req-{k}" for k in range(1, 21)]
    assert re.search(r"chat\s+WS /ws/echo\s+4\s+0\s+0\.40ms", final)
    assert "more (all in" not in final
