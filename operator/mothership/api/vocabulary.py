"""The load-test metric vocabulary, defined once.

Each entry names a concept the way k6 does (``http_req_duration``) and says
how it appears everywhere else: the Prometheus series a worker exports, its
unit, its help text, the field of the LoadTest summary it feeds, and which
threshold stats apply. Thresholds, worker metrics, the operator's gauges, the
docs tables and the Grafana dashboard are all checked against this list, so
they cannot drift apart (the spirit of k6's metrics/builtin.go).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class MetricKind(StrEnum):
    COUNTER = "counter"
    """A monotonically increasing count; thresholds use ``count`` or ``rate`` (per second)."""
    RATE = "rate"
    """A fraction of events that were bad; thresholds use ``rate`` (0..1) or ``count``."""
    TREND = "trend"
    """A distribution kept in a mergeable histogram; thresholds use percentiles, min, max, mean."""
    GAUGE = "gauge"
    """A current level; thresholds use ``max``."""


class Stat(StrEnum):
    """Aggregations a threshold can check."""

    COUNT = "count"
    RATE = "rate"
    MIN = "min"
    MAX = "max"
    MEAN = "mean"
    P50 = "p50"
    P90 = "p90"
    P95 = "p95"
    P99 = "p99"
    P999 = "p999"


TREND_STATS = (Stat.MIN, Stat.MAX, Stat.MEAN, Stat.P50, Stat.P90, Stat.P95, Stat.P99, Stat.P999)
STATS_BY_KIND: dict[MetricKind, tuple[Stat, ...]] = {
    MetricKind.COUNTER: (Stat.COUNT, Stat.RATE),
    MetricKind.RATE: (Stat.RATE, Stat.COUNT),
    MetricKind.TREND: TREND_STATS,
    MetricKind.GAUGE: (Stat.MAX,),
}

QUANTILES: dict[Stat, float] = {
    Stat.P50: 0.50, Stat.P90: 0.90, Stat.P95: 0.95, Stat.P99: 0.99, Stat.P999: 0.999,
}


class Unit(StrEnum):
    SECONDS = "seconds"
    BYTES = "bytes"
    COUNT = "count"
    RATIO = "ratio"


@dataclass(frozen=True)
class MetricDef:
    name: str
    """Threshold and docs name, k6 style: ``http_req_duration``."""
    kind: MetricKind
    unit: Unit
    prometheus: str
    """The worker's Prometheus series (base units; counters end in ``_total``)."""
    summary_field: str
    """The LoadTest ``status.summary`` field (camelCase) this metric feeds."""
    help: str


METRICS: tuple[MetricDef, ...] = (
    MetricDef("http_reqs", MetricKind.COUNTER, Unit.COUNT,
              "mothership_loadtest_http_reqs_total", "requests",
              "HTTP requests completed or failed, by scenario and status class."),
    MetricDef("http_req_duration", MetricKind.TREND, Unit.SECONDS,
              "mothership_loadtest_http_req_duration_seconds", "httpReqDuration",
              "HTTP request latency from the scheduled send time to the last response byte."),
    MetricDef("errors", MetricKind.RATE, Unit.RATIO,
              "mothership_loadtest_errors_total", "errors",
              "Failed requests and WebSocket sessions, by error class."),
    MetricDef("ws_sessions", MetricKind.COUNTER, Unit.COUNT,
              "mothership_loadtest_ws_sessions_total", "websocket.sessions",
              "WebSocket sessions started."),
    MetricDef("ws_connecting", MetricKind.TREND, Unit.SECONDS,
              "mothership_loadtest_ws_connecting_seconds", "websocket.connecting",
              "WebSocket connect and handshake time."),
    MetricDef("ws_connections", MetricKind.GAUGE, Unit.COUNT,
              "mothership_loadtest_ws_connections", "websocket.connections",
              "WebSocket connections open now (summary: the peak)."),
    MetricDef("ws_handshake_failures", MetricKind.COUNTER, Unit.COUNT,
              "mothership_loadtest_ws_handshake_failures_total", "websocket.handshakeFailures",
              "WebSocket handshakes refused, timed out or answered without 101."),
    MetricDef("ws_abnormal_closures", MetricKind.COUNTER, Unit.COUNT,
              "mothership_loadtest_ws_abnormal_closures_total", "websocket.abnormalClosures",
              "WebSocket connections lost without a close frame (code 1006)."),
    MetricDef("ws_msgs_sent", MetricKind.COUNTER, Unit.COUNT,
              "mothership_loadtest_ws_msgs_sent_total", "websocket.messagesSent",
              "WebSocket messages sent."),
    MetricDef("ws_msgs_received", MetricKind.COUNTER, Unit.COUNT,
              "mothership_loadtest_ws_msgs_received_total", "websocket.messagesReceived",
              "WebSocket messages received."),
    MetricDef("ws_bytes_sent", MetricKind.COUNTER, Unit.BYTES,
              "mothership_loadtest_ws_bytes_sent_total", "websocket.bytesSent",
              "WebSocket payload bytes sent."),
    MetricDef("ws_bytes_received", MetricKind.COUNTER, Unit.BYTES,
              "mothership_loadtest_ws_bytes_received_total", "websocket.bytesReceived",
              "WebSocket payload bytes received."),
    MetricDef("ws_msg_latency", MetricKind.TREND, Unit.SECONDS,
              "mothership_loadtest_ws_msg_latency_seconds", "websocket.messageLatency",
              ("Round trip from the scheduled send of a WebSocket message to its reply, only for "
               "replies paired with their message: by the `{seq}` id in it, or in order for "
               "`expect: echo` without one.")),
    MetricDef("data_sent", MetricKind.COUNTER, Unit.BYTES,
              "mothership_loadtest_data_sent_bytes_total", "dataSent",
              "Bytes written to the network, all protocols."),
    MetricDef("data_received", MetricKind.COUNTER, Unit.BYTES,
              "mothership_loadtest_data_received_bytes_total", "dataReceived",
              "Bytes read from the network, all protocols."),
    MetricDef("virtual_users", MetricKind.GAUGE, Unit.COUNT,
              "mothership_loadtest_virtual_users", "virtualUsers",
              "Virtual users active now (summary: the peak)."),
    MetricDef("dropped_iterations", MetricKind.COUNTER, Unit.COUNT,
              "mothership_loadtest_dropped_iterations_total", "droppedIterations",
              "Open-model arrivals skipped because every virtual user was busy."),
)

BY_NAME: dict[str, MetricDef] = {m.name: m for m in METRICS}
METRIC_NAMES: tuple[str, ...] = tuple(BY_NAME)


class ErrorClass(StrEnum):
    """The fixed set an engine error is sorted into: a metric label and a summary key."""

    CONNECT = "connect"
    """Refused, unreachable, DNS or TLS failure before a request was sent."""
    TIMEOUT = "timeout"
    """No complete response within the request's timeout."""
    STATUS = "status"
    """A response whose status was not among the expected ones (or a WebSocket handshake without 101)."""
    PROTOCOL = "protocol"
    """A malformed response, or a WebSocket reply that did not match what was expected."""
    CLOSED = "closed"
    """The peer reset or closed the connection mid-request, or a WebSocket closed abnormally."""
    INTERRUPTED = "interrupted"
    """Still in flight (a request, or a WebSocket handshake) when the run ended at duration + gracefulStop."""
