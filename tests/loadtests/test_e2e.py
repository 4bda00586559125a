"""LoadTests end to end: ``mothership operator`` on a real API server, worker pods run by the pod runner.

Each test applies a LoadTest as a user would, and reads its status back as
``kubectl get lt`` would; the workers are real ``mothership worker`` processes
on 127.x.y.z loading a real demo target on 127.0.0.1. Loads are small (a few
virtual users for 2-4 s) and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from mothership.kube import ApiError, Kube
from mothership.loadgen.timeseries import unpack
from mothership.loadtests import builders
from tests.conftest import wait_until
from tests.largest_specs import (
    ANNOTATION_CAP,
    LAST_HANDLED,
    annotation_bytes,
    kopf_json,
    largest_loadtest_spec,
)
from tests.loadtests.conftest import DemoTargetProcess
from tests.operator.harness import Cluster, audit_triple, rbac_problems
from tests.podrunner import PodRunner

ROOT = Path(__file__).resolve().parents[2]
FINAL = ("Passed", "Failed", "Stopped", "Errored")


def loadtest(name: str, namespace: str, url: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "target": {"url": url},
        "scenarios": [{"name": "items", "requests": [{"path": "/api/items"}]}],
        "virtualUsers": 2,
        "workers": 2,
        "duration": "2s",
        "gracefulStop": "2s",
        **spec,
    }
    return {"apiVersion": "mothership.dev/v1alpha1", "kind": "LoadTest",
            "metadata": {"name": name, "namespace": namespace}, "spec": body}


async def status_of(api: Kube, namespace: str, name: str) -> dict[str, Any]:
    lt = await api.get("LoadTest", name, namespace)
    assert lt is not None, f"LoadTest {namespace}/{name} is gone"
    return dict(lt.get("status") or {})


async def until_phase(api: Kube, namespace: str, name: str, *phases: str, timeout: float = 40.0,
                      seen: list[str] | None = None) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        status = await status_of(api, namespace, name)
        phase = status.get("phase")
        if seen is not None and phase and (not seen or seen[-1] != phase):
            seen.append(phase)
        return status if phase in phases else None

    result: dict[str, Any] = await wait_until(check, timeout=timeout, interval=0.1,
                                              what=f"{name} to reach {'/'.join(phases)}")
    return result


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    found = [c for c in status.get("conditions") or [] if c["type"] == type_]
    assert found, f"no {type_} condition in {status.get('conditions')}"
    return dict(found[0])


def wait_command(cluster: Cluster, namespace: str, name: str,
                 timeout: int = 60) -> subprocess.Popen[bytes]:
    """``mothership loadtest wait`` as CI would run it, against the same API server."""
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    return subprocess.Popen(
        [sys.executable, "-m", "mothership", "loadtest", "wait", name, "-n", namespace,
         "--timeout", str(timeout)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


async def exit_code(process: subprocess.Popen[bytes], timeout: float = 30.0) -> tuple[int, str]:
    out, _ = await asyncio.wait_for(asyncio.to_thread(process.communicate), timeout=timeout)
    return int(process.returncode), out.decode(errors="replace")


# --- the cases ------------------------------------------------------------------------------------


async def test_three_workers_run_then_pass_with_the_totals_the_target_counted(
        cluster: Cluster, api: Kube, tenant_namespace: str, pod_runner: PodRunner,
        target: DemoTargetProcess) -> None:
    ns = tenant_namespace
    await api.apply(loadtest("smoke", ns, target.url, workers=3, virtualUsers=3, thresholds=[
        {"metric": "http_req_duration", "stat": "p95", "lt": "1s"},
        {"metric": "errors", "stat": "rate", "lt": "1%"},
    ]))
    waiter = wait_command(cluster, ns, "smoke")
    seen: list[str] = []
    status = await until_phase(api, ns, "smoke", *FINAL, seen=seen)
    assert status["phase"] == "Passed", status
    assert "Running" in seen, seen
    counted = await target.requests()
    assert counted > 0
    assert status["summary"]["requests"] == counted
    assert status["summary"]["errors"] == 0
    assert status["workers"]["total"] == 3
    assert status["workers"]["succeeded"] == 3
    assert status["startAt"] and status["completionTime"]
    assert condition(status, "ThresholdsPassed")["status"] == "True"
    assert condition(status, "Completed")["reason"] == "RanToCompletion"
    assert [t["ok"] for t in status["thresholds"]] == [True, True]
    code, out = await exit_code(waiter)
    assert code == 0, out
    metrics = await _get_text(f"{cluster.url}/metrics")
    phase = "mothership_loadtest_status_phase"
    assert gauge(metrics, phase, namespace=ns, name="smoke", phase="Passed") == 1
    assert gauge(metrics, phase, namespace=ns, name="smoke", phase="Running") == 0
    assert gauge(metrics, "mothership_loadtest_status_rps", namespace=ns, name="smoke") > 0
    assert gauge(metrics, "mothership_loadtest_status_http_req_duration_p95_seconds", namespace=ns,
                 name="smoke") == pytest.approx(status["summary"]["httpReqDuration"]["p95"] / 1000)


def gauge(text: str, metric: str, **labels: str) -> float:
    """The value of one series in a Prometheus exposition, found by its labels in any order."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == metric and sample.labels == labels:
                return float(sample.value)
    raise AssertionError(f"no {metric}{labels} in the operator's /metrics")


