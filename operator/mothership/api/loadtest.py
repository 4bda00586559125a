"""The LoadTest API: one spec that runs with local worker processes
(``mothership loadtest run -f``) or fanned out to an Indexed Job by the operator.

Field docstrings are the CRD descriptions a tenant reads in ``kubectl explain``.
Durations are strings (``500ms``, ``30s``, ``1m``); ``api.common.parse_duration``
turns them into seconds. Rules that span fields live twice on purpose: as CEL
(``x-kubernetes-validations``) so ``kubectl apply`` rejects them, and as pydantic
validators so the local runner rejects the same input with the same field path.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from enum import StrEnum
from typing import Annotated, Any, ClassVar
from urllib.parse import quote

from pydantic import AfterValidator, Field, JsonValue, WithJsonSchema, field_validator, model_validator

from .common import (
    CONDITIONS_FIELD,
    Condition,
    CrdInfo,
    DnsLabel,
    Duration,
    Model,
    PrinterColumn,
    Quantity,
    Resource,
    parse_duration,
)
from .vocabulary import BY_NAME, METRIC_NAMES, METRICS, STATS_BY_KIND, MetricKind, Stat, Unit

HttpMethod = Annotated[
    str, Field(pattern=r"^(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS)$")
]

# --- header and path hygiene -------------------------------------------------
#
# Headers and paths end up inside the bytes the engine writes (loadgen/http.py
# pre-encodes the request head; picows writes the WebSocket handshake), so a CR
# or LF there would let a spec inject headers or smuggle a second request to the
# target. The patterns below are kept to what RE2 (kube-apiserver and CEL),
# Rust's regex (pydantic's ``pattern``) and Python's re read alike: explicit
# ranges only. Python's ``$`` also matches before a trailing newline, where the
# other two do not, so the model's own checks use ``fullmatch``. Non-ASCII in a
# header value is refused rather than encoded: HTTP/1.1 sends header bytes as
# Latin-1 while picows encodes the handshake as UTF-8, and RFC 9110 calls
# non-ASCII field values obsolete.

TOKEN_PATTERN = "^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$"
"""An RFC 9110 token, at most 256 long: what header names and WebSocket subprotocols are made of."""
HEADER_VALUE_PATTERN = r"^[\t\x20-\x7E]*$"
"""Visible ASCII, space and tab: no CR, LF, NUL or other control characters, no non-ASCII."""
PATH_PATTERN = r"^/[^\x00-\x20\x7F-\x9F#]*$"
"""A slash, then no whitespace, control characters (C0, DEL, C1) or ``#``; non-ASCII is encoded."""
_ENGINE_FRAMED = ("content-length", "transfer-encoding")
"""Headers the engine derives from the body; a spec setting them could desynchronise the target."""
MAX_HEADERS = 64
MAX_HEADER_VALUE = 8192
MAX_PAYLOAD = 65536
"""Most characters in one request body or WebSocket message (the spec's text budget binds first)."""

HEADER_NAME_MESSAGE = (
    "header names must be RFC 9110 tokens of 1 to 256 letters, digits and !#$%&'*+-.^_`|~ "
    "(no spaces, colons or control characters)"
)
HEADER_FRAMING_MESSAGE = (
    "Content-Length and Transfer-Encoding cannot be set: the engine frames the body itself"
)
HEADER_HOST_MESSAGE = "at most one Host header: header names are case-insensitive"
HEADER_VALUE_MESSAGE = (
    "header values take visible ASCII, spaces and tabs only: no CR, LF or other control "
    "characters, and no non-ASCII text (percent-encode it); "
    f"should match '{HEADER_VALUE_PATTERN}'"
)

_TOKEN = re.compile(TOKEN_PATTERN)
_HEADER_VALUE = re.compile(HEADER_VALUE_PATTERN)

_HEADER_RULES: list[JsonValue] = [
    # Map keys have no schema of their own, so names are checked by CEL on the map.
    {"rule": f'self.all(k, k.matches("{TOKEN_PATTERN}"))', "message": HEADER_NAME_MESSAGE},
    {"rule": "!self.exists(k, k.matches('(?i)^(content-length|transfer-encoding)$'))",
     "message": HEADER_FRAMING_MESSAGE},
    {"rule": "self.filter(k, k.matches('(?i)^host$')).size() <= 1", "message": HEADER_HOST_MESSAGE},
]


def _header_value(value: str) -> str:
    if _HEADER_VALUE.fullmatch(value) is None:
        raise ValueError(HEADER_VALUE_MESSAGE)
    return value


def _header_names(headers: dict[str, str]) -> dict[str, str]:
    for name in headers:
        if _TOKEN.fullmatch(name) is None:
            raise ValueError(f"{HEADER_NAME_MESSAGE}, not {name!r}")
        if name.lower() in _ENGINE_FRAMED:
            raise ValueError(f"{HEADER_FRAMING_MESSAGE}, not {name!r}")
    hosts = [name for name in headers if name.lower() == "host"]
    if len(hosts) > 1:
        raise ValueError(f"{HEADER_HOST_MESSAGE}, not {', '.join(map(repr, hosts))}")
    return headers


HeaderValue = Annotated[
    str,
    Field(max_length=MAX_HEADER_VALUE),
    AfterValidator(_header_value),
    WithJsonSchema({"type": "string", "maxLength": MAX_HEADER_VALUE, "pattern": HEADER_VALUE_PATTERN}),
]
Headers = Annotated[
    dict[str, HeaderValue],
    Field(max_length=MAX_HEADERS, json_schema_extra={"x-kubernetes-validations": _HEADER_RULES}),
    AfterValidator(_header_names),
]
"""Extra headers: token names, visible-ASCII values, at most 64, one Host, never the body's framing."""


RequestPath = Annotated[str, Field(pattern=PATH_PATTERN, max_length=2048)]
"""A request path (and query) as the spec writes it; ``wire_path`` is what is sent."""


def wire_path(path: str) -> str:
    """``path`` as it goes on the wire: non-ASCII characters percent-encoded as UTF-8.

    Everything ASCII is sent as written (a validated path has no whitespace or
    control characters), so escapes already in the spec (``%20``) are kept, not
    encoded twice.
    """
    return quote(path, safe="".join(chr(c) for c in range(0x21, 0x7F)))


