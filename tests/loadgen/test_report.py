"""The HTML report's contract, without a browser (tests/browser checks what a browser draws)."""

from __future__ import annotations

import re
import socket
from pathlib import Path

from typer.testing import CliRunner

from mothership.api.loadtest import Summary, ThresholdResult
from mothership.cli import app
from mothership.loadgen.coordinator import Result, Verdict
from mothership.loadgen.report import rates, render, svg_chart
from mothership.loadgen.timeseries import TimeSeries

ROOT = Path(__file__).resolve().parents[2]


def test_rates_divide_each_delta_by_its_own_length() -> None:
    assert rates([1.0, 2.5, 2.5, 4.0], [10, 30, 5, 0]) == [10.0, 20.0, None, 0.0]


def test_a_series_with_gaps_draws_one_vertex_per_value_and_breaks_the_line() -> None:
    svg = svg_chart("latency", "HTTP latency", "ms", [1.0, 2.0, 3.0, 4.0], [("p95", [5.0, None, 7.0, 8.0])])
    path = re.search(r'<path class="series"[^>]*data-points="(\d+)"[^>]* d="([^"]*)"', svg)
    assert path is not None and path.group(1) == "3"
    assert re.findall(r"[ML]", path.group(2)) == ["M", "M", "L"]


def test_the_value_axis_is_labelled_with_round_numbers() -> None:
    """A peak of 20 virtual users reads 0, 5, ... 25, not 6.25 and 18.75."""
    for peak, labels in ((20, ["0", "5", "10", "15", "20", "25"]),
                         (180, ["0", "50", "100", "150", "200"]),
                         (0.9, ["0", "0.25", "0.5", "0.75", "1"]),
                         (4200, ["0", "1k", "2k", "3k", "4k", "5k"])):
        svg = svg_chart("c", "c", "", [1.0, 2.0], [("s", [peak / 2, peak])])
        assert re.findall(r'text-anchor="end">([^<]*)<', svg) == labels, peak


def test_the_page_is_self_contained_and_escapes_what_it_shows() -> None:
    ts = TimeSeries(t=[1.0, 2.0], requests=[3, 4], errors={"timeout": [0, 1]}, p50=[1.0, 2.0],
                    p95=[2.0, 3.0], p99=[3.0, 4.0], virtual_users=[1, 1], ws_connections=[0, 0],
                    ws_sessions=[0, 0], ws_msgs_sent=[0, 0], ws_msgs_received=[0, 0],
                    dropped_iterations=[0, 0])
    result = Result(verdict=Verdict.FAILED, reason="1 of 1 thresholds failed: <img onerror=x>", final=True,
                    summary=Summary(requests=7), time_series=ts,
                    thresholds=[ThresholdResult(metric="errors", stat="rate", op="lt", limit=0.01, value=0.2,
                                                ok=False)])
    page = render(result, None, title="t</title><script>")
    # Nothing to fetch: no URL but the empty inline icon (which spares the browser a /favicon.ico).
    assert not re.search(r"""(src|href)\s*=\s*"(?!data:)|url\(|@import|https?://""", page)
    assert "<img" not in page and "t</title><script>" not in page
    assert 'data-verdict="failed"' in page and 'data-requests="7"' in page and 'data-final="true"' in page
    assert len(re.findall(r'<svg class="chart"', page)) == 4
    assert 'data-name="errors/s timeout"' in page


def test_a_busy_web_port_is_one_clear_line_and_exit_2() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        spec = ROOT / "examples" / "loadtest-local.yaml"
        result = CliRunner().invoke(app, ["loadtest", "run", "-f", str(spec), "--demo-target", "--no-live",
                                          "--web", "--web-port", str(port)])
    assert result.exit_code == 2, result.output
    assert f"could not run: --web-port {port}: " in result.output


def test_a_report_into_a_missing_directory_is_refused_before_the_run(tmp_path: Path) -> None:
    spec = ROOT / "examples" / "loadtest-local.yaml"
    page = tmp_path / "nope" / "report.html"
    result = CliRunner().invoke(app, ["loadtest", "run", "-f", str(spec), "--demo-target",
                                      "--report", str(page)])
    assert result.exit_code == 2, result.output
    assert f"--report {page}: no such directory" in result.output
