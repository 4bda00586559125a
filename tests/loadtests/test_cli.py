"""``mothership loadtest wait`` and ``results`` against a real kube-apiserver: exit codes and key lines.

The status is written by the test (as the operator would), so each exit code
is checked without running a load test: 0 Passed, 1 Failed, 2 Errored,
Stopped, missing or timed out. The API server is the bare one (``apiserver``):
no operator there would race the test for the status.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from mothership.api.loadtest import LoadTestPhase
from mothership.cli import app
from mothership.kube import Kube
from mothership.loadgen.timeseries import TimeSeries, pack
from mothership.loadtests import builders, client
from tests.controlplane import ControlPlane
from tests.operator.harness import namespace_name

ROOT = Path(__file__).resolve().parents[2]
NS = ""
"""The test's own namespace (set by ``api``)."""

SUMMARY = {
    "durationSeconds": 2.0, "requests": 1200, "rps": 600.0, "errors": 3, "errorRate": 0.0025,
    "errorsByClass": {"status": 3},
    "httpReqDuration": {"count": 1200, "min": 0.5, "mean": 2.0, "p50": 1.8, "p90": 3.0, "p95": 4.2,
                        "p99": 8.0, "max": 12.0},
}


def status(phase: str, **extra: Any) -> dict[str, Any]:
    return {"phase": phase, "workers": {"total": 2, "succeeded": 2}, "summary": SUMMARY,
            "thresholds": [{"metric": "http_req_duration", "stat": "p95", "op": "lt", "limit": 0.2,
                            "value": 0.0042, "ok": phase != "Failed"}], **extra}


@pytest.fixture(autouse=True)
def kubeconfig(apiserver: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KUBECONFIG", str(apiserver.kubeconfig))  # read per call by kube.load_credentials
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return apiserver.kubeconfig


@pytest.fixture
async def api(kubeconfig: Path, request: pytest.FixtureRequest) -> AsyncIterator[Kube]:
    global NS
    NS = namespace_name("cli-", request.node.name, 40)
    async with Kube.connect(kubeconfig=str(kubeconfig)) as k:
        await k.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        yield k


async def make(api: Kube, name: str, status_: dict[str, Any] | None) -> None:
    await api.apply({
        "apiVersion": "mothership.dev/v1alpha1", "kind": "LoadTest",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"target": {"url": "http://127.0.0.1:8089"}, "virtualUsers": 2, "duration": "2s",
                 "scenarios": [{"name": "s", "requests": [{"path": "/"}]}]},
    })
    if status_ is not None:
        await api.patch_status("LoadTest", name, NS, status_)


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["loadtest", *args])
    return result.exit_code, result.output


async def run_cli(*args: str) -> tuple[int, str]:
    return await asyncio.to_thread(cli, *args)


@pytest.mark.parametrize(("phase", "code"), [("Passed", 0), ("Failed", 1), ("Errored", 2), ("Stopped", 2)])
async def test_wait_exits_by_the_final_phase(api: Kube, phase: str, code: int) -> None:
    await make(api, "done", status(phase))
    exit_code, out = await run_cli("wait", "done", "-n", NS, "--timeout", "10")
    assert exit_code == code, out
    assert f"LoadTest {NS}/done: {phase}" in out
    assert "1200 (600.0/s)" in out


async def test_wait_follows_the_status_until_it_is_final(api: Kube) -> None:
    await make(api, "live", status("Running"))
    seen: list[LoadTestPhase] = []
    follower = asyncio.create_task(client.follow(api, NS, "live", timeout=10,
                                                 on_status=lambda s: seen.append(s.phase)))
    while not seen:
        await asyncio.sleep(0.01)
    await api.patch_status("LoadTest", "live", NS, {"phase": "Stopping"})
    await api.patch_status("LoadTest", "live", NS, {"phase": "Passed"})
    final = await follower
    assert final.phase is LoadTestPhase.PASSED
    assert seen[0] is LoadTestPhase.RUNNING and seen[-1] is LoadTestPhase.PASSED


async def test_wait_prints_progress_and_exits_0_when_the_test_passes_meanwhile(api: Kube) -> None:
    await make(api, "progress", status("Running"))
    done = threading.Event()
    result: list[tuple[int, str]] = []

    def run() -> None:
        result.append(cli("wait", "progress", "-n", NS, "--timeout", "20"))
        done.set()

    thread = threading.Thread(target=run)
    thread.start()
    await asyncio.sleep(0.5)  # let it print the Running line (exit codes do not depend on it)
    await api.patch_status("LoadTest", "progress", NS, {"phase": "Passed"})
    await asyncio.to_thread(done.wait, 20)
    thread.join(timeout=5)
    code, out = result[0]
    assert code == 0, out
    assert out.splitlines()[0].startswith("Running")