class Target(Model):
    """Where the load goes: a URL, or an App in the same namespace."""

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.url) != has(self.app)",
                    "message": "set exactly one of target.url and target.app",
                }
            ]
        }
    }

    url: str | None = Field(default=None, pattern=r"^(http|https|ws|wss)://[!-.0-~]+(/[^\x00-\x20\x7F-\x9F#]*)?$",
                            max_length=2048)
    """Base URL, e.g. ``http://shop.tenant-a.svc:80``. Request paths are appended to it. The host is
    ASCII (write an internationalised name in its ``xn--`` form); the path follows the rules of
    request paths."""
    app: DnsLabel | None = None
    """Name of an App in this namespace; resolved to its Service URL by the operator."""

    @model_validator(mode="after")
    def _exactly_one(self) -> Target:
        if (self.url is None) == (self.app is None):
            raise ValueError("set exactly one of target.url and target.app")
        return self


class HttpRequest(Model):
    """One HTTP request of a scenario's iteration."""

    method: HttpMethod = "GET"
    """HTTP method."""
    path: RequestPath = "/"
    """Path and query appended to the target URL, e.g. ``/api/items?page=1``. Whitespace, control
    characters and ``#`` are refused; non-ASCII characters are percent-encoded as UTF-8 when the
    request is built (``/café`` is sent as ``/caf%C3%A9``), and everything else, escapes included,
    is sent as written."""
    name: str | None = Field(default=None, max_length=63)
    """This request's row in the results (``byRequest``), the ``name`` label of its Prometheus series
    and what a threshold's ``request`` names; defaults to ``METHOD path``. Requests of a scenario
    that share a name share a row."""
    headers: Headers = {}
    """Extra request headers, at most 64; one replaces the engine's Host, User-Agent or Accept of the
    same name (in any case). Names are RFC 9110 tokens (letters, digits and ``!#$%&'*+-.^_`|~``);
    values are visible ASCII, spaces and tabs, at most 8192 characters (no CR, LF or other control
    characters: percent-encode non-ASCII text). Content-Length and Transfer-Encoding are refused:
    the engine frames the body. At most one Host."""
    body: str | None = Field(default=None, max_length=MAX_PAYLOAD)
    """Request body, sent as is (set Content-Type in headers). At most 64 Ki characters, and the
    bodies, messages, paths and headers of all scenarios together at most 48 Ki characters (see
    ``scenarios``): kopf keeps the whole spec in an annotation, and the API server caps an object's
    annotations at 256 KiB."""
    expect_status: list[Annotated[int, Field(ge=100, le=599)]] = Field(
        default_factory=lambda: [200], min_length=1, max_length=20
    )
    """Status codes that count as success; anything else is an error of class ``status``."""
    timeout: Duration = "10s"
    """Give up on the response after this long (error class ``timeout``)."""
    think_time: Duration | None = None
    """Pause after this request before the virtual user's next one (closed model)."""

    @property
    def row_name(self) -> str:
        """Its row name: ``name``, else ``METHOD path`` (what results, metrics and thresholds show)."""
        return self.name or f"{self.method} {self.path}"


class WsExpect(StrEnum):
    ECHO = "echo"
    """The reply must equal the message sent."""
    ANY = "any"
    """Any message received counts as a reply; latency is measured only with ``{seq}`` in ``message``."""
    PATTERN = "pattern"
    """The reply must match ``pattern``; latency is measured only with ``{seq}`` in ``message``."""
    NONE = "none"
    """Send only; no reply is awaited (message latency is not measured)."""


class WebSocketSession(Model):
    """A WebSocket session a virtual user holds: connect, exchange messages, close."""

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "self.expect != 'pattern' || has(self.pattern)",
                    "message": "websocket.pattern is required when expect is pattern",
                }
            ]
        }
    }

    path: RequestPath = "/"
    """Path and query appended to the target URL (http becomes ws, https becomes wss). Whitespace,
    control characters and ``#`` are refused; non-ASCII characters are percent-encoded as UTF-8 when
    the session is built, and everything else is sent as written."""
    headers: Headers = {}
    """Extra handshake headers, at most 64: token names, visible-ASCII values (as for HTTP requests);
    Content-Length and Transfer-Encoding are refused, and at most one Host."""
    subprotocols: list[Annotated[str, Field(pattern=TOKEN_PATTERN)]] = Field(default=[], max_length=10)
    """Subprotocols offered in Sec-WebSocket-Protocol; each an RFC 9110 token."""
    message: str = Field(default="hello", max_length=MAX_PAYLOAD)
    """Text payload of each message sent. Each ``{seq}`` in it is replaced by the message's sequence
    id, a decimal number unique across the test's workers, and a reply is paired with its message by
    that id, found by the text around ``{seq}`` (exactly for ``expect: echo``, anywhere in the reply
    and in any case otherwise), so ``ws_msg_latency`` is a true round trip even in a room where
    everyone's messages arrive. Without ``{seq}``, only ``expect: echo`` measures latency (an echo
    server answers in order). At most 64 Ki characters, and within the spec's text budget (see
    ``scenarios``): kopf keeps the whole spec in an annotation capped at 256 KiB."""
    interval: Duration = "1s"
    """Time between messages; ``0s`` sends the next as soon as the reply arrives (with ``{seq}``, the
    reply to this session's last message; a round trip is timed from when its message was due)."""
    expect: WsExpect = WsExpect.ECHO
    """What a reply must be to count as the answer to a message."""
    pattern: str | None = Field(default=None, max_length=1024)
    """Regular expression a reply must match when ``expect`` is ``pattern``."""
    hold: Duration = "10s"
    """How long the session stays open before a normal close (1000)."""
    ping_interval: Duration | None = None
    """Send a ping this often and expect a pong; unset disables pings."""
    connect_timeout: Duration = "10s"
    """Give up on the handshake after this long."""

    @model_validator(mode="after")
    def _pattern(self) -> WebSocketSession:
        if self.expect is WsExpect.PATTERN:
            if self.pattern is None:
                raise ValueError("websocket.pattern is required when expect is pattern")
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"websocket.pattern is not a valid regex: {exc}") from exc
        return self


