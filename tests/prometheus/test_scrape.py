"""Prometheus for real: it scrapes the operator and a load test's workers, and the dashboard holds.

One experiment per module (``experiment``), about 15 s:

- ``mothership operator`` is the end-to-end tests' own (``cluster``: the real
  control plane, our CRDs, the operator as its own user); the test creates a
  Tenant and Apps once Prometheus scrapes it, so reconcile counters, durations, managed objects and
  Apps by phase move while it watches. Job ``mothership-operator``, honouring
  labels as the chart's ServiceMonitor does.
- A short local load test: the demo target (``mothership demo-target``), two
  ``mothership worker`` processes (the command worker pods run) on ports chosen
  up front, and the coordinator that both launchers use, driving them through
  their HTTP contract. Job ``mothership-workers``, with the ``namespace`` target
  label a PodMonitor would add.
- The LoadTest status gauges are set by the operator's own
  ``loadtests.coordination.set_gauges`` on every coordinator update, in this
  process, whose ``mothership.metrics`` registry is served as a second
  operator target: the code path of the operator's LoadTest daemon, without
  pods and a kubelet.

Then every dashboard expression is evaluated the way Grafana does (a range
query, ``$__rate_interval`` = 4 x the 1 s scrape interval), and the request
rate Prometheus computes is compared with the test's own summary.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.operator.harness import Cluster, client
from tests.realcluster import RUN

from .conftest import RATE_INTERVAL, Prometheus, free_port
from .dashboard import dashboard_expressions, referenced_metrics, variable_queries

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = f"shop-{RUN}"
TENANT = f"prom-{RUN}"
LOADTEST = "checkout"
TOKEN = "prometheus-test-token"
ARRIVAL_RATE = 100.0
DURATION = 6.0

PLAN: dict[str, Any] = {
    "apiVersion": "mothership.dev/v1alpha1",
    "kind": "LoadTest",
    "metadata": {"name": LOADTEST, "namespace": NAMESPACE},
    "spec": {
        "target": {"url": "http://127.0.0.1:1"},  # replaced by --target
        "workers": 2,
        "arrivalRate": ARRIVAL_RATE,
        "maxVirtualUsers": 200,
        "duration": f"{DURATION:g}s",
        "gracefulStop": "1s",
        # One scenario, so every arrival makes exactly two requests (one of them an error of class
        # `status`) and one short WebSocket session: the request rate is deterministic, and the
        # run's tail (iterations in flight at the end, counted in its duration) stays ~0.1 s.
        "scenarios": [
            {"name": "checkout",
             "requests": [{"path": "/api/items"}, {"path": "/status/503", "expectStatus": [200]}],
             "websocket": {"path": "/ws/echo", "message": "ping", "interval": "25ms", "hold": "100ms"}},
        ],
    },
}


def mothership(*args: str) -> list[str]:
    """The console script, as users and pods run it."""
    script = Path(sys.executable).with_name("mothership")
    return [str(script), *args] if script.exists() else [sys.executable, "-m", "mothership", *args]


@dataclass
class Experiment:
    prometheus: Prometheus
    start: float
    """Wall-clock epoch seconds of the load test's start barrier."""
    end: float
    """Start plus the longest worker's elapsed seconds."""
    result: Any
    """The coordinator's final Result."""
    operator_log: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def window(self) -> tuple[float, float]:
        """The range a dashboard would show: a little before the test to a little after."""
        return self.start - 10, self.end + 3


class Processes:
    """Child processes started for the experiment, each with its own log, all stopped at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self, name: str, command: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        self.children.append((name, process))
        return process

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_line(self, name: str, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        process = dict(self.children)[name]
        while time.monotonic() < deadline:
            match = re.search(pattern, self.log(name))
            if match:
                return match
            if process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{name} did not print {pattern!r}:\n{self.log(name)[-3000:]}")

    def terminate_all(self) -> None:
        for _, process in self.children:
            if process.poll() is None:
                process.terminate()

    def stop_all(self, grace: float = 0.5) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds: shutting down is not under test here."""
        self.terminate_all()
        deadline = time.monotonic() + grace
        for _, process in self.children:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def _up(prometheus: Prometheus, job: str, count: int) -> bool:
    result = prometheus.query(f'count(up{{job="{job}"}} == 1)')
    return bool(result) and int(float(result[0]["value"][1])) >= count