async def _get_text(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.text()


async def test_the_whole_per_request_table_is_in_the_results_configmap_and_status_has_the_busiest(
        cluster: Cluster, api: Kube, tenant_namespace: str, pod_runner: PodRunner,
        target: DemoTargetProcess) -> None:
    """Twelve named requests (one failing) and a scoped threshold: all twelve rows in the ConfigMap, ten in
    status, the CLI prints the whole table, and the rows add up to the target's count."""
    ns = tenant_namespace
    requests = [{"path": f"/api/items?page={k}", "name": f"page-{k:02d}"} for k in range(11)]
    requests.append({"path": "/status/503", "name": "broken"})
    scoped = {"metric": "errors", "stat": "rate", "lt": "1%", "request": "page-00"}
    await api.apply(loadtest("rows", ns, target.url, scenarios=[{"name": "shop", "requests": requests}],
                             thresholds=[scoped]))
    status = await until_phase(api, ns, "rows", *FINAL)
    assert status["phase"] == "Passed", status  # the scoped threshold ignores the broken request
    assert status["byRequestRows"] == 12 and len(status["byRequest"]) == 10
    cm = await api.get("ConfigMap", builders.results_name("rows"), ns)
    assert cm is not None and cm["metadata"]["ownerReferences"][0]["kind"] == "LoadTest"
    doc = json.loads(cm["data"][builders.RESULTS_KEY])
    rows = {r["name"]: r for r in doc["byRequest"]}
    assert list(rows) == [r["name"] for r in requests] and doc["final"] is True
    assert rows["broken"]["errors"] == rows["broken"]["requests"] > 0
    counted = await target.requests()
    assert sum(r["requests"] for r in rows.values()) == status["summary"]["requests"] == counted
    assert {r["name"] for r in status["byRequest"]} <= set(rows)
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    out = subprocess.run([sys.executable, "-m", "mothership", "loadtest", "results", "rows", "-n", ns],
                         env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "by request" in out.stdout and "shop page-10" in out.stdout and "shop broken" in out.stdout


async def test_the_series_is_stored_with_the_results_and_loadtest_report_charts_it(
        cluster: Cluster, api: Kube, tenant_namespace: str, pod_runner: PodRunner,
        target: DemoTargetProcess, tmp_path: Path) -> None:
    """A 4 s run: the results ConfigMap holds the packed series, whose points add up to the summary, and
    ``mothership loadtest report`` renders it with the whole per-request table."""
    ns = tenant_namespace
    requests = [{"path": "/api/items", "name": "list"}, {"path": "/", "name": "home"}]
    await api.apply(loadtest("charted", ns, target.url, duration="4s",
                             scenarios=[{"name": "shop", "requests": requests}]))
    status = await until_phase(api, ns, "charted", *FINAL)
    assert status["phase"] == "Passed", status
    cm = await api.get("ConfigMap", builders.results_name("charted"), ns)
    assert cm is not None
    series = unpack(base64.b64decode(cm["binaryData"][builders.SERIES_KEY]))
    assert len(series) >= 2
    assert sum(series.requests) == status["summary"]["requests"] == await target.requests()
    assert set(series.by_request) == {"shop/list", "shop/home"}
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    page = tmp_path / "report.html"
    out = subprocess.run([sys.executable, "-m", "mothership", "loadtest", "report", "charted", "-n", ns,
                          "-o", str(page)], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert f"passed, {len(series)} points" in out.stdout
    html = page.read_text()
    assert 'data-verdict="passed"' in html and f'data-requests="{status["summary"]["requests"]}"' in html
    assert f'data-name="requests/s" data-points="{len(series)}"' in html
    for name in ("list", "home"):  # the per-request table, from results.json
        assert f'<td data-value="&quot;{name}&quot;">{name}</td>' in html


async def test_a_threshold_breach_ends_failed_and_ttl_removes_the_children_but_keeps_results(
        cluster: Cluster, api: Kube, tenant_namespace: str, pod_runner: PodRunner,
        target: DemoTargetProcess) -> None:
    ns = tenant_namespace
    await api.apply(loadtest(
        "slow", ns, target.url, scenarios=[{"name": "slow", "requests": [{"path": "/slow?ms=30"}]}],
        thresholds=[{"metric": "http_req_duration", "stat": "p95", "lt": "10ms"}],
        ttlSecondsAfterFinished=0))
    waiter = wait_command(cluster, ns, "slow")
    status = await until_phase(api, ns, "slow", *FINAL)
    assert status["phase"] == "Failed", status
    threshold = condition(status, "ThresholdsPassed")
    assert (threshold["status"], threshold["reason"]) == ("False", "ThresholdFailed")
    assert "http_req_duration p95" in threshold["message"]
    assert status["thresholds"][0]["ok"] is False
    assert status["thresholds"][0]["value"] >= 0.03
    code, out = await exit_code(waiter)
    assert code == 1, out
    assert "FAIL http_req_duration p95" in out

    async def children_gone() -> bool:
        return all([await api.get(kind, child, ns) is None for kind, child in (
            ("Job", builders.job_name("slow")), ("ConfigMap", builders.plan_name("slow")),
            ("ConfigMap", builders.results_name("slow")), ("Secret", builders.token_name("slow")))])

    await wait_until(children_gone, timeout=10, interval=0.1, what="ttl clean-up")
    kept = await status_of(api, ns, "slow")
    assert kept["phase"] == "Failed"
    assert kept["summary"]["requests"] == status["summary"]["requests"] > 0


async def test_a_target_too_slow_to_answer_within_the_run_fails_as_no_data(
        cluster: Cluster, api: Kube, tenant_namespace: str, pod_runner: PodRunner,
        target: DemoTargetProcess) -> None:
    """/slow?ms=9000 under the default 10 s timeout: nothing completes, every request is interrupted."""
    ns = tenant_namespace
    await api.apply(loadtest(
        "hung", ns, target.url, scenarios=[{"name": "slow", "requests": [{"path": "/slow?ms=9000"}]}],
        gracefulStop="500ms", thresholds=[{"metric": "http_req_duration", "stat": "p95", "lt": "20s"}]))
    waiter = wait_command(cluster, ns, "hung")
    status = await until_phase(api, ns, "hung", *FINAL)
    assert status["phase"] == "Failed", status
    completed = condition(status, "Completed")
    assert (completed["status"], completed["reason"]) == ("True", "NoData")
    assert completed["message"].startswith("NoData: no HTTP request got a response")
    assert condition(status, "ThresholdsPassed")["reason"] == "NoData"
    summary = status["summary"]
    assert summary["requests"] == summary["errors"] == 2 and summary["errorsByClass"] == {"interrupted": 2}
    code, out = await exit_code(waiter)
    assert code == 1, out

    async def event() -> bool:
        events = await api.list("Event", ns)
        return any("NoData" in (e.get("message") or "") and e["involvedObject"]["name"] == "hung"
                   for e in events)

    await wait_until(event, timeout=5, what="an Event saying NoData")


async def test_stop_true_ends_stopped_with_a_partial_summary(
        cluster: Cluster, api: Kube, tenant_namespace: str, pod_runner: PodRunner,
        target: DemoTargetProcess) -> None:
    ns = tenant_namespace
    await api.apply(loadtest("long", ns, target.url, duration="60s"))
    waiter = wait_command(cluster, ns, "long")
    await until_phase(api, ns, "long", "Running")
    await wait_until(lambda: _requests(api, ns, "long"), timeout=10, what="live requests in status")
    await api.patch("LoadTest", "long", ns, {"spec": {"stop": True}})
    status = await until_phase(api, ns, "long", *FINAL, timeout=20)
    assert status["phase"] == "Stopped", status
    assert condition(status, "Completed")["reason"] == "StoppedByUser"
    assert 0 < status["summary"]["requests"] <= await target.requests()
    assert status["summary"]["durationSeconds"] < 30
    code, out = await exit_code(waiter)
    assert code == 2, out


async def test_a_launched_test_refuses_every_change_but_stop_so_plan_job_and_verdict_agree(
        api: Kube, tenant_namespace: str, pod_runner: PodRunner, target: DemoTargetProcess) -> None:
    """kube-apiserver's CEL transition rule refuses the edit itself; ``spec.stop`` still goes through."""
    ns = tenant_namespace
    await api.apply(loadtest("fixed", ns, target.url, duration="60s"))
    await until_phase(api, ns, "fixed", "Running")
    for change in ({"duration": "5s"}, {"workers": 1}, {"ttlSecondsAfterFinished": 0}):
        with pytest.raises(ApiError) as refused:
            await api.patch("LoadTest", "fixed", ns, {"spec": change})
        assert refused.value.status == 422, refused.value
        assert "create a new LoadTest" in refused.value.message, refused.value.message
    with pytest.raises(ApiError) as refused:  # kubectl apply of an edited file: the same answer
        await api.apply(loadtest("fixed", ns, target.url, duration="5s"))
    assert refused.value.status == 422 and "except spec.stop" in refused.value.message, refused.value
    stored = await api.get("LoadTest", "fixed", ns)
    assert stored is not None and stored["spec"]["duration"] == "60s"
    plan = await api.get("ConfigMap", builders.plan_name("fixed"), ns)
    assert plan is not None and "duration: 60s" in plan["data"][builders.PLAN_KEY]
    await api.patch("LoadTest", "fixed", ns, {"spec": {"stop": True}})
    status = await until_phase(api, ns, "fixed", *FINAL, timeout=20)
    assert status["phase"] == "Stopped", status


async def _requests(api: Kube, namespace: str, name: str) -> int:
    return int(((await status_of(api, namespace, name)).get("summary") or {}).get("requests") or 0)


async def test_an_operator_killed_mid_run_reattaches_and_reports_the_same_totals(
        cluster: Cluster, api: Kube, tenant_namespace: str, pod_runner: PodRunner,
        target: DemoTargetProcess) -> None:
    ns = tenant_namespace
    await api.apply(loadtest("restart", ns, target.url, duration="3s"))
    running = await until_phase(api, ns, "restart", "Running")
    cluster.kill()
    try:
        await asyncio.sleep(0)  # the operator is gone; the workers keep running on their own
    finally:
        await asyncio.to_thread(cluster.start)
    status = await until_phase(api, ns, "restart", *FINAL)
    assert status["phase"] == "Passed", status
    assert status["startAt"] == running["startAt"], "a restart must re-attach, not start again"
    assert status["summary"]["requests"] == await target.requests() > 0
    assert status["workers"]["succeeded"] == 2


async def test_a_test_that_ended_while_the_operator_was_down_is_rebuilt_from_termination_messages(
        cluster: Cluster, api: Kube, tenant_namespace: str, pod_runner: PodRunner,
        target: DemoTargetProcess) -> None:
    ns = tenant_namespace
    await api.apply(loadtest("offline", ns, target.url, duration="2s", gracefulStop="1s"))
    await until_phase(api, ns, "offline", "Running")
    cluster.kill()
    try:
        token = base64.b64decode((await api.get("Secret", builders.token_name("offline"), ns) or {})
                                 ["data"][builders.TOKEN_KEY]).decode()
        await release_when_done(pod_runner, token, 2)  # as if their linger ran out
        await wait_until(lambda: all(p.ended for p in pod_runner.pods.values()), timeout=15,
                         what="every worker pod to terminate")
    finally:
        await asyncio.to_thread(cluster.start)
    status = await until_phase(api, ns, "offline", *FINAL)
    assert status["phase"] == "Passed", status
    assert status["summary"]["requests"] == await target.requests() > 0


async def release_when_done(runner: PodRunner, token: str, count: int) -> None:
    """Wait until every worker has run to the end, then release it (POST /stop), as linger would."""
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=2)) as session:

        async def done(url: str) -> bool:
            async with session.get(f"{url}/snapshot") as response:
                return (await response.json())["state"] == "done"

        pods = list(runner.pods.values())
        assert len(pods) == count
        for p in pods:
            await wait_until(lambda p=p: done(p.url), timeout=15, interval=0.1, what=f"worker {p.index} done")
        for p in pods:
            async with session.post(f"{p.url}/stop") as response:
                assert response.status == 200


async def test_a_disallowed_target_is_refused_with_an_event_and_no_job(
        cluster: Cluster, api: Kube, tenant_namespace: str) -> None:
    ns = tenant_namespace
    await api.apply(loadtest("evil", ns, "http://10.20.30.40:8080"))
    waiter = wait_command(cluster, ns, "evil")
    status = await until_phase(api, ns, "evil", *FINAL, timeout=15)
    assert status["phase"] == "Errored"
    accepted = condition(status, "Accepted")
    assert (accepted["status"], accepted["reason"]) == ("False", "TargetNotAllowed")
    assert "10.20.30.40" in accepted["message"]

    async def event() -> bool:
        events = await api.list("Event", ns)
        return any(e.get("reason") == "TargetNotAllowed" and e["involvedObject"]["name"] == "evil"
                   for e in events)

    await wait_until(event, timeout=5, what="a TargetNotAllowed event")
    for kind, child in (("Job", builders.job_name("evil")), ("ConfigMap", builders.plan_name("evil")),
                        ("Secret", builders.token_name("evil"))):
        assert await api.get(kind, child, ns) is None, f"{kind} {child} must not exist"
    code, out = await exit_code(waiter)
    assert code == 2, out

    await api.apply(loadtest("wide", ns, "http://127.0.0.1:1", workers=6, virtualUsers=6))
    # maxWorkers is 5 in the test tenant
    status = await until_phase(api, ns, "wide", *FINAL, timeout=15)
    assert condition(status, "Accepted")["reason"] == "TooManyWorkers"
    assert await api.get("Job", builders.job_name("wide"), ns) is None


async def refused(api: Kube, namespace: str, name: str) -> str:
    """Wait for ``name`` to be refused as TargetNotAllowed with no child made; its message."""
    status = await until_phase(api, namespace, name, *FINAL, timeout=15)
    assert status["phase"] == "Errored", status
    accepted = condition(status, "Accepted")
    assert (accepted["status"], accepted["reason"]) == ("False", "TargetNotAllowed"), accepted
    for kind, child in (("Job", builders.job_name(name)), ("ConfigMap", builders.plan_name(name)),
                        ("Secret", builders.token_name(name))):
        assert await api.get(kind, child, namespace) is None, f"{kind} {child} must not exist"
    return str(accepted["message"])


async def test_a_host_that_only_looks_like_a_service_of_the_namespace_is_refused_naming_host_and_rule(
        api: Kube, tenant_namespace: str) -> None:
    """``anything.<ns>`` is Service ``anything`` of the namespace only if it exists; when the
    namespace is ``dev`` the same form is a public domain (see test_targets)."""
    ns = tenant_namespace
    await api.apply(loadtest("lookalike", ns, f"https://anything.{ns}/"))
    message = await refused(api, ns, "lookalike")
    assert f"target host anything.{ns} is not in namespace {ns}" in message, message
    assert f"Service anything in namespace {ns} does not exist" in message, message
    assert "allowed: 127.0.0.1:*" in message and "spec.loadTests.allowedTargets" in message, message


async def test_an_external_name_service_of_the_namespace_is_refused_naming_where_it_points(
        api: Kube, tenant_namespace: str) -> None:
    """A tenant with ``edit`` can make a DNS alias to anywhere; its in-namespace name is no way round."""
    ns = tenant_namespace
    await api.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "alias", "namespace": ns},
                     "spec": {"type": "ExternalName", "externalName": "evil.example.com"}})
    for name, url in (("alias-short", f"http://alias.{ns}"),
                      ("alias-fqdn", f"http://alias.{ns}.svc.cluster.local:80")):
        await api.apply(loadtest(name, ns, url))
        message = await refused(api, ns, name)
        assert "Service alias is an ExternalName Service (to evil.example.com)" in message, message


