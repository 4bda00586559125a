"""Prometheus exposition of a worker's Stats, read at scrape time.

Why a custom collector: the hot loop records into plain ints and our own
histograms (stats.py); calling prometheus_client per request would cost more
than the request's own bookkeeping. ``StatsCollector.collect`` reads the
Stats only when Prometheus scrapes, and emits the series named in
``api.vocabulary`` with labels ``loadtest`` and ``worker``; the per-request
series (``http_reqs``, ``errors``, ``http_req_duration``, ``ws_connecting``,
``ws_msg_latency``) add ``scenario`` and ``name`` (the request's name, or
``METHOD path``, or ``WS path``), plus ``status_class`` on ``http_reqs`` and
``class`` on ``errors``. Labels take a bounded set of values (at most 2,020
rows, the spec's limits): never a URL with a host, a VU or a pod.

Histograms are exposed as Prometheus histograms whose ``le`` bounds are exact
bucket boundaries of the layout (powers of two and 1.5 times powers of two
from about 1 ms to 64 s), so each cumulative count is exact, not interpolated.

This module knows nothing of the worker's HTTP server or the coordinator;
the worker registers the collector on its own registry.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import accumulate

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ..api.vocabulary import BY_NAME, MetricKind
from .histogram import Histogram, bucket_index
from .stats import ERROR_CLASSES, ROW_HTTP, ROW_WS, STATUS_CLASSES, Stats

LE_BOUNDS: tuple[float, ...] = tuple(
    sorted({2.0**k for k in range(-10, 7)} | {1.5 * 2.0**k for k in range(-10, 6)})
)
"""The ``le`` bounds in seconds (0.0009765625 .. 64): each is a bucket boundary, so counts are exact."""
_LE_INDEX: tuple[int, ...] = tuple(bucket_index(le) for le in LE_BOUNDS)
_LE_TEXT: tuple[str, ...] = tuple(repr(le) for le in LE_BOUNDS)



def _family_name(prometheus: str) -> str:
    """prometheus_client adds ``_total`` to counters itself."""
    return prometheus.removesuffix("_total")


def histogram_buckets(h: Histogram) -> list[tuple[str, float]]:
    """Cumulative (le, count) pairs at LE_BOUNDS plus +Inf, for a HistogramMetricFamily."""
    cumulative = list(accumulate(h.counts, initial=0))  # cumulative[i] = sum(counts[:i])
    out = [(text, float(h.underflow + cumulative[i])) for text, i in zip(_LE_TEXT, _LE_INDEX, strict=True)]
    out.append(("+Inf", float(h.count)))
    return out


class StatsCollector(Collector):
    """Yields the vocabulary's Prometheus series from one worker's Stats at scrape time."""

    def __init__(self, stats: Stats, loadtest: str, worker: int) -> None:
        self.stats = stats
        self.loadtest = loadtest
        self.worker = str(worker)

    def describe(self) -> list[Metric]:
        """No up-front description: the registry then calls ``collect`` lazily only on scrape."""
        return []

    def collect(self) -> Iterator[Metric]:
        stats = self.stats
        base = [self.loadtest, self.worker]
        names = ["loadtest", "worker"]
        # Per-request series: one label pair (scenario, name) per Stats row, a
        # bounded set (the spec's requests); rows that recorded nothing yet are left out.
        rows = [(i, [*base, stats.scenarios[s], name], protocol)
                for i, (s, name, protocol) in enumerate(stats.rows) if _active(stats, i)]
        row_names = [*names, "scenario", "name"]

        m = BY_NAME["http_reqs"]
        fam = CounterMetricFamily(_family_name(m.prometheus), m.help, labels=[*row_names, "status_class"])
        width = len(STATUS_CLASSES)
        for i, labels, protocol in rows:
            if protocol != ROW_HTTP:
                continue
            for k, status_class in enumerate(STATUS_CLASSES):
                n = stats.http_counts[i * width + k]
                if n:
                    fam.add_metric([*labels, status_class], n)
        yield fam

        m = BY_NAME["errors"]
        fam = CounterMetricFamily(_family_name(m.prometheus), m.help, labels=[*row_names, "class"])
        nerr = len(ERROR_CLASSES)
        for i, labels, _ in rows:
            for k, cls in enumerate(ERROR_CLASSES):
                fam.add_metric([*labels, cls.value], stats.error_counts[i * nerr + k])
        yield fam

        m = BY_NAME["http_req_duration"]
        hist = HistogramMetricFamily(m.prometheus, m.help, labels=row_names)
        for i, labels, protocol in rows:
            if protocol == ROW_HTTP:
                h = stats.durations[i]
                hist.add_metric(labels, histogram_buckets(h), sum_value=h.sum)
        yield hist

        for name in ("ws_connecting", "ws_msg_latency"):
            m = BY_NAME[name]
            hist = HistogramMetricFamily(m.prometheus, m.help, labels=row_names)
            for i, labels, protocol in rows:
                if protocol == ROW_WS:
                    h = getattr(stats.ws_rows[i], name)
                    hist.add_metric(labels, histogram_buckets(h), sum_value=h.sum)
            yield hist

        for m in BY_NAME.values():
            if m.name in ("http_reqs", "errors") or m.kind is MetricKind.TREND:
                continue
            if m.kind is MetricKind.GAUGE:
                gauge = GaugeMetricFamily(m.prometheus, m.help, labels=names)
                gauge.add_metric(base, getattr(stats, m.name))
                yield gauge
            else:
                counter = CounterMetricFamily(_family_name(m.prometheus), m.help, labels=names)
                counter.add_metric(base, getattr(stats, m.name))
                yield counter


def _active(stats: Stats, row: int) -> bool:
    """Whether ``row`` has recorded anything (requests, errors or WebSocket sessions)."""
    nstatus, nerr = len(STATUS_CLASSES), len(ERROR_CLASSES)
    if any(stats.http_counts[row * nstatus:(row + 1) * nstatus]):
        return True
    if any(stats.error_counts[row * nerr:(row + 1) * nerr]):
        return True
    ws = stats.ws_rows.get(row)
    return ws is not None and ws.ws_sessions > 0