async def _create_tenant_and_apps(cluster: Cluster) -> None:
    async with client(cluster) as kube:
        await kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        await kube.apply({"apiVersion": "mothership.dev/v1alpha1", "kind": "Tenant",
                          "metadata": {"name": TENANT}, "spec": {}})
        for name in ("web", "api"):
            await kube.apply({"apiVersion": "mothership.dev/v1alpha1", "kind": "App",
                              "metadata": {"name": name, "namespace": NAMESPACE},
                              "spec": {"image": "ghcr.io/acme/shop:1.0", "replicas": 2}})
        # A tenant's mistake only the operator can refuse (a regex CEL cannot compile), so
        # reconcile errors move too.
        broken = yaml.safe_load((ROOT / "tests" / "data" / "invalid" / "loadtest"
                                 / "websocket-pattern-invalid.yaml").read_text())
        broken["metadata"] = {"name": "broken", "namespace": NAMESPACE}
        await kube.apply(broken)


async def _edit_apps(cluster: Cluster) -> None:
    """Edits a user would make; each one is a reconcile Prometheus sees as a rate, not a first sample."""
    async with client(cluster) as kube:
        for name in ("web", "api"):
            await kube.patch("App", name, NAMESPACE, {"spec": {"replicas": 3}})


async def _clean_up(cluster: Cluster) -> None:
    async with client(cluster) as kube:
        await kube.delete("Tenant", TENANT)
        await kube.delete("Namespace", NAMESPACE)


async def _run_load_test(worker_urls: list[str]) -> Any:
    """The coordinator drives the worker processes; each update sets the operator's LoadTest gauges."""
    from mothership.api.loadtest import LoadTestPhase, LoadTestSpec, LoadTestStatus
    from mothership.loadgen.coordinator import Coordinator, Result
    from mothership.loadtests.coordination import set_gauges

    spec = LoadTestSpec.model_validate(PLAN["spec"])

    def on_update(result: Result) -> None:
        phase = result.verdict.phase if result.verdict is not None else LoadTestPhase.RUNNING
        set_gauges(NAMESPACE, LOADTEST, LoadTestStatus(phase=phase, summary=result.summary))

    coordinator = Coordinator(worker_urls, TOKEN, spec, start_delay=0.5, poll_interval=0.5,
                              ready_timeout=30.0, on_update=on_update)
    result = await coordinator.run()
    on_update(result)
    return result