class Scenario(Model):
    """What one virtual user does per iteration: HTTP requests in order, and/or a WebSocket session."""

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "size(self.requests) > 0 || has(self.websocket)",
                    "message": "a scenario needs requests or a websocket session",
                }
            ]
        }
    }

    name: DnsLabel
    """Scenario name, used as a metric label (keep the set small)."""
    weight: int = Field(default=1, ge=1, le=1000)
    """Share of virtual users (or arrivals) given to this scenario, relative to the others."""
    requests: list[HttpRequest] = Field(default=[], max_length=100)
    """HTTP requests made in order each iteration."""
    websocket: WebSocketSession | None = None
    """A WebSocket session held after the requests (if any)."""

    @model_validator(mode="after")
    def _not_empty(self) -> Scenario:
        if not self.requests and self.websocket is None:
            raise ValueError("a scenario needs requests or a websocket session")
        return self


class Stage(Model):
    """Ramp linearly to ``target`` over ``duration``."""

    duration: Duration
    """How long this stage ramps."""
    target: int = Field(ge=0, le=10_000_000)
    """Virtual users (closed model) or arrivals per second (open model) at the end of the stage."""


_TRENDS = [m.name for m in METRICS if m.kind is MetricKind.TREND]
_GAUGES = [m.name for m in METRICS if m.kind is MetricKind.GAUGE]
_TREND_STATS = [s.value for s in STATS_BY_KIND[MetricKind.TREND]]
_OPS = ("lt", "lte", "gt", "gte")
_DURATION_CEL = "^([0-9]+([.][0-9]+)?(ms|s|m|h))+$"
_ZERO_CEL = "^(0+([.]0+)?(ms|s|m|h))+$"
"""A duration of zero (``0s``, ``0m0s``, ``0.0ms``): what ``spec.duration`` must not be."""
MAX_WORKERS = 1000
MAX_VIRTUAL_USERS_PER_WORKER = 100_000
CAPACITY_MESSAGE = (
    "virtual users exceed workers * virtualUsersPerWorker (virtualUsers, maxVirtualUsers and "
    f"closed-model stage targets; workers unset counts as {MAX_WORKERS}): raise workers or "
    "virtualUsersPerWorker")
_CAP = f"(has(self.workers) ? self.workers : {MAX_WORKERS}) * self.virtualUsersPerWorker"
_CAPACITY_RULE = (
    f"(!has(self.virtualUsers) || self.virtualUsers <= {_CAP})"
    f" && (!has(self.maxVirtualUsers) || self.maxVirtualUsers <= {_CAP})"
    f" && (has(self.arrivalRate) || !has(self.stages) || self.stages.all(s, s.target <= {_CAP}))")
"""Why a spec asks more of its workers than they hold: one worker's virtual users share its memory and
its event loop, so the model and the CRD cap them at virtualUsersPerWorker each, over ``workers``
or, when unset, the most workers a test may have."""
_NUMBER_CEL = "^[0-9]+([.][0-9]+)?$"
_PERCENT_CEL = "^[0-9]+([.][0-9]+)?%?$"


def _cel_list(items: list[str]) -> str:
    return "[" + ", ".join(f"'{i}'" for i in items) + "]"


def _cel_all_limits_match(pattern: str) -> str:
    return " && ".join(f"(!has(self.{op}) || string(self.{op}).matches('{pattern}'))" for op in _OPS)


_THRESHOLD_RULES: list[JsonValue] = [
    {
        "rule": "[has(self.lt), has(self.lte), has(self.gt), has(self.gte)].filter(x, x).size() == 1",
        "message": "set exactly one of lt, lte, gt, gte",
    },
    {
        "rule": f"self.metric in {_cel_list(_TRENDS)} ? self.stat in {_cel_list(_TREND_STATS)} : "
        f"(self.metric in {_cel_list(_GAUGES)} ? self.stat == 'max' : self.stat in ['count', 'rate'])",
        "message": "stat does not apply to this metric: trends take min, max, mean or p50..p999; "
        "counters and errors take count or rate; gauges take max",
    },
    {
        "rule": f"!(self.metric in {_cel_list(_TRENDS)}) || {_cel_all_limits_match(_DURATION_CEL)}",
        "message": "the limit of a latency metric must be a duration like 200ms or 1.5s",
    },
    {
        "rule": f"self.metric in {_cel_list(_TRENDS)} || (self.metric == 'errors' && self.stat == 'rate') || "
        f"({_cel_all_limits_match(_NUMBER_CEL)})",
        "message": "the limit must be a number",
    },
    {
        "rule": "!(self.metric == 'errors' && self.stat == 'rate') || "
        f"({_cel_all_limits_match(_PERCENT_CEL)})",
        "message": "the limit of an error rate must be a fraction like 0.01 or a percent like 1%",
    },
]

Limit = Annotated[
    str | int,
    Field(union_mode="left_to_right"),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
            "maxLength": 32,
        }
    ),
]
"""A threshold bound: ``200ms``, ``1%``, ``"0.01"`` or ``1000``."""


REQUEST_SCOPED_METRICS: tuple[str, ...] = ("http_reqs", "errors", "http_req_duration")
"""Metrics a threshold may scope to one ``request`` (they are kept per request row)."""
SCENARIO_SCOPED_METRICS: tuple[str, ...] = (
    *REQUEST_SCOPED_METRICS, "ws_sessions", "ws_connecting", "ws_handshake_failures", "ws_abnormal_closures",
    "ws_msgs_sent", "ws_msgs_received", "ws_bytes_sent", "ws_bytes_received", "ws_msg_latency")
"""Metrics a threshold may scope to one ``scenario`` (kept per request row or WebSocket scenario)."""
SCENARIO_SCOPE_MESSAGE = "scenario applies to per-request metrics only: " + ", ".join(SCENARIO_SCOPED_METRICS)
REQUEST_SCOPE_MESSAGE = "request applies to " + ", ".join(REQUEST_SCOPED_METRICS) + " only"

_THRESHOLD_RULES.extend([
    {"rule": f"!has(self.scenario) || self.metric in {_cel_list(list(SCENARIO_SCOPED_METRICS))}",
     "message": SCENARIO_SCOPE_MESSAGE},
    {"rule": f"!has(self.request) || self.metric in {_cel_list(list(REQUEST_SCOPED_METRICS))}",
     "message": REQUEST_SCOPE_MESSAGE},
])


