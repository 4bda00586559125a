"""The merged results over time: per-interval deltas of the coordinator's merged snapshots.

Why this exists: the summary answers "how much", a report must also answer
"when" (did latency climb at 300 users, did the errors come in a burst). The
coordinator already merges every worker's cumulative snapshot on each poll;
``Recorder.observe`` takes that merged snapshot and, once per ``interval``
seconds of load (1 s), closes a point holding the *difference* from the
previous point: requests and errors by class, WebSocket sessions and
messages, dropped iterations, the bucket counts of ``http_req_duration``
(so a point's p50/p95/p99 are exact merges across workers, computed from the
merged histogram delta with the same ``quantile_of`` as the summary), and the
gauges (virtual users, open WebSocket connections) as they were at its end.

Invariants the report and the tests rely on:

* the points' ``requests`` (and every other delta) sum to the final totals,
  because ``close`` always ends with a point holding what the last poll
  added; the running sum at the last point *is* the final cumulative count;
* a point's time ``t`` is the load time (workers' elapsed, as in the
  summary) at its end; its rate is its delta over ``t[i] - t[i-1]``. Polls are
  not exactly on interval boundaries, so points are 1 s give or take a poll;
  with a slower poll (the operator's 2 s) a point is one poll long;
* bounded: at most ``MAX_POINTS`` (720) points. When full, adjacent pairs are
  merged (counts add, histograms add exactly, gauges keep the later value)
  and the interval doubles, so a 1 h test has 8 s points and memory stays
  ``MAX_POINTS`` histogram runs (a few MB at worst, typically far less);
* a coordinator that re-attaches mid-run (operator restart) starts from an
  empty book: its first point covers everything from 0 to the first poll,
  so the sums still equal the totals.

Per request name (the ``by_request`` rows of a snapshot, when the workers
send them): requests and errors per point for every name, of which
``series()`` keeps the ``top`` names by requests.

This module knows nothing of HTTP, rendering or Kubernetes.
"""

from __future__ import annotations

import gzip
import json
import math
from array import array
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from operator import add, sub
from typing import Any

from ..api.common import Model
from ..api.vocabulary import QUANTILES, Stat
from .histogram import (
    SUB_BUCKETS,
    bucket_mid,
    check_layout,
    coarsen_wire,
    layout_of,
    rank_of,
)

MAX_POINTS = 720
"""Points kept at most; when full, adjacent pairs merge and the interval doubles."""
INTERVAL = 1.0
"""Seconds of load per point to begin with."""
TOP_REQUESTS = 10
"""Request names kept per series (by requests)."""
LATENCY = "http_req_duration"
QUANTILE_STATS: tuple[Stat, ...] = (Stat.P50, Stat.P95, Stat.P99)
PACKED_LIMIT = 256 * 1024
"""Bytes a packed series may take in the results ConfigMap (of its 1 MiB). The worst case, 720 points
with every error class and 10 request names of noisy values, packs to about 64 KiB (tests/loadgen/
test_timeseries.py); past the limit the per-request series are dropped, least busy first."""


class RequestSeries(Model):
    """One request name's requests and errors per point."""

    requests: list[int] = []
    errors: list[int] = []


class TimeSeries(Model):
    """The merged results per point (``Result.time_series``, ``timeSeries`` in JSON).

    Every list has one entry per point; counts are per point (deltas), gauges
    are values at the point's end, latencies are milliseconds over the point.
    """

    interval: float = INTERVAL
    """Nominal seconds per point (1, doubled each time the series was halved)."""
    t: list[float] = []
    """Seconds of load at each point's end."""
    requests: list[int] = []
    errors: dict[str, list[int]] = {}
    """By error class (only the classes that occurred)."""
    p50: list[float | None] = []
    p95: list[float | None] = []
    p99: list[float | None] = []
    virtual_users: list[int] = []
    ws_connections: list[int] = []
    ws_sessions: list[int] = []
    ws_msgs_sent: list[int] = []
    ws_msgs_received: list[int] = []
    dropped_iterations: list[int] = []
    by_request: dict[str, RequestSeries] = {}
    """The top request names by requests (when the workers report per-request rows)."""

    def __len__(self) -> int:
        return len(self.t)


def pack(ts: TimeSeries, limit: int = PACKED_LIMIT) -> bytes:
    """The series as gzipped compact JSON for a ConfigMap's ``binaryData``, at most ``limit`` bytes.

    Past ``limit`` the per-request series go, least busy first; what is left
    (the totals over time) is bounded by ``MAX_POINTS`` well within it.
    """
    wire = ts.wire()
    names = sorted(ts.by_request, key=lambda k: sum(ts.by_request[k].requests))
    while True:
        data = gzip.compress(json.dumps(wire, separators=(",", ":")).encode(), mtime=0)
        if len(data) <= limit or not names:
            return data
        del wire["byRequest"][names.pop(0)]


