"""LoadTest children, built purely: the plan ConfigMap, the control-token
Secret, the Indexed Job of workers, the optional PodMonitor, and the results
ConfigMap (the whole per-request table, too big for a status).

No clock, no randomness, no API: the token, the resolved target URL and the
image are passed in, so the same input gives the same bytes and the handler
can apply them any number of times. The Job is immutable once created; the
handler creates it once and treats 409 as success.
"""

from __future__ import annotations

import base64
import json
import math

import yaml

from mothership.api.common import Manifest, Owner, parse_duration, parse_quantity
from mothership.api.loadtest import LoadTest
from mothership.loadgen.coordinator import Result
from mothership.loadgen.timeseries import pack

COMPONENT = "loadtest-worker"
WORKER_PORT = 9090
PLAN_KEY = "plan.yaml"
RESULTS_KEY = "results.json"
SERIES_KEY = "timeseries.json.gz"
"""The results ConfigMap's ``binaryData`` key: the time series, packed (``loadgen.timeseries.pack``,
at most ``timeseries.PACKED_LIMIT`` bytes), which ``mothership loadtest report`` charts."""
RESULTS_LIMIT = 1_000_000
"""Bytes of results.json at most: a ConfigMap holds 1 MiB in all; the least busy rows go first."""
TOKEN_KEY = "token"
PLAN_DIR = "/etc/mothership/plan"
TOKEN_DIR = "/etc/mothership/token"
RUN_AS = 65532
LOADTEST_LABEL = "mothership.dev/loadtest"
READY_TIMEOUT_SECONDS = 300
"""How long a worker waits, ready, for the start barrier before giving up."""
LINGER_SECONDS = 60
"""How long a finished worker keeps serving its final snapshot."""


def job_name(name: str) -> str:
    return f"{name}-workers"


def plan_name(name: str) -> str:
    return f"{name}-plan"


def results_name(name: str) -> str:
    return f"{name}-results"


def token_name(name: str) -> str:
    return f"{name}-token"


def labels(name: str) -> dict[str, str]:
    """Labels of every child and worker pod; keys sorted."""
    return {
        "app.kubernetes.io/component": COMPONENT,
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/managed-by": "mothership",
        "app.kubernetes.io/name": "mothership-loadtest",
        LOADTEST_LABEL: name,
    }


def _meta(lt: LoadTest, owner: Owner, name: str) -> Manifest:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels(owner.name),
        "ownerReferences": [owner.reference()],
    }


def build_plan(lt: LoadTest, owner: Owner) -> Manifest:
    """The ConfigMap every worker reads its plan from: the LoadTest spec as YAML."""
    plan = {
        "apiVersion": lt.api_version,
        "kind": "LoadTest",
        "metadata": {"name": owner.name, "namespace": owner.namespace},
        "spec": lt.spec.wire(),
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(lt, owner, plan_name(owner.name)),
        "data": {PLAN_KEY: yaml.safe_dump(plan, sort_keys=False)},
    }


def results_document(result: Result, limit: int = RESULTS_LIMIT) -> str:
    """``results.json``: verdict, summary, thresholds and the whole per-request table, in ``limit`` bytes.

    Shape: ``{"final", "verdict", "reason", "elapsed", "summary", "thresholds", "byRequest": [...],
    "byRequestRows": N, "byRequestOmitted": k, "byRequestMissing": bool}``. A table too big for a
    ConfigMap loses its least busy rows (fewest requests, later rows first), counted in
    ``byRequestOmitted``; the rest keep their table order.
    """
    rows = [r.wire() for r in result.by_request]
    body = {
        "final": result.final,
        "verdict": result.verdict.value if result.verdict else None,
        "reason": result.reason,
        "elapsed": result.elapsed,
        "summary": result.summary.wire(),
        "thresholds": [t.wire() for t in result.thresholds],
        "byRequest": rows,
        "byRequestRows": len(rows),
        "byRequestOmitted": 0,
        "byRequestMissing": result.by_request_missing,
    }
    text = json.dumps(body, separators=(",", ":"))
    excess = len(text.encode()) - limit
    if excess > 0:
        sizes = [len(json.dumps(r, separators=(",", ":")).encode()) + 1 for r in rows]
        dropped: set[int] = set()
        for i in sorted(range(len(rows)), key=lambda i: (result.by_request[i].requests, -i)):
            if excess <= 0:
                break
            dropped.add(i)
            excess -= sizes[i]
        body["byRequest"] = [r for i, r in enumerate(rows) if i not in dropped]
        body["byRequestOmitted"] = len(dropped)
        text = json.dumps(body, separators=(",", ":"))
    return text