class Threshold(Model):
    """A pass/fail rule on the merged results, e.g. p95 of http_req_duration < 200ms."""

    model_config = {"json_schema_extra": {"x-kubernetes-validations": _THRESHOLD_RULES}}

    metric: str = Field(json_schema_extra={"enum": list(METRIC_NAMES)})
    """Metric name, e.g. ``http_req_duration``, ``errors``, ``ws_msg_latency``, ``http_reqs``."""
    stat: Stat
    """Aggregation: p50, p90, p95, p99, p999, min, max, mean (trends); rate or count."""
    lt: Limit | None = None
    """Pass while the stat is below this value: ``200ms``, ``1%``, ``"0.01"`` or ``1000``."""
    lte: Limit | None = None
    """Pass while the stat is at most this value."""
    gt: Limit | None = None
    """Pass while the stat is above this value."""
    gte: Limit | None = None
    """Pass while the stat is at least this value."""
    abort_on_fail: bool = False
    """Stop the whole test as soon as this threshold fails (not before ``delayAbortEval``)."""
    delay_abort_eval: Duration = "10s"
    """With abortOnFail: seconds of load before this threshold may abort the test (k6's name), so a
    handful of early samples cannot end it. It is always judged at the end."""
    scenario: DnsLabel | None = None
    """Judge only this scenario's requests and sessions (a name in ``scenarios``), k6-style."""
    request: str | None = Field(default=None, max_length=63)
    """Judge only the requests of this name (a request's ``name``, or ``METHOD path`` when it has
    none), in every scenario or in ``scenario``: e.g. ``{metric: http_req_duration, stat: p95, lt:
    300ms, request: add-item}``."""

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value not in BY_NAME:
            raise ValueError(f"metric must be one of {', '.join(METRIC_NAMES)}")
        return value

    @model_validator(mode="after")
    def _check(self) -> Threshold:
        kind = BY_NAME[self.metric].kind
        if self.stat not in STATS_BY_KIND[kind]:
            allowed = ", ".join(s.value for s in STATS_BY_KIND[kind])
            raise ValueError(
                f"stat does not apply to this metric: {self.metric} takes {allowed}, not {self.stat.value}"
            )
        if self.scenario is not None and self.metric not in SCENARIO_SCOPED_METRICS:
            raise ValueError(SCENARIO_SCOPE_MESSAGE)
        if self.request is not None and self.metric not in REQUEST_SCOPED_METRICS:
            raise ValueError(REQUEST_SCOPE_MESSAGE)
        ops = [(op, v) for op, v in self.comparisons() if v is not None]
        if len(ops) != 1:
            raise ValueError("set exactly one of lt, lte, gt, gte")
        self.limit()  # raises ValueError naming the allowed forms
        return self

    @field_validator("lt", "lte", "gt", "gte", mode="before")
    @classmethod
    def _no_floats(cls, value: object) -> object:
        if isinstance(value, float):
            raise ValueError("write a fractional limit as a string like '0.01', or as a percent like 1%")
        return value

    def comparisons(self) -> list[tuple[str, str | None]]:
        return [(op, None if v is None else str(v)) for op, v in
                (("lt", self.lt), ("lte", self.lte), ("gt", self.gt), ("gte", self.gte))]

    @property
    def op(self) -> str:
        return next(op for op, v in self.comparisons() if v is not None)

    def limit(self) -> float:
        """The bound in base units: seconds for trends of time, 0..1 for rates, else a number."""
        raw = next(v for _, v in self.comparisons() if v is not None)
        metric = BY_NAME[self.metric]
        if metric.unit is Unit.SECONDS and self.stat not in (Stat.COUNT, Stat.RATE):
            try:
                return parse_duration(raw)
            except ValueError:
                raise ValueError(
                    f"the limit of a latency metric must be a duration like 200ms or 1.5s, not {raw!r}"
                ) from None
        if self.stat is Stat.RATE and metric.kind is MetricKind.RATE:
            text = raw.strip()
            try:
                return float(text[:-1]) / 100 if text.endswith("%") else float(text)
            except ValueError:
                raise ValueError(
                    "the limit of an error rate must be a fraction like 0.01 or a percent like 1%, "
                    f"not {raw!r}"
                ) from None
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"the limit must be a number, not {raw!r}") from None


class WorkerResources(Model):
    """Requests and limits of each worker pod."""

    cpu: Quantity = "1"
    """CPU request and limit per worker."""
    memory: Quantity = "512Mi"
    """Memory request and limit per worker."""


# --- the spec's size -----------------------------------------------------------
#
# kopf keeps the last-handled spec as JSON in an annotation (and ``kubectl apply``
# keeps another copy in its own), and the API server refuses an object whose
# annotations together exceed 256 KiB. Lists of lists of free text multiply, so
# field bounds alone cannot keep the spec small: the scenarios share one budget,
# counted the same way by CEL and by ``scenarios_size``: the characters of every
# path, name, body, message, pattern, subprotocol and header, plus a fixed
# allowance per request, session, header and scenario for their other fields.

SCENARIOS_BUDGET = 49152
"""Most the scenarios may weigh in ``scenarios_size`` units (about JSON bytes for ASCII text)."""
_REQUEST_COST, _SESSION_COST, _SCENARIO_COST, _ITEM_COST = 320, 256, 96, 8
SCENARIOS_BUDGET_MESSAGE = (
    f"the scenarios are too large: their paths, names, bodies, messages and headers must total at "
    f"most {SCENARIOS_BUDGET} characters (with {_REQUEST_COST} per request and {_SESSION_COST} per "
    "WebSocket session), because kopf keeps the spec in an annotation and the API server caps "
    "annotations at 256 KiB"
)


def _cel_opt_size(obj: str, field: str) -> str:
    return f"(has({obj}.{field}) ? size({obj}.{field}) : 0)"


def _cel_headers(obj: str) -> str:
    return (f"(has({obj}.headers) ? {obj}.headers.map(k, {_ITEM_COST} + size(k) + "
            f"size({obj}.headers[k])).sum() : 0)")


_CEL_REQUEST = " + ".join([str(_REQUEST_COST), _cel_opt_size("r", "path"), _cel_opt_size("r", "name"),
                           _cel_opt_size("r", "body"), _cel_headers("r")])
