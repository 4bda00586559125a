"""Every Prometheus metric the operator exports, declared once.

Names mirror controller-runtime (kubernetes-sigs/controller-runtime:
pkg/internal/controller/metrics/metrics.go) under ``mothership_``, so dashboards
and alerts written for Go operators carry over. Labels take bounded values
only: a controller name, a result, a kind, a phase, or a LoadTest's
namespace/name (one series per test, removed when the test goes away) — never a
URL, a pod or a virtual user.

The workers' own ``mothership_loadtest_*`` metrics live in ``loadgen``; this
module is the operator process's. It imports neither kopf nor the handlers:
:func:`reconciling` takes the kopf error classes by duck type (a
``delay`` attribute marks a temporary error), so it can time anything.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

registry: CollectorRegistry = REGISTRY
"""The registry ``/metrics`` serves (the default one, so process_* metrics come for free)."""

RECONCILE_TOTAL = Counter(
    "mothership_reconcile_total",
    "Reconciliations per controller, by result: success, error or requeue_after.",
    ["controller", "result"],
    registry=registry,
)
RECONCILE_ERRORS = Counter(
    "mothership_reconcile_errors_total",
    "Reconciliations that ended in an error (permanent, temporary or a bug), per controller.",
    ["controller"],
    registry=registry,
)
RECONCILE_TIME = Histogram(
    "mothership_reconcile_time_seconds",
    "Time one reconciliation took, per controller, in seconds.",
    ["controller"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7,
             0.8, 0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5, 6, 7, 8, 9, 10, 15,
             20, 25, 30, 40, 50, 60),  # controller-runtime's buckets
    registry=registry,
)
MANAGED_OBJECTS = Gauge(
    "mothership_managed_objects",
    "Objects the operator currently manages (its custom resources and their children), by kind.",
    ["kind"],
    registry=registry,
)
APPS = Gauge(
    "mothership_apps",
    "Apps by status.phase (Pending, Progressing, Ready, Degraded, Failed).",
    ["phase"],
    registry=registry,
)

# --- LoadTest status, live while a test runs (namespace/name are bounded by the tests that exist).
LOADTEST_PHASE = Gauge(
    "mothership_loadtest_status_phase",
    "1 for the LoadTest's current status.phase, 0 for the others.",
    ["namespace", "name", "phase"],
    registry=registry,
)
LOADTEST_RPS = Gauge(
    "mothership_loadtest_status_rps",
    "Requests per second over the run so far, merged across workers.",
    ["namespace", "name"],
    registry=registry,
)
LOADTEST_ERROR_RATE = Gauge(
    "mothership_loadtest_status_error_rate",
    "Failed requests over all requests so far (0..1), merged across workers.",
    ["namespace", "name"],
    registry=registry,
)
LOADTEST_P50 = Gauge(
    "mothership_loadtest_status_http_req_duration_p50_seconds",
    "Median HTTP request duration so far, from the merged histogram, in seconds.",
    ["namespace", "name"],
    registry=registry,
)
LOADTEST_P95 = Gauge(
    "mothership_loadtest_status_http_req_duration_p95_seconds",
    "95th percentile HTTP request duration so far, from the merged histogram, in seconds.",
    ["namespace", "name"],
    registry=registry,
)
LOADTEST_P99 = Gauge(
    "mothership_loadtest_status_http_req_duration_p99_seconds",
    "99th percentile HTTP request duration so far, from the merged histogram, in seconds.",
    ["namespace", "name"],
    registry=registry,
)

LOADTEST_SERIES = (LOADTEST_RPS, LOADTEST_ERROR_RATE, LOADTEST_P50, LOADTEST_P95, LOADTEST_P99)


def forget_loadtest(namespace: str, name: str, phases: tuple[str, ...] = ()) -> None:
    """Drop a deleted LoadTest's series, so the label set stays bounded by the tests that exist."""
    for gauge in LOADTEST_SERIES:
        with suppress(KeyError):
            gauge.remove(namespace, name)
    for phase in phases:
        with suppress(KeyError):
            LOADTEST_PHASE.remove(namespace, name, phase)


CONTROLLERS = ("tenant", "app", "loadtest")
RESULTS = ("success", "error", "requeue_after")


def initialize() -> None:
    """Create every controller's series at zero, as controller-runtime does at start.

    Otherwise ``mothership_reconcile_errors_total`` would not exist until the
    first error, and ``rate()`` over it (or an alert on it) would see nothing.
    """
    for controller in CONTROLLERS:
        RECONCILE_ERRORS.labels(controller)
        RECONCILE_TIME.labels(controller)
        for result in RESULTS:
            RECONCILE_TOTAL.labels(controller, result)


@contextmanager
def reconciling(controller: str) -> Iterator[None]:
    """Time and count one reconciliation of ``controller`` (``app``, ``tenant``, ``loadtest``).

    Result ``success`` when the block returns, ``requeue_after`` when it raises an
    error that carries a retry delay (kopf.TemporaryError), ``error`` otherwise;
    every exception also counts in ``mothership_reconcile_errors_total``.
    Durations come from the monotonic clock.
    """
    start = time.monotonic()
    try:
        yield
    except Exception as exc:
        result = "requeue_after" if getattr(exc, "delay", None) is not None else "error"
        RECONCILE_ERRORS.labels(controller).inc()
        _observe(controller, result, start)
        raise
    _observe(controller, "success", start)


def _observe(controller: str, result: str, start: float) -> None:
    """A cancelled reconcile (operator shutdown) is neither counted nor timed."""
    RECONCILE_TIME.labels(controller).observe(time.monotonic() - start)
    RECONCILE_TOTAL.labels(controller, result).inc()


def set_counts(gauge: Gauge, counts: dict[str, int], known: tuple[str, ...] = ()) -> None:
    """Set a by-label gauge from counts; labels in ``known`` that are absent read 0, not stale."""
    for label in {*known, *counts}:
        gauge.labels(label).set(counts.get(label, 0))