async def test_a_cluster_ip_service_of_the_namespace_is_accepted_by_its_short_name(
        cluster: Cluster, api: Kube, tenant_namespace: str) -> None:
    """No pattern needed, and the operator's one GET of the Service is within the chart's rules."""
    ns = tenant_namespace
    before = len(cluster.controlplane.audit()) if cluster.controlplane is not None else 0
    await api.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": ns},
                     "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}})
    await api.apply(loadtest("inside", ns, f"http://web.{ns}:80"))
    assert await accepted_with_target(api, ns, "inside") == f"http://web.{ns}:80"
    if cluster.controlplane is not None:
        async def looked_up() -> bool:
            return ("get", "", "services", "") in map(audit_triple, cluster.audit_since(before))

        await wait_until(looked_up, timeout=5, interval=0.1, what="the operator's GET of Service web")
        assert not rbac_problems(cluster.audit_since(before))
    await delete_unstarted(api, ns, "inside")


async def test_an_app_target_waits_for_the_app_and_its_service_then_is_accepted(
        api: Kube, tenant_namespace: str) -> None:
    ns = tenant_namespace
    await api.apply(loadtest("for-app", ns, "unused", target={"app": "shop"}))
    await api.apply({"apiVersion": "mothership.dev/v1alpha1", "kind": "App",
                     "metadata": {"name": "shop", "namespace": ns},
                     "spec": {"image": "ghcr.io/acme/shop:1.0", "port": 8080}})
    url = await accepted_with_target(api, ns, "for-app", timeout=30)
    assert url == f"http://shop.{ns}.svc.cluster.local:80"
    await delete_unstarted(api, ns, "for-app")