_CEL_SESSION = " + ".join([  # on s.websocket itself: ``[s.websocket].map(w, ...)`` loses its bounds
    str(_SESSION_COST), _cel_opt_size("s.websocket", "path"), _cel_opt_size("s.websocket", "message"),
    _cel_opt_size("s.websocket", "pattern"), _cel_headers("s.websocket"),
    f"(has(s.websocket.subprotocols) ? s.websocket.subprotocols.map(p, {_ITEM_COST} + size(p)).sum() : 0)"])
_CEL_SCENARIO = (
    f"{_SCENARIO_COST} + size(s.name) + (has(s.requests) ? s.requests.map(r, {_CEL_REQUEST}).sum() : 0)"
    f" + (has(s.websocket) ? {_CEL_SESSION} : 0)")
SCENARIOS_BUDGET_RULE = f"self.scenarios.map(s, {_CEL_SCENARIO}).sum() <= {SCENARIOS_BUDGET}"


def _headers_size(headers: dict[str, str]) -> int:
    return sum(_ITEM_COST + len(k) + len(v) for k, v in headers.items())


def scenarios_size(scenarios: list[Scenario]) -> int:
    """The scenarios' weight against ``SCENARIOS_BUDGET``, as ``SCENARIOS_BUDGET_RULE`` counts it."""
    total = 0
    for s in scenarios:
        total += _SCENARIO_COST + len(s.name)
        for r in s.requests:
            total += (_REQUEST_COST + len(r.path) + len(r.name or "") + len(r.body or "")
                      + _headers_size(r.headers))
        if (w := s.websocket) is not None:
            total += (_SESSION_COST + len(w.path) + len(w.message) + len(w.pattern or "")
                      + _headers_size(w.headers) + sum(_ITEM_COST + len(p) for p in w.subprotocols))
    return total


_LOADTEST_RULES: list[JsonValue] = [
    {"rule": SCENARIOS_BUDGET_RULE, "message": SCENARIOS_BUDGET_MESSAGE},
    {"rule": "!(has(self.virtualUsers) && has(self.arrivalRate))",
     "message": "set virtualUsers (closed model) or arrivalRate (open model), not both"},
    {"rule": "has(self.duration) || (has(self.stages) && size(self.stages) > 0)",
     "message": "set duration or stages"},
    {"rule": "!has(self.workers) || !has(self.virtualUsers) || self.workers <= self.virtualUsers",
     "message": "workers must not exceed virtualUsers"},
    {"rule": "has(self.duration) || !has(self.stages) || "
             f"self.stages.exists(s, !s.duration.matches('{_ZERO_CEL}'))",
     "message": "the stages must last more than 0s in all"},
    {"rule": _CAPACITY_RULE, "message": CAPACITY_MESSAGE},
    {"rule": "!has(self.thresholds) || self.thresholds.all(t, !has(t.scenario) || "
             "self.scenarios.exists(s, s.name == t.scenario))",
     "message": "thresholds[].scenario must be the name of one of spec.scenarios"},
]

MUTABLE_FIELDS = ("stop",)
"""The only spec fields that may change after creation; the plan, the Job and the verdict were
made from the rest."""
IMMUTABLE_MESSAGE = (
    "a LoadTest cannot be changed once created, except spec.stop: its plan, Job and results were made "
    "from this spec; to run a different test, create a new LoadTest (with another name)"
)


def immutable_rule(fields: list[str]) -> str:
    """CEL transition rule on the spec: every field in ``fields`` as it was, present or absent alike."""
    return " && ".join(
        f"has(self.{f}) == has(oldSelf.{f}) && (!has(self.{f}) || self.{f} == oldSelf.{f})" for f in fields)


def _spec_schema(schema: dict[str, Any]) -> None:
    """The spec's CEL rules: the cross-field ones, and immutability of everything but ``stop``."""
    fields = [name for name in schema.get("properties", {}) if name not in MUTABLE_FIELDS]
    schema["x-kubernetes-validations"] = [
        *_LOADTEST_RULES, {"rule": immutable_rule(fields), "message": IMMUTABLE_MESSAGE}]


OPEN_POOL_SECONDS = 2.0
"""The open model's default pool: this many seconds of the peak arrival rate (maxVirtualUsers unset)."""
OPEN_POOL_CAP = 100_000
"""The open model's default pool is never larger than this; set maxVirtualUsers for more."""


