"""The report and the live dashboard, from a real local run against the demo target, in a real Chromium.

What a user sees must agree with ``--out``: every chart drew each series with
one vertex per point, the verdict and tables match, the per-interval requests
add up to the total, and the page fetched nothing but itself.
"""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By

from mothership.loadgen.report import charts
from mothership.loadgen.timeseries import TimeSeries
from tests.browser import chromium, not_blank, requests_seen

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(180)


def short_spec(tmp_path: Path, duration: str) -> Path:
    """The README's example (HTTP + WebSocket + thresholds), shortened."""
    doc = yaml.safe_load((ROOT / "examples" / "loadtest-local.yaml").read_text())
    doc["spec"].update(duration=duration, virtualUsers=10, gracefulStop="2s")
    for threshold in doc["spec"]["thresholds"]:  # latency bounds a busy 2-core machine still meets
        if threshold["stat"].startswith("p"):
            threshold["lt"] = "10s"
    path = tmp_path / "loadtest.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def run_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "mothership", "loadtest", "run", *args, "--no-live"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def page_state(driver: Any) -> dict[str, Any]:
    """What the browser drew: per chart, each series' declared points and the vertices of its path."""
    return driver.execute_script("""
        const out = {verdict: document.querySelector('#verdict').dataset.verdict,
                     final: document.querySelector('main').dataset.final,
                     totals: Object.assign({}, document.querySelector('#totals').dataset),
                     updates: document.body.dataset.updates || '0', charts: {}};
        document.querySelectorAll('svg.chart').forEach(svg => {
          out.charts[svg.dataset.chart] = Array.from(svg.querySelectorAll('path.series')).map(p => ({
            name: p.dataset.name, points: +p.dataset.points,
            vertices: (p.getAttribute('d').match(/[ML]/g) || []).length,
            length: p.getTotalLength(), box: p.getBBox().width}));
        });
        out.thresholds = Array.from(document.querySelectorAll('#thresholds tbody tr')).map(
          tr => Array.from(tr.cells).map(td => JSON.parse(td.dataset.value)));
        const table = document.querySelector('table#requests');
        out.requests = table ? Array.from(table.tBodies[0].rows).map(tr => Array.from(tr.cells).map(
          td => JSON.parse(td.dataset.value))) : [];
        return out;""")


def test_a_report_from_a_real_run_draws_what_out_says(tmp_path: Path) -> None:
    out, report = tmp_path / "out.json", tmp_path / "report.html"
    proc = run_cli("-f", str(short_spec(tmp_path, "4s")), "--demo-target", "--out", str(out),
                   "--report", str(report))
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stdout + stderr
    result = json.loads(out.read_text())
    ts = TimeSeries.model_validate(result["timeSeries"])
    summary = result["summary"]
    # The series agrees with the summary: the per-interval deltas add up to the totals.
    assert len(ts) >= 4
    assert sum(ts.requests) == summary["requests"] > 0
    assert sum(sum(v) for v in ts.errors.values()) == summary["errors"]
    assert sum(ts.ws_msgs_received) == summary["websocket"]["messagesReceived"] > 0
    assert sum(ts.ws_sessions) == summary["websocket"]["sessions"]

    with chromium() as driver:
        driver.get(report.as_uri())
        state = page_state(driver)
        png = driver.get_screenshot_as_png()
        # Hover the throughput chart's right edge: the crosshair sits on the last point, and the
        # tooltip's running total there is the summary's total.
        svg = driver.find_element(By.CSS_SELECTOR, 'svg.chart[data-chart="throughput"]')
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", svg)
        width = svg.size["width"]
        ActionChains(driver).move_to_element_with_offset(svg, int(width / 2) - 4, 0).perform()
        tip = driver.find_element(By.ID, "tip")
        tooltip = tip.text if tip.is_displayed() else ""
        crosshair = svg.find_element(By.CSS_SELECTOR, ".crosshair").get_attribute("visibility")
        fetched = requests_seen(driver)

    assert fetched == [report.as_uri()], fetched  # nothing but the file itself
    assert state["verdict"] == result["verdict"] == "passed" and state["final"] == "true"
    assert int(state["totals"]["requests"]) == summary["requests"]
    assert int(state["totals"]["points"]) == len(ts)
    expected = {cid: [(name, sum(v is not None for v in values)) for name, values in series]
                for cid, _, _, series in charts(ts)}
    assert {"throughput", "latency", "users", "websocket"} <= set(state["charts"])
    for cid, series in expected.items():
        drawn = state["charts"][cid]
        assert [(s["name"], s["points"]) for s in drawn] == series, cid
        for s in drawn:
            assert s["vertices"] == s["points"], (cid, s)
            if s["points"] >= 2:  # a line was drawn across the chart
                assert s["length"] > 0 and s["box"] > 100, (cid, s)
    assert state["charts"]["throughput"][0]["points"] == len(ts)  # requests/s: one vertex per interval
    assert state["thresholds"] == [[t["ok"], t["metric"], t["stat"], t["limit"], t.get("value")]
                                   for t in result["thresholds"]]
    rows = result["byRequest"]
    assert rows and [[*r[:4], r[8]] for r in state["requests"]] == [
        [r["scenario"], r["name"], r["protocol"], r["requests"], r["duration"].get("p95")] for r in rows]
    assert crosshair == "visible"
    last = ts.t[-1]
    assert f"{int(last) if last.is_integer() else last} s" in tooltip, tooltip  # as JavaScript prints it
    assert f"requests so far: {summary['requests']}" in tooltip, tooltip
    colours, inked = not_blank(png)
    assert colours > 20 and inked > 0.03, (colours, inked)


def test_the_live_page_updates_while_the_test_runs_and_stays_after(tmp_path: Path) -> None:
    proc = run_cli("-f", str(short_spec(tmp_path, "8s")), "--demo-target", "--web", "--web-port", "0")
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stderr is not None
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()  # type: ignore[union-attr]
    try:
        url = ""
        deadline = time.monotonic() + 30
        while not url and time.monotonic() < deadline:
            match = re.search(r"live report: (http://127\.0\.0\.1:\d+/)", lines.get(timeout=30))
            url = match.group(1) if match else ""
        assert url, "no live report URL on stderr"
        with chromium() as driver:
            driver.get(url)
            seen: list[tuple[int, int, str]] = []
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                state = page_state(driver)
                point = (int(state["totals"]["points"]), int(state["updates"]), state["final"])
                if not seen or point != seen[-1]:
                    seen.append(point)
                if state["final"] == "true":
                    break
                time.sleep(0.5)
            fetched = requests_seen(driver)
            assert seen[-1][2] == "true", seen
            # It updated in place, more than once, with more points each time, before it was final.
            running = [s for s in seen if s[2] == "false"]
            assert len({s[0] for s in running}) >= 3, seen
            assert seen[-1][1] >= 3, seen
            assert state["verdict"] == "passed"
            assert set(fetched) == {url}, fetched  # only itself, polled
            # After the run it keeps serving the final page until Ctrl-C.
            driver.refresh()
            assert page_state(driver)["final"] == "true"
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