async def accepted_with_target(api: Kube, namespace: str, name: str, timeout: float = 15) -> str:
    """Wait until ``name`` is judged, assert it was accepted; the target URL its Job was given."""
    async def judged() -> dict[str, Any] | None:
        status = await status_of(api, namespace, name)
        found = [c for c in status.get("conditions") or [] if c["type"] == "Accepted"]
        return found[0] if found and found[0]["status"] != "Unknown" else None

    verdict = await wait_until(judged, timeout=timeout, interval=0.1, what=f"{name} to be judged")
    assert verdict["status"] == "True", verdict
    job = await api.get("Job", builders.job_name(name), namespace)
    assert job is not None
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    return str(args[args.index("--target") + 1])


async def delete_unstarted(api: Kube, namespace: str, name: str) -> None:
    """Delete a test whose workers never ran (no pod runner) and wait until it is gone."""
    await api.delete("LoadTest", name, namespace)

    async def gone() -> bool:
        return await api.get("LoadTest", name, namespace) is None

    await wait_until(gone, timeout=20, interval=0.1, what=f"LoadTest {name} to go")


async def test_a_killed_worker_pod_is_named_in_status_and_the_test_errors(
        cluster: Cluster, api: Kube, tenant_namespace: str, pod_runner: PodRunner,
        target: DemoTargetProcess) -> None:
    ns = tenant_namespace
    await api.apply(loadtest("crash", ns, target.url, workers=3, virtualUsers=3, duration="20s"))
    await until_phase(api, ns, "crash", "Running")
    await pod_runner.kill(1)
    status = await until_phase(api, ns, "crash", *FINAL, timeout=20)
    assert status["phase"] == "Errored", status
    failures = status["workers"]["failures"]
    assert [(f["index"], f["reason"]) for f in failures] == [(1, "Error")], failures
    assert "137" in failures[0]["message"]
    completed = condition(status, "Completed")
    assert completed["reason"] == "WorkerFailed" and "worker 1" in completed["message"]
    assert status["summary"]["durationSeconds"] < 15, "the other workers are stopped at once"