async def test_wait_times_out_with_exit_2(api: Kube) -> None:
    await make(api, "slow", status("Running"))
    code, out = await run_cli("wait", "slow", "-n", NS, "--timeout", "0.5")
    assert code == 2
    assert "not finished after 0.5s" in out


async def test_wait_for_a_missing_test_exits_2(api: Kube) -> None:
    code, out = await run_cli("wait", "nope", "-n", NS, "--timeout", "2")
    assert code == 2
    assert "not found" in out


async def test_results_as_json_is_the_status_with_name_and_namespace(api: Kube) -> None:
    await make(api, "done", status("Failed"))
    code, out = await run_cli("results", "done", "-n", NS, "-o", "json")
    assert code == 0, out
    body = json.loads(out)
    assert (body["name"], body["namespace"], body["phase"]) == ("done", NS, "Failed")
    assert body["summary"]["requests"] == 1200
    assert body["thresholds"][0]["ok"] is False


async def test_results_as_a_table_shows_latency_thresholds_and_failures(api: Kube) -> None:
    failure = {"index": 1, "reason": "OOMKilled", "message": "out of memory"}
    await make(api, "done", status("Errored", workers={"total": 2, "failed": 1, "failures": [failure]}))
    code, out = await run_cli("results", "done", "-n", NS)
    assert code == 0, out
    assert "p95 4.2ms" in out
    assert "ok   http_req_duration p95 < 0.2" in out
    assert "worker 1: OOMKilled (out of memory)" in out


async def test_results_refuses_an_unknown_output_and_a_missing_test(api: Kube) -> None:
    assert (await run_cli("results", "done", "-n", NS, "-o", "yaml"))[0] == 2
    assert (await run_cli("results", "nope", "-n", NS))[0] == 2


async def test_wait_and_results_take_kubectls_kubeconfig_context_and_its_namespace(
    api: Kube, kubeconfig: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like the app and tenant commands: --kubeconfig, --context, and -n defaulting to the context's."""
    await make(api, "done", status("Passed"))
    config = yaml.safe_load(kubeconfig.read_text())
    current = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    config["contexts"].append({"name": "shop", "context": {**current["context"], "namespace": NS}})
    other = tmp_path / "kubeconfig.yaml"
    other.write_text(yaml.safe_dump(config))
    monkeypatch.delenv("KUBECONFIG")
    code, out = await run_cli("wait", "done", "--kubeconfig", str(other), "--context", "shop")
    assert code == 0 and f"LoadTest {NS}/done: Passed" in out, out
    code, out = await run_cli("results", "done", "--kubeconfig", str(other), "--context", "nope")
    assert code == 2 and "--context" in out and "'nope'" in out and len(out.strip().splitlines()) == 1, out


async def test_report_draws_the_stored_series_and_falls_back_to_status_without_it(
        api: Kube, tmp_path: Path) -> None:
    series = TimeSeries(t=[1.0, 2.0, 2.5], requests=[500, 600, 100], p50=[1.0, 2.0, None],
                        p95=[3.0, 4.0, None], p99=[5.0, 6.0, None], virtual_users=[2, 2, 0],
                        ws_connections=[0, 0, 0], ws_sessions=[0, 0, 0], ws_msgs_sent=[0, 0, 0],
                        ws_msgs_received=[0, 0, 0], dropped_iterations=[0, 0, 0])
    await make(api, "done", status("Passed"))
    row = {"scenario": "s", "name": "GET /", "protocol": "http", "requests": 1200, "errors": 3,
           "duration": {"count": 1200, "p95": 4.2}}
    await api.apply({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": builders.results_name("done"), "namespace": NS},
                     "data": {builders.RESULTS_KEY: json.dumps({"byRequest": [row]})},
                     "binaryData": {builders.SERIES_KEY: base64.b64encode(pack(series)).decode()}})
    page = tmp_path / "report.html"
    code, out = await run_cli("report", "done", "-n", NS, "-o", str(page))
    assert code == 0, out
    assert "passed, 3 points" in out
    text = page.read_text()
    assert 'data-verdict="passed"' in text and 'data-requests="1200"' in text
    assert re.search(r'data-name="p95" data-points="2"', text)
    assert "http_req_duration" in text and "virtualUsers: 2" in text  # thresholds and the spec
    assert '<td data-value="&quot;GET /&quot;">GET /</td>' in text and '<td data-value="4.2">' in text

    await make(api, "bare", status("Failed"))
    code, out = await run_cli("report", "bare", "-n", NS, "-o", str(page))
    assert code == 0 and "failed, 0 points" in out
    assert 'data-verdict="failed"' in page.read_text()
    assert (await run_cli("report", "nope", "-n", NS, "-o", str(page)))[0] == 2


def test_exit_codes_are_0_passed_1_failed_2_otherwise() -> None:
    assert [client.exit_code(p) for p in LoadTestPhase] == [2, 2, 2, 2, 0, 1, 2, 2]
    assert client.exit_code(None) == 2
