"""The Grafana dashboard speaks the project's one vocabulary, and shows every metric in it.

Worker series come from ``api.vocabulary.METRICS`` (histograms as ``_bucket``);
operator series are the list in ``mothership.metrics``. A name on the dashboard
that is in neither is a synonym or a typo, and fails here before anyone opens
Grafana. ``test_scrape.py`` then checks every expression against real data.
"""

from __future__ import annotations

import re

from mothership.api.vocabulary import METRICS, MetricKind

from .dashboard import DASHBOARD, dashboard_expressions, panels, referenced_metrics, variables

OPERATOR_METRICS = {
    "mothership_reconcile_total",
    "mothership_reconcile_errors_total",
    "mothership_reconcile_time_seconds_bucket",
    "mothership_managed_objects",
    "mothership_apps",
    "mothership_loadtest_status_phase",
    "mothership_loadtest_status_rps",
    "mothership_loadtest_status_error_rate",
    "mothership_loadtest_status_http_req_duration_p50_seconds",
    "mothership_loadtest_status_http_req_duration_p95_seconds",
    "mothership_loadtest_status_http_req_duration_p99_seconds",
}
"""The operator's series the dashboard may use (the metrics.py contract)."""


def worker_series() -> dict[str, str]:
    """Prometheus series name -> vocabulary name; a trend is queried through its buckets."""
    return {
        (m.prometheus + "_bucket" if m.kind is MetricKind.TREND else m.prometheus): m.name for m in METRICS
    }


def exported_operator_series() -> set[str]:
    """What mothership.metrics actually declares, as the names Prometheus stores."""
    from mothership import metrics

    suffix = {"counter": "_total", "histogram": "_bucket", "gauge": ""}
    declared = set()
    for value in vars(metrics).values():
        describe = getattr(value, "describe", None)
        if callable(describe) and getattr(value, "_name", "").startswith("mothership_"):
            for family in describe():
                declared.add(family.name + suffix[family.type])
    return declared


def test_every_metric_on_the_dashboard_is_in_the_vocabulary_or_the_operator_list() -> None:
    unknown = referenced_metrics() - set(worker_series()) - OPERATOR_METRICS
    assert not unknown, f"not in api/vocabulary.py or the operator's metrics: {sorted(unknown)}"


def test_the_operator_list_is_what_metrics_py_declares() -> None:
    missing = OPERATOR_METRICS - exported_operator_series()
    assert not missing, f"not declared in mothership/metrics.py: {sorted(missing)}"


def test_every_vocabulary_metric_has_a_panel() -> None:
    shown = referenced_metrics()
    missing = [name for series, name in worker_series().items() if series not in shown]
    assert not missing, f"vocabulary metrics without a panel: {missing}"


def test_the_dashboard_has_namespace_and_loadtest_variables() -> None:
    found = variables()
    assert {"datasource", "namespace", "loadtest"} <= set(found)
    assert found["loadtest"]["multi"] and found["loadtest"]["includeAll"]
    assert found["loadtest"]["allValue"] == ".*"
    assert "$namespace" in found["loadtest"]["definition"], "LoadTests are listed per namespace"


def test_every_load_test_query_filters_by_namespace_and_loadtest() -> None:
    for title, expr in dashboard_expressions():
        for selector in re.findall(r"(mothership_loadtest_[a-z0-9_]+)(\{[^}]*\})?", expr):
            name, labels = selector
            if name.startswith("mothership_loadtest_status_"):
                assert 'namespace=~"$namespace"' in labels and 'name=~"$loadtest"' in labels, title
            else:
                assert 'namespace=~"$namespace"' in labels and 'loadtest=~"$loadtest"' in labels, title


def test_percentiles_are_computed_from_summed_buckets_never_averaged() -> None:
    for title, expr in dashboard_expressions():
        assert "avg" not in expr, title
        if "_bucket" in expr:
            assert re.fullmatch(
                r"histogram_quantile\(0\.\d+, sum by \(le(, controller|, scenario, name)?\) "
                r"\(rate\(\w+_bucket(\{[^}]*\})?"
                r"\[\$__rate_interval\]\)\)\)", expr), f"{title}: {expr}"


def test_rates_use_grafanas_rate_interval() -> None:
    for title, expr in dashboard_expressions():
        for window in re.findall(r"\[([^\]]+)\]", expr):
            assert window == "$__rate_interval", f"{title}: [{window}]"


def test_panels_have_unique_ids_titles_and_a_prometheus_datasource() -> None:
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids))
    for panel in panels():
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel["description"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)) and all(t["expr"] for t in panel["targets"])


def test_the_dashboard_is_importable_by_uid_and_sorted_by_rows() -> None:
    assert DASHBOARD["uid"] == "mothership" and DASHBOARD["title"] == "Mothership"
    rows = [p["title"] for p in DASHBOARD["panels"] if p["type"] == "row"]
    assert rows == ["Load test", "By request", "WebSocket", "LoadTest status (operator)", "Operator"]
