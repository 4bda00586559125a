"""``mothership loadtest run``: exit codes are the contract (0 passed, 1 a threshold failed, 2 invalid
spec or could not run), plus the key lines a user reads. Runs use --demo-target and real worker
processes, so each takes a couple of seconds.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from mothership.cli import app
from tests.conftest import RunningDemoTarget

INVALID = sorted((Path(__file__).parents[1] / "data" / "invalid" / "loadtest").glob("*.yaml"))
EXAMPLES = Path(__file__).parents[2] / "examples"


def expectation(path: Path) -> tuple[str, str]:
    """The ``# expect: field.path: message fragment`` header of a malformed spec."""
    header = path.read_text().splitlines()[0]
    assert header.startswith("# expect: "), f"{path.name} has no '# expect:' header"
    field, _, fragment = header.removeprefix("# expect: ").partition(": ")
    return field, fragment


def write_spec(tmp_path: Path, **spec: Any) -> Path:
    doc = {
        "apiVersion": "mothership.dev/v1alpha1", "kind": "LoadTest", "metadata": {"name": "cli"},
        "spec": {
            "target": {"url": "http://127.0.0.1:8089"}, "virtualUsers": 2, "duration": "1s",
            "gracefulStop": "1s",
            "scenarios": [{"name": "browse", "requests": [{"path": "/api/items", "thinkTime": "10ms"}]}],
            **spec,
        },
    }
    path = tmp_path / "test.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def run(*args: str) -> Any:
    return CliRunner().invoke(app, ["loadtest", "run", *args], catch_exceptions=False)


def test_there_are_at_least_twenty_malformed_specs() -> None:
    assert len(INVALID) >= 20


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_a_malformed_spec_exits_2_naming_the_field(path: Path) -> None:
    field, fragment = expectation(path)
    result = run("-f", str(path), "--no-live")
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert all(line.startswith(f"{path}: ") for line in lines), result.stderr
    assert any(line.startswith(f"{path}: {field}: ") and fragment in line for line in lines), (
        f"expected a line '{path}: {field}: ...{fragment}...' in:\n{result.stderr}")


def test_a_missing_file_or_non_mapping_exits_2(tmp_path: Path) -> None:
    assert run("-f", str(tmp_path / "nope.yaml")).exit_code == 2
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    result = run("-f", str(tmp_path / "list.yaml"))
    assert result.exit_code == 2 and "expected a LoadTest document" in result.stderr


def test_an_app_target_cannot_run_locally_without_a_url(tmp_path: Path) -> None:
    result = run("-f", str(write_spec(tmp_path, target={"app": "shop"})), "--no-live")
    assert result.exit_code == 2 and "could not run: spec.target.app needs --target" in result.stderr