async def test_an_image_pull_failure_errors_before_the_start(
        cluster: Cluster, api: Kube, tenant_namespace: str, pod_runner: PodRunner,
        target: DemoTargetProcess) -> None:
    ns = tenant_namespace
    pod_runner.image_pull_backoff.add(1)
    await api.apply(loadtest("pull", ns, target.url))
    status = await until_phase(api, ns, "pull", *FINAL, timeout=20)
    assert status["phase"] == "Errored", status
    assert [(f["index"], f["reason"]) for f in status["workers"]["failures"]] == [(1, "ImagePullBackOff")]
    assert condition(status, "Started")["reason"] == "NeverStarted"
    assert "startAt" not in status
    await wait_until(lambda: all(p.ended for p in pod_runner.pods.values()), timeout=10,
                     what="the healthy workers to be released")
    assert await target.requests() == 0


async def test_deleting_a_running_test_stops_its_workers_and_collects_its_children(
        cluster: Cluster, api: Kube, tenant_namespace: str, pod_runner: PodRunner,
        target: DemoTargetProcess) -> None:
    ns = tenant_namespace
    await api.apply(loadtest("doomed", ns, target.url, duration="60s"))
    await until_phase(api, ns, "doomed", "Running")
    await api.delete("LoadTest", "doomed", ns)

    async def gone() -> bool:
        return (await api.get("LoadTest", "doomed", ns) is None
                and await api.get("Job", builders.job_name("doomed"), ns) is None)

    await wait_until(gone, timeout=20, interval=0.1, what="the LoadTest and its Job to go")
    await wait_until(lambda: all(p.ended for p in pod_runner.pods.values()), timeout=15,
                     what="every worker to exit")