def unpack(data: bytes) -> TimeSeries:
    """The series ``pack`` wrote; ValueError when the bytes are not one."""
    try:
        return TimeSeries.model_validate_json(gzip.decompress(data))
    except (OSError, EOFError) as exc:
        raise ValueError(f"not a packed time series: {exc}") from None


COUNTERS: tuple[str, ...] = ("ws_sessions", "ws_msgs_sent", "ws_msgs_received", "dropped_iterations")
GAUGES: tuple[str, ...] = ("virtual_users", "ws_connections")


@dataclass
class _Hist:
    """A histogram delta: a bucket run at ``sub`` sub-buckets plus the exact scalars."""

    sub: int = SUB_BUCKETS
    offset: int = 0
    counts: array[int] = field(default_factory=lambda: array("Q"))
    count: int = 0
    underflow: int = 0
    overflow: int = 0
    lo: float = math.inf
    hi: float = -math.inf

    def quantiles_ms(self, qs: Sequence[float]) -> tuple[float | None, ...]:
        """``quantile_of``'s nearest-rank quantiles, in ms, all from one C-speed running sum (bisect)."""
        if not self.count:
            return tuple(None for _ in qs)
        running = list(accumulate(self.counts))
        out: list[float | None] = []
        for q in qs:
            rank = rank_of(q, self.count)
            if rank <= self.underflow:
                value = self.lo
            else:
                i = bisect_left(running, rank - self.underflow)
                if i == len(running):
                    value = self.hi  # the rank is in the overflow bucket
                else:
                    value = min(max(bucket_mid(i + self.offset, self.sub), self.lo), self.hi)
            out.append(round(value * 1000.0, 6))
        return tuple(out)

    def plus(self, other: _Hist) -> _Hist:
        sub = min(self.sub, other.sub)
        a, b = self.at(sub), other.at(sub)
        return _Hist(sub, *_add_runs(a.offset, a.counts, b.offset, b.counts, 1), a.count + b.count,
                     a.underflow + b.underflow, a.overflow + b.overflow, min(a.lo, b.lo), max(a.hi, b.hi))

    def at(self, sub: int) -> _Hist:
        if sub >= self.sub:
            return self
        wire = coarsen_wire({"layout": layout_of(self.sub), "offset": self.offset,
                             "counts": self.counts.tolist()}, sub)
        return _Hist(sub, wire["offset"], array("Q", wire["counts"]), self.count, self.underflow,
                     self.overflow, self.lo, self.hi)


def _add_runs(oa: int, ra: array[int], ob: int, rb: array[int], sign: int) -> tuple[int, array[int]]:
    """Runs at offsets ``oa``/``ob`` added (sign 1) or ``b`` subtracted (sign -1); negatives clamp to 0.

    Both are padded to one span and combined with ``map`` (C speed: bench/timeseries.py).
    """
    if not rb:
        return oa, array("Q", ra)
    if not ra and sign > 0:
        return ob, array("Q", rb)
    lo = min(oa, ob) if ra else ob
    hi = max(oa + len(ra), ob + len(rb))
    a = [0] * (oa - lo) + ra.tolist() + [0] * (hi - oa - len(ra)) if ra else [0] * (hi - lo)
    b = [0] * (ob - lo) + rb.tolist() + [0] * (hi - ob - len(rb))
    out = list(map(sub if sign < 0 else add, a, b))
    if sign < 0 and min(out) < 0:
        out = [c if c > 0 else 0 for c in out]
    end = len(out)
    while end and not out[end - 1]:
        end -= 1
    start = 0
    while start < end and not out[start]:
        start += 1
    return lo + start, array("Q", out[start:end])


def _hist_of(wire: Mapping[str, Any] | None) -> _Hist:
    if not wire or not wire.get("count"):
        return _Hist()
    return _Hist(check_layout(wire.get("layout")), int(wire["offset"]), array("Q", wire["counts"]),
                 int(wire["count"]), int(wire["underflow"]), int(wire["overflow"]),
                 math.inf if wire["min"] is None else float(wire["min"]),
                 -math.inf if wire["max"] is None else float(wire["max"]))


