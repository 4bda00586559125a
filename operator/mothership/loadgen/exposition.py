"""Prometheus exposition of a worker's Stats, read at scrape time.

Why a custom collector: the hot loop records into plain ints and our own
histograms (stats.py); calling prometheus_client per request would cost more
than the request's own bookkeeping. ``StatsCollector.collect`` reads the
Stats only when Prometheus scrapes, and emits the series named in
``api.vocabulary`` with labels ``loadtest`` and ``worker`` (plus ``scenario``
and ``status_class`` on ``http_reqs``, ``class`` on ``errors``). Labels take a
bounded set of values: never a URL, a VU or a pod.

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
from .stats import ERROR_CLASSES, STATUS_CLASSES, Stats

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

        m = BY_NAME["http_reqs"]
        fam = CounterMetricFamily(_family_name(m.prometheus), m.help,
                                  labels=[*names, "scenario", "status_class"])
        width = len(STATUS_CLASSES)
        for s, scenario in enumerate(stats.scenarios):
            for k, status_class in enumerate(STATUS_CLASSES):
                n = stats.http_counts[s * width + k]
                if n:
                    fam.add_metric([*base, scenario, status_class], n)
        yield fam

        m = BY_NAME["errors"]
        fam = CounterMetricFamily(_family_name(m.prometheus), m.help, labels=[*names, "class"])
        per_class = [0] * len(ERROR_CLASSES)
        for i, n in enumerate(stats.error_counts):
            per_class[i % len(ERROR_CLASSES)] += n
        for cls, n in zip(ERROR_CLASSES, per_class, strict=True):
            fam.add_metric([*base, cls.value], n)
        yield fam

        for name in ("http_req_duration", "ws_connecting", "ws_msg_latency"):
            m = BY_NAME[name]
            h: Histogram = getattr(stats, name)
            hist = HistogramMetricFamily(m.prometheus, m.help, labels=names)
            hist.add_metric(base, histogram_buckets(h), sum_value=h.sum)
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