async def test_every_request_the_operator_made_for_a_load_test_was_allowed_by_the_charts_rules(
        cluster: Cluster, api: Kube, tenant_namespace: str, pod_runner: PodRunner,
        target: DemoTargetProcess) -> None:
    """A whole LoadTest, then the control plane's audit log: nothing refused, all within RULES."""
    if cluster.controlplane is None:
        pytest.skip("needs the audit log of the built control plane (not $KUBECONFIG)")
    before = len(cluster.controlplane.audit())
    ns = tenant_namespace
    await api.apply(loadtest("audited", ns, target.url, workers=1, virtualUsers=1, duration="1s"))
    status = await until_phase(api, ns, "audited", *FINAL)
    assert status["phase"] == "Passed", status
    events = cluster.audit_since(before)
    assert not rbac_problems(events)
    seen = {(verb, resource, sub) for verb, _, resource, sub in map(audit_triple, events)}
    for expected in [("create", "jobs", ""), ("patch", "configmaps", ""), ("patch", "secrets", ""),
                     ("get", "secrets", ""), ("patch", "loadtests", "status")]:
        assert expected in seen, (expected, sorted(seen))


OPERATOR_ONLY = [
    p for p in sorted((ROOT / "tests" / "data" / "invalid" / "loadtest").glob("*.yaml"))
    if p.read_text().splitlines()[1].startswith("# refused-by: operator")
]