def _minus(cur: _Hist, prev: _Hist) -> _Hist:
    """``cur - prev`` of two cumulative histograms (exact; at the coarser layout of the two).

    The delta's min/max are not known; the cumulative ones clamp its quantiles
    (they only bound a bucket midpoint, as in the summary).
    """
    sub = min(cur.sub, prev.sub)
    a, b = cur.at(sub), prev.at(sub)
    offset, run = _add_runs(a.offset, a.counts, b.offset, b.counts, -1)
    return _Hist(sub, offset, run, a.count - b.count, a.underflow - b.underflow,
                 a.overflow - b.overflow, a.lo, a.hi)


@dataclass
class _Point:
    t: float
    requests: int
    errors: dict[str, int]
    counters: dict[str, int]
    gauges: dict[str, int]
    latency: _Hist
    by_request: dict[str, tuple[int, int]]
    quantiles: tuple[float | None, ...] = ()

    def __post_init__(self) -> None:
        if not self.quantiles:
            self.quantiles = self.latency.quantiles_ms([QUANTILES[s] for s in QUANTILE_STATS])

    def plus(self, later: _Point) -> _Point:
        """This point and the next as one (counts add, gauges are the later one's)."""
        errors = dict(self.errors)
        for k, n in later.errors.items():
            errors[k] = errors.get(k, 0) + n
        by_request = dict(self.by_request)
        for k, (r, e) in later.by_request.items():
            r0, e0 = by_request.get(k, (0, 0))
            by_request[k] = (r0 + r, e0 + e)
        return _Point(later.t, self.requests + later.requests, errors,
                      {k: self.counters[k] + later.counters[k] for k in COUNTERS}, dict(later.gauges),
                      self.latency.plus(later.latency), by_request)


@dataclass
class _Totals:
    """The cumulative values the last point ended at."""

    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    latency: _Hist = field(default_factory=_Hist)
    by_request: dict[str, tuple[int, int]] = field(default_factory=dict)