class LoadTestSpec(Model):
    """A distributed HTTP + WebSocket load test."""

    model_config = {"json_schema_extra": _spec_schema}

    target: Target
    """Where the load goes."""
    scenarios: list[Scenario] = Field(min_length=1, max_length=20)
    """What virtual users do, split by weight. Their paths, names, bodies, messages, patterns and
    headers share a budget of 48 Ki characters, with 320 more per request, 256 per WebSocket session,
    96 per scenario and 8 per header: kopf keeps the last-handled spec in an annotation, and the API
    server caps all of an object's annotations at 256 KiB. Larger payloads belong in the target."""
    virtual_users: int | None = Field(default=None, ge=1, le=10_000_000)
    """Closed model: this many virtual users loop over their scenario (or ramp with stages)."""
    arrival_rate: float | None = Field(default=None, ge=0, le=10_000_000)
    """Open model: start this many iterations per second regardless of how slow the target gets."""
    max_virtual_users: int | None = Field(default=None, ge=1, le=10_000_000)
    """Open model: most iterations in flight at once; arrivals beyond it are dropped and counted in
    droppedIterations. Default: the peak arrival rate x 2 s (so 1 s of latency drops nothing),
    at most 100000."""
    stages: list[Stage] = Field(default=[], max_length=100)
    """Ramp: each stage moves virtual users (closed) or the arrival rate (open) linearly to its target."""
    duration: Annotated[Duration | None, Field(json_schema_extra={"x-kubernetes-validations": [
        {"rule": f"!self.matches('{_ZERO_CEL}')", "message": "must be more than 0s"}]})] = None
    """How long load is applied, more than 0s; defaults to the sum of the stages."""
    graceful_stop: Duration = "5s"
    """At the end, let in-flight iterations finish for up to this long."""
    workers: int | None = Field(default=None, ge=1, le=MAX_WORKERS)
    """Worker processes or pods to fan out to; default: one per ``virtualUsersPerWorker``."""
    virtual_users_per_worker: int = Field(default=1000, ge=1, le=MAX_VIRTUAL_USERS_PER_WORKER)
    """Capacity of one worker: ``workers`` defaults to one per this many virtual users, and a set
    ``workers`` must hold them (virtualUsers, maxVirtualUsers, closed-model stage targets). One
    worker holds 20,000 quiet WebSocket sessions in about 430 MiB, but past about 14,000 connections
    to one target address each new connect costs milliseconds in the kernel (its ephemeral-port
    search, half of ``net.ipv4.ip_local_port_range``): above that, use more workers or widen that
    range."""
    thresholds: list[Threshold] = Field(default=[], max_length=50)
    """Pass/fail rules on the merged results."""
    tolerated_worker_failures: int = Field(default=0, ge=0, le=1000)
    """Worker pods that may fail before the test is Errored."""
    stop: bool = False
    """Set to true to stop a running test early; it ends Stopped with a partial summary."""
    ttl_seconds_after_finished: int | None = Field(default=None, ge=0, le=31_536_000)
    """Delete the Job, ConfigMap and Secret this long after the test ends; results stay."""
    image: str | None = Field(default=None, max_length=512)
    """Worker image; defaults to the operator's own."""
    resources: WorkerResources = WorkerResources()
    """Requests and limits per worker pod."""
    spread_workers: bool = False
    """Prefer placing worker pods on different nodes."""

    @field_validator("duration")
    @classmethod
    def _positive_duration(cls, value: str | None) -> str | None:
        if value is not None and re.fullmatch(_ZERO_CEL, value):
            raise ValueError("must be more than 0s")
        return value

    @model_validator(mode="after")
    def _model(self) -> LoadTestSpec:
        if self.virtual_users is not None and self.arrival_rate is not None:
            raise ValueError("set virtualUsers (closed model) or arrivalRate (open model), not both")
        if self.duration is None and not self.stages:
            raise ValueError("set duration or stages")
        if self.virtual_users is None and self.arrival_rate is None and not self.stages:
            raise ValueError("set virtualUsers, arrivalRate or stages")
        if self.workers is not None and self.virtual_users is not None and self.workers > self.virtual_users:
            raise ValueError("workers must not exceed virtualUsers")
        if scenarios_size(self.scenarios) > SCENARIOS_BUDGET:
            raise ValueError(SCENARIOS_BUDGET_MESSAGE)
        if self.duration is None and self.stages and self.duration_seconds() <= 0:
            raise ValueError("the stages must last more than 0s in all")
        if problem := self.capacity_problem():
            raise ValueError(problem)
        self._threshold_scopes()
        return self

    def _threshold_scopes(self) -> None:
        """A scoped threshold must name a scenario and a request that exist (else it could never fail)."""
        names = {sc.name: sc for sc in self.scenarios}
        for i, t in enumerate(self.thresholds):
            if t.scenario is not None and t.scenario not in names:
                raise ValueError(f"thresholds[{i}].scenario: no scenario named {t.scenario!r}; "
                                 f"the scenarios are {', '.join(names)}")
            if t.request is None:
                continue
            scope = [names[t.scenario]] if t.scenario is not None else self.scenarios
            known = [r.row_name for sc in scope for r in sc.requests]
            if t.request not in known:
                where = f"scenario {t.scenario!r}" if t.scenario is not None else "the spec"
                listed = ", ".join(dict.fromkeys(known)) or "none"
                raise ValueError(f"thresholds[{i}].request: no request named {t.request!r} in {where}; "
                                 f"the request names are {listed[:300]}")

    # --- derived values (pure) -------------------------------------------

    @property
    def is_open(self) -> bool:
        """Open model (arrival rate) rather than closed (virtual users)."""
        return self.arrival_rate is not None

    def duration_seconds(self) -> float:
        """Seconds of load: ``duration`` if set, else the sum of the stages."""
        if self.duration is not None:
            return parse_duration(self.duration)
        return sum(parse_duration(s.duration) for s in self.stages)

    def peak_arrival_rate(self) -> float:
        """Open model: the highest arrival rate of the profile, per second (0 for a closed model)."""
        if not self.is_open:
            return 0.0
        return max([self.arrival_rate or 0.0, *(s.target for s in self.stages)])

    def peak_virtual_users(self) -> int:
        """Most virtual users in flight: the closed model's peak, or the open model's pool.

        The open model's pool is ``maxVirtualUsers``, else ``OPEN_POOL_SECONDS``
        of the peak arrival rate capped at ``OPEN_POOL_CAP``: enough that a
        second of latency drops no arrival, bounded so a typo in the rate cannot
        allocate millions of virtual users.
        """
        if self.is_open:
            if self.max_virtual_users is not None:
                return self.max_virtual_users
            return max(1, min(math.ceil(self.peak_arrival_rate() * OPEN_POOL_SECONDS), OPEN_POOL_CAP))
        return max([self.virtual_users or 0, *(s.target for s in self.stages), 1])

    def capacity_problem(self, workers: int | None = None) -> str | None:
        """Why ``workers`` cannot hold this test's virtual users, naming the fix; None if they can.

        ``workers`` defaults to ``spec.workers``; unset, the computed count may
        reach ``MAX_WORKERS``. The model (and the CRD's rule) check the spec;
        the local runner also checks its ``--workers``. Bounded:
        ``virtualUsers``, ``maxVirtualUsers`` and closed-model stage targets.
        """
        fixed = workers if workers is not None else self.workers
        count = fixed if fixed is not None else MAX_WORKERS
        per_worker = self.virtual_users_per_worker
        capacity = count * per_worker
        stages = [] if self.is_open else [s.target for s in self.stages]
        peak = max([self.virtual_users or 0, self.max_virtual_users or 0, *stages])
        if peak <= capacity:
            return None
        fixes = []
        if fixed is not None and (need := math.ceil(peak / per_worker)) <= MAX_WORKERS:
            fixes.append(f"workers to {need}")
        if (per := math.ceil(peak / count)) <= MAX_VIRTUAL_USERS_PER_WORKER:
            fixes.append(f"virtualUsersPerWorker to {per}")
        fix = f"raise {' or '.join(fixes)}" if fixes else "lower the virtual users"
        what = "workers" if fixed is not None else "the most workers"
        return (f"{peak} virtual users exceed {what} * virtualUsersPerWorker = {count} * {per_worker} = "
                f"{capacity}: {fix}")

    def worker_count(self) -> int:
        """Workers to fan out to: ``workers``, or enough for the peak at virtualUsersPerWorker.

        An open model without ``maxVirtualUsers`` fans out by its peak arrival
        rate (one worker per virtualUsersPerWorker arrivals/s), not by its
        default pool, which is mostly idle while the target keeps up.
        """
        if self.workers is not None:
            return self.workers
        basis = self.peak_virtual_users()
        if self.is_open and self.max_virtual_users is None:
            basis = max(1, math.ceil(self.peak_arrival_rate()))
        return max(1, math.ceil(basis / self.virtual_users_per_worker))