def test_help_says_a_local_run_has_no_allow_list_and_the_cluster_enforces_the_tenants() -> None:
    result = CliRunner().invoke(app, ["loadtest", "run", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "No allow-list applies to a local run" in text
    assert "spec.loadTests.allowedTargets" in text


def test_target_and_demo_target_are_exclusive(tmp_path: Path) -> None:
    result = run("-f", str(write_spec(tmp_path)), "--target", "http://127.0.0.1:1", "--demo-target")
    assert result.exit_code == 2 and "not both" in result.stderr


def test_passing_thresholds_exit_0_and_totals_match_the_target(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, thresholds=[{"metric": "http_reqs", "stat": "count", "gt": "0"},
                                            {"metric": "errors", "stat": "rate", "lt": "1%"}])
    out = tmp_path / "summary.json"
    result = run("-f", str(spec), "--demo-target", "--workers", "2", "--no-live", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "PASSED" in result.stdout and "all 2 thresholds passed" in result.stdout
    body = json.loads(out.read_text())
    assert body["verdict"] == "passed" and len(body["workers"]) == 2
    requests = body["summary"]["requests"]
    assert requests > 0
    assert f"demo target counted: {requests:,} HTTP requests" in result.stdout


def test_out_has_a_row_per_request_and_per_websocket_scenario_matching_the_target(tmp_path: Path) -> None:
    """Two scenarios over two workers: rows per (scenario, name), merged exactly, as the target counted."""
    spec = write_spec(tmp_path, scenarios=[
        {"name": "shop", "requests": [{"path": "/api/items", "name": "list", "thinkTime": "10ms"},
                                      {"path": "/status/503", "expectStatus": [200]},
                                      {"path": "/slow?ms=5"}]},
        {"name": "chat", "websocket": {"path": "/ws/echo", "interval": "50ms", "hold": "300ms"}},
    ])
    out = tmp_path / "summary.json"
    result = run("-f", str(spec), "--demo-target", "--workers", "2", "--no-live", "--out", str(out))
    assert result.exit_code == 0, result.output
    body = json.loads(out.read_text())
    rows = {(r["scenario"], r["name"]): r for r in body["byRequest"]}
    assert list(rows) == [("shop", "list"), ("shop", "GET /status/503"), ("shop", "GET /slow?ms=5"),
                          ("chat", "WS /ws/echo")]
    listed, failing, slow, ws = rows.values()
    assert listed["errors"] == 0 and failing["errors"] == failing["requests"] > 0
    assert failing["errorsByClass"] == {"status": failing["requests"]}
    assert slow["duration"]["p50"] >= 5 and listed["duration"]["count"] == listed["requests"]
    assert ws["protocol"] == "ws" and ws["requests"] > 0 and ws["messagesReceived"] > 0
    assert ws["duration"]["count"] == ws["messagesReceived"]
    assert not body["byRequestMissing"]
    summary = body["summary"]  # the rows add up to the totals exactly
    assert sum(r["requests"] for r in rows.values() if r["protocol"] == "http") == summary["requests"]
    assert sum(r["errors"] for r in rows.values()) == summary["errors"]
    assert sum(r["duration"]["count"] for r in (listed, failing, slow)) == summary["httpReqDuration"]["count"]
    target = result.stdout.split("demo target counted: ")[1]
    assert f"{summary['requests']:,} HTTP requests" in target


def test_a_scoped_threshold_judges_only_its_request_or_scenario(tmp_path: Path) -> None:
    """A slow request fails its own p95 while the fast one and the whole-run error rate pass."""
    spec = write_spec(tmp_path, scenarios=[
        {"name": "shop", "requests": [{"path": "/api/items", "name": "list", "thinkTime": "10ms"},
                                      {"path": "/slow?ms=30", "name": "slow"}]},
        {"name": "broken", "weight": 1, "requests": [{"path": "/status/500", "thinkTime": "10ms"}]},
    ], thresholds=[
        {"metric": "http_req_duration", "stat": "p95", "lt": "25ms", "request": "list"},
        {"metric": "http_req_duration", "stat": "p95", "lt": "25ms", "request": "slow"},
        {"metric": "errors", "stat": "rate", "lt": "1%", "scenario": "shop"},
        {"metric": "errors", "stat": "rate", "gt": "99%", "scenario": "broken"},
    ])
    out = tmp_path / "summary.json"
    result = run("-f", str(spec), "--demo-target", "--workers", "2", "--no-live", "--out", str(out))
    assert result.exit_code == 1, result.output
    thresholds = json.loads(out.read_text())["thresholds"]
    verdicts = [(t.get("request") or t.get("scenario"), t["ok"]) for t in thresholds]
    assert verdicts == [("list", True), ("slow", False), ("shop", True), ("broken", True)]
    assert "1 of 4 thresholds failed: http_req_duration{request:slow} p95" in result.stdout


def test_a_failing_threshold_exits_1_and_says_which(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, thresholds=[
        {"metric": "http_req_duration", "stat": "max", "lt": "1ms"}],
        scenarios=[{"name": "slow", "requests": [{"path": "/slow?ms=20"}]}])
    result = run("-f", str(spec), "--demo-target", "--workers", "1", "--no-live")
    assert result.exit_code == 1, result.output
    assert "FAIL  http_req_duration max < 1.00ms" in result.stdout
    assert "1 of 1 thresholds failed" in result.stdout


def test_the_example_is_valid_and_targets_the_demo_port() -> None:
    from mothership.loadgen.worker import read_plan

    spec, name = read_plan(EXAMPLES / "loadtest-local.yaml")
    assert name == "demo-local" and spec.target.url == "http://127.0.0.1:8089"
    assert spec.worker_count() == 2 and spec.thresholds
    assert {s.websocket is not None for s in spec.scenarios} == {True, False}


async def test_ctrl_c_stops_gracefully_with_a_partial_summary(
    demo_target: RunningDemoTarget, until, tmp_path: Path
) -> None:
    spec = write_spec(tmp_path, duration="30s")
    out = tmp_path / "summary.json"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mothership", "loadtest", "run", "-f", str(spec), "--target", demo_target.url,
        "--workers", "1", "--no-live", "--out", str(out),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        await until(lambda: demo_target.target.stats()["http"]["requests"] >= 10, timeout=10)
        process.send_signal(signal.SIGINT)
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=10)
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode == 2, stderr.decode()
    assert "STOPPED  stopped by Ctrl-C" in stdout.decode()
    body = json.loads(out.read_text())
    assert body["verdict"] == "stopped" and body["elapsed"] < 10
    assert body["summary"]["requests"] == demo_target.target.stats()["http"]["requests"]


def free_port_pair() -> int:
    """A port p with p and p+1 both free on 127.0.0.1 right now (bounded search)."""
    import socket

    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            base = a.getsockname()[1]
            if base >= 65000:
                continue
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", base + 1))
                except OSError:
                    continue
                return base
    raise AssertionError("no two consecutive free ports")


def test_metrics_port_puts_worker_i_on_base_plus_i_so_prometheus_can_be_told_up_front(
    tmp_path: Path,
) -> None:
    base = free_port_pair()
    out = tmp_path / "summary.json"
    result = run("-f", str(write_spec(tmp_path)), "--demo-target", "--workers", "2", "--no-live",
                 "--metrics-port", str(base), "--out", str(out))
    assert result.exit_code == 0, result.output
    urls = [w["url"] for w in json.loads(out.read_text())["workers"]]
    assert urls == [f"http://127.0.0.1:{base}", f"http://127.0.0.1:{base + 1}"]
