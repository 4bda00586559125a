"""LoadTest children: the whole Job compared with a literal, then one option at a time."""

from __future__ import annotations

import base64
import json

import yaml

from mothership.api.common import Owner
from mothership.api.loadtest import LoadTest, Percentiles, RequestStats
from mothership.loadgen.coordinator import Result, Verdict
from mothership.loadgen.timeseries import unpack
from mothership.loadtests import builders
from tests.loadgen.test_timeseries import worst_case

OWNER = Owner(api_version="mothership.dev/v1alpha1", kind="LoadTest", name="smoke",
              uid="u-1", namespace="team-a")
OWNER_REF = {"apiVersion": "mothership.dev/v1alpha1", "kind": "LoadTest", "name": "smoke",
             "uid": "u-1", "controller": True, "blockOwnerDeletion": True}
LABELS = {
    "app.kubernetes.io/component": "loadtest-worker",
    "app.kubernetes.io/instance": "smoke",
    "app.kubernetes.io/managed-by": "mothership",
    "app.kubernetes.io/name": "mothership-loadtest",
    "mothership.dev/loadtest": "smoke",
}


def loadtest(**spec: object) -> LoadTest:
    base = {
        "target": {"app": "shop"},
        "scenarios": [{"name": "browse", "requests": [{"path": "/"}]}],
        "virtualUsers": 30,
        "workers": 3,
        "duration": "30s",
    }
    return LoadTest.model_validate({"metadata": {"name": "smoke", "namespace": "team-a"},
                                    "spec": {**base, **spec}})


def test_the_job_is_indexed_non_root_read_only_and_bounded() -> None:
    job = builders.build_job(loadtest(), OWNER, image="ghcr.io/x/mothership:1",
                             target_url="http://shop.team-a.svc.cluster.local:80")
    assert job == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "smoke-workers", "namespace": "team-a", "labels": LABELS,
                     "ownerReferences": [OWNER_REF]},
        "spec": {
            "completionMode": "Indexed",
            "completions": 3,
            "parallelism": 3,
            "backoffLimitPerIndex": 0,
            "maxFailedIndexes": 0,
            "activeDeadlineSeconds": 30 + 5 + 300 + 60,
            "template": {
                "metadata": {"labels": LABELS},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                        "fsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "worker",
                        "image": "ghcr.io/x/mothership:1",
                        "args": ["worker", "--plan", "/etc/mothership/plan/plan.yaml", "--count", "3",
                                 "--listen", "0.0.0.0:9090", "--token-file", "/etc/mothership/token/token",
                                 "--loadtest", "smoke", "--target", "http://shop.team-a.svc.cluster.local:80",
                                 "--summary-file", "/dev/termination-log", "--ready-timeout", "300",
                                 "--linger", "60"],
                        "ports": [{"name": "metrics", "containerPort": 9090, "protocol": "TCP"}],
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 9090},
                                           "periodSeconds": 1, "failureThreshold": 3},
                        "resources": {"requests": {"cpu": "1", "memory": "512Mi"},
                                      "limits": {"cpu": "1", "memory": "512Mi"}},
                        "securityContext": {"allowPrivilegeEscalation": False,
                                            "capabilities": {"drop": ["ALL"]},
                                            "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                                            "runAsUser": 65532},
                        "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "File",
                        "volumeMounts": [
                            {"name": "plan", "mountPath": "/etc/mothership/plan", "readOnly": True},
                            {"name": "token", "mountPath": "/etc/mothership/token", "readOnly": True},
                            {"name": "tmp", "mountPath": "/tmp"},
                        ],
                    }],
                    "volumes": [
                        {"name": "plan", "configMap": {"name": "smoke-plan"}},
                        {"name": "token", "secret": {"secretName": "smoke-token", "defaultMode": 0o440}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                    ],
                },
            },
        },
    }


def test_spec_image_overrides_the_operator_image() -> None:
    job = builders.build_job(loadtest(image="my/worker:2"), OWNER, image="op:1", target_url="http://x")
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "my/worker:2"


def test_workers_default_to_one_per_virtual_users_per_worker() -> None:
    lt = loadtest(workers=None, virtualUsers=2500, virtualUsersPerWorker=1000)
    job = builders.build_job(lt, OWNER, image="i", target_url="http://x")
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 3


def test_tolerated_worker_failures_are_failed_indexes_the_job_tolerates() -> None:
    """A failed worker fails its index, never retried; the Job fails (and its controller ends the
    other workers) only past toleratedWorkerFailures, which it cannot count beyond the workers."""
    for tolerated, expected in ((1, 1), (3, 3), (7, 3)):
        spec = builders.build_job(loadtest(toleratedWorkerFailures=tolerated), OWNER, image="i",
                                  target_url="http://x")["spec"]
        assert (spec["backoffLimitPerIndex"], spec["maxFailedIndexes"]) == (0, expected)
        assert "backoffLimit" not in spec, "a total limit would fail the Job at the first failure"
        assert spec["completionMode"] == "Indexed"
        assert spec["template"]["spec"]["restartPolicy"] == "Never"