@pytest.fixture(scope="module")
def experiment(prometheus: Prometheus, cluster: Cluster,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Experiment]:
    from prometheus_client import start_http_server

    from mothership import metrics

    workdir = tmp_path_factory.mktemp("experiment")
    processes = Processes(workdir)
    operator_port, gauges_port = cluster.port, free_port()
    worker_ports = [free_port(), free_port()]
    prometheus.set_targets("mothership-operator", [
        {"targets": [f"127.0.0.1:{operator_port}"], "labels": {"namespace": "mothership-system"}},
        {"targets": [f"127.0.0.1:{gauges_port}"], "labels": {"namespace": "mothership-system"}},
    ])
    prometheus.set_targets("mothership-workers", [
        {"targets": [f"127.0.0.1:{port}"], "labels": {"namespace": NAMESPACE, "pod": f"{LOADTEST}-{i}"}}
        for i, port in enumerate(worker_ports)
    ])
    gauges_server, _ = start_http_server(gauges_port, addr="127.0.0.1", registry=metrics.registry)

    # The operator is the session's (``cluster``); the experiment starts what it observes.
    try:
        processes.start("demo-target", mothership("demo-target", "--port", "0"))
        target = processes.wait_line("demo-target", r"listening on (http://\S+)").group(1)
        plan, token = workdir / "plan.yaml", workdir / "token"
        plan.write_text(yaml.safe_dump(PLAN))
        token.write_text(TOKEN)
        for index, port in enumerate(worker_ports):
            processes.start(f"worker-{index}", mothership(
                "worker", "--plan", str(plan), "--token-file", str(token), "--index", str(index),
                "--count", str(len(worker_ports)), "--listen", f"127.0.0.1:{port}",
                "--loadtest", LOADTEST, "--target", target, "--linger", "5",
                "--summary-file", str(workdir / f"summary-{index}.json"),
            ))
        prometheus.wait_for("Prometheus scraping the operator, the gauges and both workers",
                            lambda: _up(prometheus, "mothership-operator", 2)
                            and _up(prometheus, "mothership-workers", 2), timeout=30)
        asyncio.run(_create_tenant_and_apps(cluster))
        prometheus.wait_for("the operator's first reconciles scraped", lambda: prometheus.query(
            'mothership_reconcile_time_seconds_count{controller="app"}'), timeout=15)
        asyncio.run(_edit_apps(cluster))
        result = asyncio.run(_run_load_test([f"http://127.0.0.1:{p}" for p in worker_ports]))
        assert result.verdict is not None and result.summary.requests > 0, result
        start = float(result.start_at)
        end = start + float(result.elapsed)
        # One more scrape after the end, so range queries see the last samples.
        prometheus.wait_for("a scrape after the load test", lambda: prometheus.query(
            f'timestamp(up{{job="mothership-operator"}}) > {end + 1}'), timeout=10)
        processes.terminate_all()  # the data is in Prometheus; stop while the tests query it
        yield Experiment(prometheus, start, end, result, cluster.log,
                         [p for _, p in processes.children])
    except BaseException:
        for name, _ in processes.children:
            sys.stderr.write(f"--- {name} log (tail) ---\n{processes.log(name)[-2000:]}\n")
        sys.stderr.write(f"--- prometheus log (tail) ---\n{prometheus.log_tail()}\n")
        raise
    finally:
        processes.stop_all()
        gauges_server.shutdown()
        asyncio.run(_clean_up(cluster))
        from mothership.loadtests.coordination import forget_gauges

        forget_gauges(NAMESPACE, LOADTEST)


def substitute(expr: str) -> str:
    """Grafana's variables as a dashboard user with this namespace and LoadTest selected sees them."""
    return (expr.replace("$__rate_interval", RATE_INTERVAL)
                .replace("$namespace", NAMESPACE).replace("$loadtest", LOADTEST))


def finite_points(result: list[dict[str, Any]]) -> int:
    return sum(1 for series in result for _, value in series["values"] if math.isfinite(float(value)))


def test_every_series_the_dashboard_uses_exists(experiment: Experiment) -> None:
    start, end = experiment.window
    missing = [name for name in sorted(referenced_metrics())
               if not experiment.prometheus.series(name, start, end)]
    assert not missing, f"series on the dashboard that Prometheus never scraped: {missing}"


@pytest.mark.parametrize("panel, expr", dashboard_expressions(), ids=lambda v: str(v)[:60])
def test_every_dashboard_expression_parses_and_returns_data(
    experiment: Experiment, panel: str, expr: str
) -> None:
    start, end = experiment.window
    result = experiment.prometheus.query_range(substitute(expr), start, end, step=1)
    assert finite_points(result) > 0, f"{panel!r}: no data for {substitute(expr)}"


def test_the_dashboard_variables_offer_the_namespace_and_the_loadtest(experiment: Experiment) -> None:
    start, end = experiment.window
    (namespace_query, loadtest_query) = variable_queries()
    for (metric, label), expected in ((namespace_query, NAMESPACE), (loadtest_query, LOADTEST)):
        values = experiment.prometheus.label_values(label, substitute(metric), start, end)
        assert expected in values, f"label_values({metric}, {label}) = {values}"