def build_results(owner: Owner, result: Result) -> Manifest:
    """The ConfigMap ``<name>-results`` with the whole results (``results_document``) and, once it has
    points, the packed time series (``SERIES_KEY``), owned by the LoadTest: deleted with it, or after
    ``ttlSecondsAfterFinished``.

    Both share the ConfigMap's budget: the series (at most ``PACKED_LIMIT`` bytes, about 64 KiB at
    worst in practice, base64 in the API) comes off ``RESULTS_LIMIT`` before the table is fitted.
    """
    series = base64.b64encode(pack(result.time_series)).decode("ascii") if len(result.time_series) else ""
    manifest: Manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": results_name(owner.name), "namespace": owner.namespace,
                     "labels": labels(owner.name), "ownerReferences": [owner.reference()]},
        "data": {RESULTS_KEY: results_document(result, RESULTS_LIMIT - len(series))},
    }
    if series:
        manifest["binaryData"] = {SERIES_KEY: series}
    return manifest


def build_token_secret(lt: LoadTest, owner: Owner, token: str) -> Manifest:
    """The per-test control token workers require on /snapshot, /start and /stop."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": _meta(lt, owner, token_name(owner.name)),
        "data": {TOKEN_KEY: base64.b64encode(token.encode()).decode()},
    }


def active_deadline_seconds(lt: LoadTest) -> int:
    """Duration + graceful stop + time to get ready and linger: a Job never outlives its use."""
    spec = lt.spec
    return math.ceil(
        spec.duration_seconds() + parse_duration(spec.graceful_stop) + READY_TIMEOUT_SECONDS + LINGER_SECONDS
    )


def build_job(lt: LoadTest, owner: Owner, *, image: str, target_url: str) -> Manifest:
    """The Indexed Job: one pod per worker, completions = parallelism = workers, no retries.

    A failed worker fails its index at once (``backoffLimitPerIndex: 0``: never
    retried, a replacement would miss the start barrier) and the Job tolerates
    ``toleratedWorkerFailures`` failed indexes (``maxFailedIndexes``) before it
    fails and its controller ends the other workers; the others run to their end
    meanwhile. ``backoffLimit`` is left to its default (unlimited with a per-index
    limit): with ``backoffLimit: 0`` the first failure anywhere fails the whole Job.
    Needs Kubernetes >= 1.29 (``JobBackoffLimitPerIndex``, on by default; GA in 1.33).
    """
    spec = lt.spec
    name = owner.name
    workers = spec.worker_count()
    image = spec.image or image
    resources = {
        "cpu": str(spec.resources.cpu),
        "memory": str(spec.resources.memory),
    }
    container: Manifest = {
        "name": "worker",
        "image": image,
        "args": [
            "worker",
            "--plan", f"{PLAN_DIR}/{PLAN_KEY}",
            "--count", str(workers),
            "--listen", f"0.0.0.0:{WORKER_PORT}",
            "--token-file", f"{TOKEN_DIR}/{TOKEN_KEY}",
            "--loadtest", name,
            "--target", target_url,
            "--summary-file", "/dev/termination-log",
            "--ready-timeout", str(READY_TIMEOUT_SECONDS),
            "--linger", str(LINGER_SECONDS),
        ],
        "ports": [{"name": "metrics", "containerPort": WORKER_PORT, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": "/healthz", "port": WORKER_PORT},
            "periodSeconds": 1,
            "failureThreshold": 3,
        },
        "resources": {"requests": dict(resources), "limits": dict(resources)},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
        },
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "volumeMounts": [
            {"name": "plan", "mountPath": PLAN_DIR, "readOnly": True},
            {"name": "token", "mountPath": TOKEN_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    pod_spec: Manifest = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            {"name": "plan", "configMap": {"name": plan_name(name)}},
            {"name": "token", "secret": {"secretName": token_name(name), "defaultMode": 0o440}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        ],
    }
    if spec.spread_workers:
        pod_spec["affinity"] = {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": {LOADTEST_LABEL: name}},
                        },
                    }
                ]
            }
        }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(lt, owner, job_name(name)),
        "spec": {
            "completionMode": "Indexed",
            "completions": workers,
            "parallelism": workers,
            "backoffLimitPerIndex": 0,
            "maxFailedIndexes": min(spec.tolerated_worker_failures, workers),
            "activeDeadlineSeconds": active_deadline_seconds(lt),
            "template": {"metadata": {"labels": labels(name)}, "spec": pod_spec},
        },
    }


def build_pod_monitor(lt: LoadTest, owner: Owner) -> Manifest:
    """A PodMonitor so Prometheus scrapes every worker's /metrics while the test runs."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": _meta(lt, owner, f"{owner.name}-workers"),
        "spec": {
            "selector": {"matchLabels": {LOADTEST_LABEL: owner.name}},
            "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics", "interval": "5s"}],
        },
    }


def worker_memory_bytes(lt: LoadTest) -> float:
    """Memory limit of one worker, in bytes (for capacity checks against the tenant quota)."""
    return parse_quantity(lt.spec.resources.memory)