def test_spread_workers_prefers_different_nodes() -> None:
    job = builders.build_job(loadtest(spreadWorkers=True), OWNER, image="i", target_url="http://x")
    term = job["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"] == {"matchLabels": {"mothership.dev/loadtest": "smoke"}}


def test_worker_resources_are_requests_and_limits() -> None:
    job = builders.build_job(loadtest(resources={"cpu": "500m", "memory": "1Gi"}), OWNER,
                             image="i", target_url="http://x")
    res = job["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert res == {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "500m", "memory": "1Gi"}}


def test_the_plan_configmap_holds_the_spec_the_workers_validate() -> None:
    lt = loadtest()
    cm = builders.build_plan(lt, OWNER)
    assert cm["metadata"]["name"] == "smoke-plan" and cm["metadata"]["ownerReferences"] == [OWNER_REF]
    plan = yaml.safe_load(cm["data"]["plan.yaml"])
    assert LoadTest.model_validate(plan).spec == lt.spec


def test_the_token_secret_carries_the_given_token_base64() -> None:
    secret = builders.build_token_secret(loadtest(), OWNER, "s3cret")
    assert base64.b64decode(secret["data"]["token"]) == b"s3cret"
    assert secret["metadata"]["name"] == "smoke-token"


def test_builders_are_pure_same_input_same_bytes() -> None:
    a = builders.build_job(loadtest(), OWNER, image="i", target_url="http://x")
    b = builders.build_job(loadtest(), OWNER, image="i", target_url="http://x")
    assert yaml.safe_dump(a) == yaml.safe_dump(b)


def test_the_pod_monitor_selects_this_tests_workers_metrics_port() -> None:
    pm = builders.build_pod_monitor(loadtest(), OWNER)
    assert pm["spec"]["selector"] == {"matchLabels": {"mothership.dev/loadtest": "smoke"}}
    assert pm["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"


def _rows(n: int) -> list[RequestStats]:
    return [RequestStats(scenario="shop", name=f"request-{k:04d}", requests=(k * 7919) % 1000,
                         duration=Percentiles(count=1, p50=1.0, p95=2.0, p99=3.0)) for k in range(n)]


def test_the_results_configmap_holds_the_whole_table_owned_by_the_loadtest() -> None:
    owner = Owner(api_version="mothership.dev/v1alpha1", kind="LoadTest", name="shop", namespace="team-a",
                  uid="u-1")
    result = Result(verdict=Verdict.PASSED, final=True, by_request=_rows(12))
    cm = builders.build_results(owner, result)
    assert cm["metadata"]["name"] == builders.results_name("shop") == "shop-results"
    assert cm["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    doc = json.loads(cm["data"][builders.RESULTS_KEY])
    assert [r["name"] for r in doc["byRequest"]] == [f"request-{k:04d}" for k in range(12)]
    assert (doc["byRequestRows"], doc["byRequestOmitted"], doc["verdict"]) == (12, 0, "passed")


def test_the_results_configmap_carries_the_packed_series_within_one_budget() -> None:
    owner = Owner(api_version="mothership.dev/v1alpha1", kind="LoadTest", name="shop", namespace="team-a",
                  uid="u-1")
    assert "binaryData" not in builders.build_results(owner, Result(by_request=_rows(3)))
    series = worst_case()
    rows = [r.model_copy(update={"name": r.name + "-" * 400}) for r in _rows(2020)]  # > 1 MB of table
    cm = builders.build_results(owner, Result(by_request=rows, time_series=series))
    assert unpack(base64.b64decode(cm["binaryData"][builders.SERIES_KEY])) == series
    size = len(cm["data"][builders.RESULTS_KEY]) + len(cm["binaryData"][builders.SERIES_KEY])
    assert size <= builders.RESULTS_LIMIT
    alone = builders.build_results(owner, Result(by_request=rows))
    omitted = [json.loads(c["data"][builders.RESULTS_KEY])["byRequestOmitted"] for c in (alone, cm)]
    assert 0 < omitted[0] < omitted[1]  # the table made room for the series


def test_a_table_too_big_for_a_configmap_loses_its_least_busy_rows_and_says_how_many() -> None:
    rows = _rows(2020)
    whole = builders.results_document(Result(by_request=rows), limit=10**9)
    limit = len(whole) // 2
    doc = json.loads(builders.results_document(Result(by_request=rows), limit=limit))
    assert len(json.dumps(doc, separators=(",", ":"))) <= limit
    kept = doc["byRequest"]
    assert doc["byRequestRows"] == 2020 and doc["byRequestOmitted"] == 2020 - len(kept) > 0
    least_kept = min(r["requests"] for r in kept)
    names = {r["name"] for r in kept}
    assert all(r.requests <= least_kept for r in rows if r.name not in names)  # only the least busy went
    assert [r["name"] for r in kept] == sorted(names)  # table order kept