@pytest.mark.parametrize("path", OPERATOR_ONLY, ids=lambda p: p.stem)
async def test_a_spec_only_the_operator_can_refuse_errors_as_invalid_spec_naming_the_field(
        api: Kube, tenant_namespace: str, path: Path) -> None:
    """What CEL cannot express (a regex that must compile) is refused in status, with no Job."""
    ns = tenant_namespace
    want = path.read_text().splitlines()[0].removeprefix("# expect: ").partition(": ")[0]
    doc = yaml.safe_load(path.read_text())
    doc["metadata"] = {"name": "invalid", "namespace": ns}
    await api.apply(doc)  # the API server accepts it: CEL cannot compile a regex
    status = await until_phase(api, ns, "invalid", *FINAL, timeout=15)
    assert status["phase"] == "Errored"
    accepted = condition(status, "Accepted")
    assert (accepted["status"], accepted["reason"]) == ("False", "InvalidSpec")
    assert want in accepted["message"], accepted["message"]
    assert await api.get("Job", builders.job_name("invalid"), ns) is None


@pytest.mark.parametrize("scenarios", [1, 20], ids=["heaviest", "widest"])
async def test_the_largest_valid_load_test_is_handled_and_its_annotations_fit_the_cap(
        api: Kube, tenant_namespace: str, scenarios: int) -> None:
    """The largest spec the CRD accepts (tests/largest_specs.py) is refused for its target, a policy
    reason, not by the API server for kopf's annotation: the refusal and kopf's copy of the spec
    are both written, and all annotations stay under 256 KiB."""
    ns = tenant_namespace
    spec = largest_loadtest_spec(scenarios=scenarios)
    await api.apply({"apiVersion": "mothership.dev/v1alpha1", "kind": "LoadTest",
                     "metadata": {"name": "largest", "namespace": ns}, "spec": spec})
    status = await until_phase(api, ns, "largest", *FINAL, timeout=30)
    accepted = condition(status, "Accepted")
    assert (accepted["status"], accepted["reason"]) == ("False", "TargetNotAllowed"), accepted

    async def handled() -> dict[str, Any] | None:
        obj = await api.get("LoadTest", "largest", ns)
        return obj if obj and LAST_HANDLED in (obj["metadata"].get("annotations") or {}) else None

    obj = await wait_until(handled, timeout=15, what="kopf's last-handled annotation")
    assert json.loads(obj["metadata"]["annotations"][LAST_HANDLED])["spec"] == spec
    size = annotation_bytes(obj)
    print(f"largest LoadTest ({scenarios} scenarios): spec JSON {len(kopf_json(spec))} bytes, "
          f"annotations {size} bytes")
    assert size < ANNOTATION_CAP