# --- status -----------------------------------------------------------------


class LoadTestPhase(StrEnum):
    PENDING = "Pending"
    STARTING = "Starting"
    RUNNING = "Running"
    STOPPING = "Stopping"
    PASSED = "Passed"
    FAILED = "Failed"
    STOPPED = "Stopped"
    ERRORED = "Errored"


FINAL_PHASES = frozenset(
    {LoadTestPhase.PASSED, LoadTestPhase.FAILED, LoadTestPhase.STOPPED, LoadTestPhase.ERRORED}
)


class LoadTestConditionType(StrEnum):
    """The conditions of ``LoadTest.status``; what Unknown, False and True mean for each."""

    ACCEPTED = "Accepted"
    """Whether the operator will run this test.
    Unknown: not validated yet (phase Pending).
    False: refused for good (InvalidSpec, TargetNotAllowed, TooManyWorkers, TooManyVirtualUsers,
    ExceedsQuota);
    no ConfigMap, Secret or Job was created, and the phase is Errored.
    True: the spec is valid and within the tenant's limits; its children were created."""
    WORKERS_READY = "WorkersReady"
    """Whether every worker pod is up and waiting for the start barrier.
    Unknown: no worker pod observed yet (or the test was refused).
    False: WaitingForWorkers (the message counts them), or WorkerFailed (the message names the
    failed worker indexes and their reasons, beyond toleratedWorkerFailures).
    True: AllWorkersReady: every worker was ready, so the barrier could be chosen; it stays True
    after the start while no worker fails beyond the tolerance."""
    STARTED = "Started"
    """Whether the start barrier was sent.
    Unknown: not accepted yet.
    False: WaitingForWorkers before the barrier, or NeverStarted when the test ended first.
    True: StartScheduled: ``status.startAt`` was chosen (and persisted) and sent to all workers."""
    COMPLETED = "Completed"
    """Whether the test is over.
    Unknown: not accepted yet.
    False: InProgress while it is pending, starting, running or stopping.
    True: the test is over; the reason says how (RanToCompletion, StoppedByUser,
    AbortedOnThreshold, NoData, WorkerFailed, Refused, CoordinationFailed)."""
    THRESHOLDS_PASSED = "ThresholdsPassed"
    """Whether every threshold holds on the merged results (live while running, final at the end).
    Unknown: NoData (no results yet).
    False: ThresholdFailed; the message lists each failing threshold with its value. NoData when
    the test ended with thresholds and nothing completed (the phase is then Failed).
    True: AllThresholdsPassed, or NoThresholds when the spec sets none."""


class LoadTestReason(StrEnum):
    """Reasons :func:`compute` gives its conditions (see :class:`LoadTestConditionType`)."""

    PENDING = "Pending"
    """Unknown: the operator has not looked at this test yet."""
    ACCEPTED = "Accepted"
    """Accepted is True: valid spec, allowed target, within the tenant's limits."""
    INVALID_SPEC = "InvalidSpec"
    """Accepted is False: the spec fails validation that the schema could not express."""
    TARGET_NOT_ALLOWED = "TargetNotAllowed"
    """Accepted is False: the target is outside the namespace and matches no allowed pattern."""
    TOO_MANY_WORKERS = "TooManyWorkers"
    """Accepted is False: more workers than the tenant's loadTests.maxWorkers."""
    TOO_MANY_VIRTUAL_USERS = "TooManyVirtualUsers"
    """Accepted is False: more virtual users than the tenant's loadTests.maxVirtualUsers."""
    EXCEEDS_QUOTA = "ExceedsQuota"
    """Accepted is False: workers x resources (or the worker pods) do not fit what the namespace's
    ResourceQuota has left; the message names the numbers."""
    WAITING_FOR_WORKERS = "WaitingForWorkers"
    """WorkersReady/Started are False: worker pods are being scheduled or starting."""
    ALL_WORKERS_READY = "AllWorkersReady"
    """WorkersReady is True: every worker answered its readiness probe."""
    WORKER_FAILED = "WorkerFailed"
    """A worker pod failed (OOMKilled, ImagePullBackOff, Error, DeadlineExceeded) beyond the tolerance."""
    START_SCHEDULED = "StartScheduled"
    """Started is True: the start barrier was persisted and sent to every worker."""
    NEVER_STARTED = "NeverStarted"
    """Started is False: the test ended before the start barrier."""
    IN_PROGRESS = "InProgress"
    """Completed is False: the test is not over."""
    RAN_TO_COMPLETION = "RanToCompletion"
    """Completed is True: load ran for the whole duration."""
    STOPPED_BY_USER = "StoppedByUser"
    """Completed is True: ``spec.stop`` was set; the summary is partial."""
    ABORTED_ON_THRESHOLD = "AbortedOnThreshold"
    """Completed is True: an ``abortOnFail`` threshold failed, so the test stopped early."""
    REFUSED = "Refused"
    """Completed is True: the test was refused and never ran (see Accepted)."""
    COORDINATION_FAILED = "CoordinationFailed"
    """Completed is True: the operator could not run the test (workers unreachable, never ready)."""
    NO_DATA = "NoData"
    """ThresholdsPassed is Unknown: no results yet. At the end, Completed is True and
    ThresholdsPassed False with this reason: the spec has thresholds, but no request got a
    response and no WebSocket handshake completed (a dead or hung target), so the test Failed."""
    NO_THRESHOLDS = "NoThresholds"
    """ThresholdsPassed is True: the spec sets no thresholds."""
    ALL_THRESHOLDS_PASSED = "AllThresholdsPassed"
    """ThresholdsPassed is True: every threshold holds."""
    THRESHOLD_FAILED = "ThresholdFailed"
    """ThresholdsPassed is False: at least one threshold does not hold."""


class Percentiles(Model):
    """A latency distribution, in milliseconds."""

    count: int = 0
    """Observations."""
    min: float | None = None
    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    p999: float | None = None
    max: float | None = None