def by_request_totals(snap: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """(requests, errors) per request row of a snapshot's ``rows``, keyed ``scenario/name`` (empty without).

    A WebSocket row's requests are its sessions, as in the per-request table.
    """
    out: dict[str, tuple[int, int]] = {}
    for row in snap.get("rows") or ():
        if row.get("protocol") == "ws":
            requests = int(row.get("counters", {}).get("ws_sessions", 0))
        else:
            requests = sum(row.get("http_reqs", {}).values())
        key = f"{row.get('scenario', '')}/{row.get('name', '')}"
        r0, e0 = out.get(key, (0, 0))
        out[key] = (r0 + requests, e0 + sum(row.get("errors", {}).values()))
    return out


def _totals(snap: Mapping[str, Any]) -> _Totals:
    errors: dict[str, int] = {}
    for row in snap.get("errors", {}).values():
        for k, n in row.items():
            errors[k] = errors.get(k, 0) + n
    counters = snap.get("counters", {})
    return _Totals(
        requests=sum(n for row in snap.get("http_reqs", {}).values() for n in row.values()),
        errors=errors,
        counters={k: int(counters.get(k, 0)) for k in COUNTERS},
        latency=_hist_of(snap.get("histograms", {}).get(LATENCY)),
        by_request=by_request_totals(snap),
    )


_FLAT: tuple[str, ...] = ("t", "requests", "p50", "p95", "p99", *GAUGES, *COUNTERS)
"""The single-list columns of a TimeSeries, in the order ``_row`` yields them."""


def _row(p: _Point) -> tuple[Any, ...]:
    return (p.t, p.requests, *p.quantiles, *(p.gauges[g] for g in GAUGES), *(p.counters[c] for c in COUNTERS))


class Recorder:
    """The coordinator's book of points: ``observe`` every poll, ``close`` at the end, ``series`` to read.

    The columns ``series`` returns are kept as the points close (an append per
    column), rebuilt only when the book halves: the coordinator reads the
    series on every poll, and rebuilding 720-long columns each time would cost
    a good part of the merge (bench/timeseries.py).
    """

    def __init__(self, interval: float = INTERVAL, max_points: int = MAX_POINTS,
                 top: int = TOP_REQUESTS) -> None:
        if max_points < 2:
            raise ValueError("max_points must be at least 2")
        self.interval = interval
        self.max_points = max_points
        self.top = top
        self.points: list[_Point] = []
        self._last = _Totals()
        self._last_t = 0.0
        self._series: TimeSeries | None = None
        self._rebuild()

    def observe(self, merged: Mapping[str, Any], elapsed: float, *, final: bool = False) -> bool:
        """Take one merged cumulative snapshot at ``elapsed`` seconds of load; True if a point closed.

        A point closes once ``elapsed`` has passed the current one's end (by
        ``interval``), or on ``final`` whenever anything changed since the last one.
        """
        due = elapsed >= self._last_t + self.interval * (1 - 1e-9)
        if (not due and not final) or elapsed <= 0:
            return False  # a run that never started has no points
        now = _totals(merged)
        if final and not due and not self._changed(now, merged):
            return False
        self._append(now, merged, max(elapsed, self._last_t))
        return True

    def close(self, merged: Mapping[str, Any], elapsed: float) -> None:
        """The final observation: what the last poll added becomes the last point."""
        self.observe(merged, elapsed, final=True)

    def _changed(self, now: _Totals, merged: Mapping[str, Any]) -> bool:
        last = self._last
        return (now.requests != last.requests or now.errors != last.errors or now.counters != last.counters
                or now.latency.count != last.latency.count or not self.points
                or _gauges(merged) != self.points[-1].gauges)

    def _append(self, now: _Totals, merged: Mapping[str, Any], t: float) -> None:
        last = self._last
        errors = {k: n - last.errors.get(k, 0) for k, n in now.errors.items() if n != last.errors.get(k, 0)}
        by_request = {}
        for k, (r, e) in now.by_request.items():
            r0, e0 = last.by_request.get(k, (0, 0))
            if r != r0 or e != e0:
                by_request[k] = (r - r0, e - e0)
        point = _Point(
            t=round(t, 3),
            requests=now.requests - last.requests,
            errors=errors,
            counters={k: now.counters[k] - last.counters[k] for k in COUNTERS},
            gauges=_gauges(merged),
            latency=_minus(now.latency, last.latency),
            by_request=by_request,
        )
        self._last = now
        self._last_t = t
        self._series = None
        if self.points and point.t <= self.points[-1].t:
            # No load time passed (the final poll after the workers froze): fold it into the last point,
            # so every point has a positive length and a finite rate.
            self.points[-1] = self.points[-1].plus(point)
            self._rebuild()
            return
        self.points.append(point)
        self._push(point)
        if len(self.points) >= self.max_points:
            self._halve()

    def _halve(self) -> None:
        """Merge adjacent pairs exactly and double the interval, so the book stays bounded."""
        pts = self.points
        self.points = [pts[i].plus(pts[i + 1]) if i + 1 < len(pts) else pts[i] for i in range(0, len(pts), 2)]
        self.interval *= 2
        self._rebuild()

    def _rebuild(self) -> None:
        self._flat: dict[str, list[Any]] = {name: [] for name in _FLAT}
        self._errors: dict[str, list[int]] = {}
        self._requests: dict[str, list[int]] = {}
        self._request_errors: dict[str, list[int]] = {}
        self._request_totals: dict[str, int] = {}
        for p in self.points:
            self._push(p)

    def _push(self, p: _Point) -> None:
        n = len(self._flat["t"])
        for column, value in zip(self._flat.values(), _row(p), strict=True):
            column.append(value)
        for key, values in self._errors.items():
            values.append(p.errors.get(key, 0))
        for key, count in p.errors.items():
            if key not in self._errors:
                self._errors[key] = [0] * n + [count]
        for key, values in self._requests.items():
            r, e = p.by_request.get(key, (0, 0))
            values.append(r)
            self._request_errors[key].append(e)
            self._request_totals[key] += r
        for key, (r, e) in p.by_request.items():
            if key not in self._requests:
                self._requests[key] = [0] * n + [r]
                self._request_errors[key] = [0] * n + [e]
                self._request_totals[key] = r

    def series(self) -> TimeSeries:
        """The points so far as columns (every list one entry per point); cached until the next point.

        Built with ``model_construct`` (the values are ours, already typed) from copies of the kept
        columns, so a series handed out never changes.
        """
        if self._series is None:
            totals = self._request_totals
            top = sorted(totals, key=lambda k: (-totals[k], k))[:self.top]
            self._series = TimeSeries.model_construct(
                interval=self.interval,
                **{name: list(values) for name, values in self._flat.items()},  # type: ignore[arg-type]
                errors={c: list(self._errors[c]) for c in sorted(self._errors)},
                by_request={k: RequestSeries.model_construct(requests=list(self._requests[k]),
                                                             errors=list(self._request_errors[k]))
                            for k in top},
            )
        return self._series


def _gauges(merged: Mapping[str, Any]) -> dict[str, int]:
    gauges = merged.get("gauges", {})
    return {g: int(gauges.get(g, {}).get("current", 0)) for g in GAUGES}