def test_the_request_rate_agrees_with_the_load_tests_own_totals_within_5_percent(
    experiment: Experiment,
) -> None:
    """Prometheus' view (counter increase between scrapes) against the test's own count over its duration.

    The open model starts ``arrivalRate`` iterations per second for ``duration``, so the test's own
    rate is its request total over that duration. (``summary.rps`` divides by the elapsed time,
    which also counts the drain of the last iterations: a few percent lower on a 6 s test.)
    """
    summary = experiment.result.summary
    own_rate = summary.requests / DURATION
    # Raw samples with their scrape timestamps, per worker (a worker's series share a scrape).
    inside = (experiment.start + 0.5, experiment.start + DURATION - 0.2)
    raw = experiment.prometheus.query(
        f'mothership_loadtest_http_reqs_total{{namespace="{NAMESPACE}", loadtest="{LOADTEST}"}}[30s]',
        at=experiment.end + 1)
    per_worker: dict[str, dict[float, float]] = {}
    for series in raw:
        samples = per_worker.setdefault(series["metric"]["worker"], {})
        for t, v in series["values"]:
            if inside[0] <= float(t) <= inside[1]:
                samples[float(t)] = samples.get(float(t), 0.0) + float(v)
    assert sorted(per_worker) == ["0", "1"], per_worker
    prometheus_rate = 0.0
    for worker, samples in per_worker.items():
        times = sorted(samples)
        assert times[-1] - times[0] >= DURATION / 2, f"worker {worker}: too few scrapes inside the run"
        prometheus_rate += (samples[times[-1]] - samples[times[0]]) / (times[-1] - times[0])
    assert prometheus_rate == pytest.approx(own_rate, rel=0.05), (
        f"Prometheus {prometheus_rate:.1f}/s vs the test's {summary.requests} requests in "
        f"{DURATION:g}s = {own_rate:.1f}/s")
    # And the dashboard's own panel (rate over $__rate_interval), averaged over the steady part.
    panel = experiment.prometheus.query_range(substitute(
        'sum(rate(mothership_loadtest_http_reqs_total{namespace=~"$namespace", loadtest=~"$loadtest"}'
        '[$__rate_interval]))'), experiment.start + 4.5, inside[1], step=0.25)
    values = [float(v) for _, v in panel[0]["values"]]
    assert sum(values) / len(values) == pytest.approx(own_rate, rel=0.05)


def test_the_operator_target_is_the_real_operator_reconciling_what_the_test_created(
    experiment: Experiment,
) -> None:
    _, end = experiment.window
    apps = experiment.prometheus.query(
        'sum(mothership_managed_objects{kind="App"})', at=end)
    assert apps and float(apps[0]["value"][1]) >= 2, apps
    reconciles = experiment.prometheus.query(
        'sum by (controller) (mothership_reconcile_total{result="success"})', at=end)
    controllers = {r["metric"]["controller"] for r in reconciles if float(r["value"][1]) > 0}
    assert {"app", "tenant"} <= controllers, reconciles


def test_worker_series_carry_only_bounded_labels(experiment: Experiment) -> None:
    start, end = experiment.window
    allowed = {"__name__", "job", "instance", "namespace", "pod", "loadtest", "worker",
               "scenario", "name", "status_class", "class", "le"}
    names: dict[str, set[str]] = {}
    for series in experiment.prometheus.series('{job="mothership-workers"}', start, end):
        if series["__name__"].startswith("mothership_loadtest_"):
            assert set(series) <= allowed, series
            assert series["loadtest"] == LOADTEST and series["worker"] in ("0", "1")
            if "name" in series:
                names.setdefault(series["__name__"], set()).add(f'{series["scenario"]} {series["name"]}')
    http = {"checkout GET /api/items", "checkout GET /status/503"}  # per request: scenario and name
    assert names["mothership_loadtest_http_reqs_total"] == http
    assert names["mothership_loadtest_http_req_duration_seconds_bucket"] == http
    assert names["mothership_loadtest_errors_total"] == {*http, "checkout WS /ws/echo"}
    assert names["mothership_loadtest_ws_msg_latency_seconds_bucket"] == {"checkout WS /ws/echo"}