class WebSocketSummary(Model):
    sessions: int = 0
    """Sessions started."""
    connections: int = 0
    """Peak concurrent open connections."""
    handshake_failures: int = 0
    abnormal_closures: int = 0
    """Connections lost without a close frame (1006)."""
    messages_sent: int = 0
    messages_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    connecting: Percentiles = Percentiles()
    """Handshake time, milliseconds."""
    message_latency: Percentiles = Percentiles()
    """Message round trip, milliseconds."""


class Summary(Model):
    """Merged results across all workers: exact counts, histogram percentiles."""

    duration_seconds: float = 0.0
    """Seconds since the start barrier (or until the end)."""
    requests: int = 0
    """HTTP requests made, successful or not."""
    rps: float = 0.0
    """HTTP requests per second over the whole run (live: over the last window)."""
    errors: int = 0
    """Failed requests and sessions."""
    error_rate: float = 0.0
    """errors / (requests + WebSocket sessions), 0..1."""
    errors_by_class: dict[str, int] = {}
    """Errors by class: connect, timeout, status, protocol, closed, interrupted."""
    http_req_duration: Percentiles = Percentiles()
    """HTTP latency in milliseconds, from the scheduled send time."""
    websocket: WebSocketSummary = WebSocketSummary()
    data_sent: int = 0
    """Bytes sent, all protocols."""
    data_received: int = 0
    """Bytes received, all protocols."""
    virtual_users: int = 0
    """Peak virtual users across workers."""
    dropped_iterations: int = 0
    """Open-model arrivals dropped because maxVirtualUsers were busy."""


class RequestStats(Model):
    """One row of the per-request table: an HTTP request name of a scenario, or a WebSocket scenario.

    Requests of one scenario that share a ``name`` (default ``METHOD path``) share a row; a
    WebSocket scenario's row is named ``WS path``. Counts are exact, merged across workers.
    """

    scenario: str
    """The scenario's name."""
    name: str
    """The request's ``name`` (default ``METHOD path``), or ``WS path`` for a WebSocket session."""
    protocol: str = "http"
    """http, or ws for a WebSocket scenario's row."""
    requests: int = 0
    """HTTP requests made, successful or not (ws: sessions started)."""
    rps: float = 0.0
    """requests per second over the run."""
    errors: int = 0
    """Failed requests (ws: failed sessions)."""
    error_rate: float = 0.0
    """errors / requests, 0..1."""
    errors_by_class: dict[str, int] = {}
    """Errors by class, as in the summary."""
    duration: Percentiles = Percentiles()
    """Latency in milliseconds: http_req_duration (ws: ws_msg_latency, the message round trip)."""
    messages_sent: int = 0
    """WebSocket messages sent (ws rows only)."""
    messages_received: int = 0
    """WebSocket messages received (ws rows only)."""


class ThresholdResult(Model):
    metric: str
    stat: str
    scenario: str | None = None
    """The scenario it was scoped to, if any."""
    request: str | None = None
    """The request name it was scoped to, if any."""
    op: str
    """lt, lte, gt or gte."""
    limit: float
    """The bound, in base units (seconds, ratio or count)."""
    value: float | None = None
    """The observed stat in the same units; unset until there is data."""
    ok: bool = True
    """Whether the threshold holds."""


class WorkerFailure(Model):
    index: int
    reason: str
    message: str = ""


class WorkerCounts(Model):
    total: int = 0
    ready: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    failures: list[WorkerFailure] = []
    """Each failed worker with its reason (e.g. OOMKilled, ImagePullBackOff, Error)."""


STATUS_REQUEST_ROWS = 10
"""Per-request rows kept in ``status.byRequest``: a status must stay small (it is patched every
poll and read by every watcher); the whole table goes to the results ConfigMap."""


def busiest(rows: Sequence[RequestStats], limit: int) -> list[RequestStats]:
    """The ``limit`` rows with the most requests, in their table order (ties: the earlier row)."""
    if len(rows) <= limit:
        return list(rows)
    order = sorted(range(len(rows)), key=lambda i: (-rows[i].requests, i))[:limit]
    return [rows[i] for i in sorted(order)]


class LoadTestStatus(Model):
    phase: LoadTestPhase = LoadTestPhase.PENDING
    """Pending, Starting, Running, Stopping, then Passed, Failed, Stopped or Errored."""
    start_at: str | None = None
    """RFC 3339 start barrier sent to every worker (written before they are told)."""
    start_time: str | None = None
    completion_time: str | None = None
    workers: WorkerCounts = WorkerCounts()
    summary: Summary = Summary()
    by_request: list[RequestStats] = Field(default=[], max_length=STATUS_REQUEST_ROWS)
    """The busiest rows of the per-request table (at most 10, by requests, in table order); the whole
    table is in the ConfigMap ``<name>-results`` (key ``results.json``)."""
    by_request_rows: int = 0
    """Rows in the whole per-request table."""
    thresholds: list[ThresholdResult] = []
    conditions: list[Condition] = CONDITIONS_FIELD
    observed_generation: int | None = None


class LoadTest(Resource):
    """A distributed HTTP + WebSocket load test: workers start together, results merge exactly."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        kind="LoadTest",
        plural="loadtests",
        singular="loadtest",
        scope="Namespaced",
        short_names=["lt"],
        printer_columns=[
            PrinterColumn(name="Phase", type="string", json_path=".status.phase"),
            PrinterColumn(name="Workers", type="integer", json_path=".status.workers.total"),
            PrinterColumn(name="RPS", type="number", json_path=".status.summary.rps"),
            PrinterColumn(name="P95", type="number", json_path=".status.summary.httpReqDuration.p95",
                          description="p95 HTTP latency, milliseconds"),
            PrinterColumn(name="Errors", type="number", json_path=".status.summary.errorRate"),
            PrinterColumn(name="Age", type="date", json_path=".metadata.creationTimestamp"),
        ],
    )
    kind: str = "LoadTest"
    spec: LoadTestSpec
    status: LoadTestStatus | None = None


def load_spec(document: dict[str, Any]) -> LoadTestSpec:
    """Validate a LoadTest document (or a bare spec) into the model; pydantic errors name the field."""
    if "spec" in document and "kind" in document:
        return LoadTest.model_validate(document).spec
    return LoadTestSpec.model_validate(document)
