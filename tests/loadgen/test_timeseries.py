"""The time series: per-interval deltas of merged snapshots that add up to the totals, exactly."""

from __future__ import annotations

import random

import pytest

from mothership.api.vocabulary import QUANTILES, ErrorClass, Stat
from mothership.loadgen.histogram import Histogram
from mothership.loadgen.stats import Stats, merge_snapshots, summarize
from mothership.loadgen.timeseries import (
    MAX_POINTS,
    PACKED_LIMIT,
    Recorder,
    RequestSeries,
    TimeSeries,
    by_request_totals,
    pack,
    unpack,
)

SCENARIOS = ["browse"]


def record(stats: Stats, rng: random.Random, n: int, scale: float, truth: Histogram) -> None:
    for _ in range(n):
        seconds = rng.lognormvariate(scale, 0.5)
        stats.http(0, 200, seconds, 10, 10)
        truth.record(seconds)


def run(recorder: Recorder, intervals: int, seed: int = 1) -> tuple[list[Histogram], dict]:
    """Two workers recording a slower and slower load; the recorder sees their merge every 0.25 s."""
    rng = random.Random(seed)
    workers = [Stats(SCENARIOS), Stats(SCENARIOS)]
    truths: list[Histogram] = []
    merged: dict = {}
    for k in range(intervals):
        truth = Histogram()
        for step in range(4):
            for i, w in enumerate(workers):
                record(w, rng, 5 + 3 * i + k, -6 + 0.3 * k, truth)
                w.virtual_users = k + i
                if k == 3:
                    w.error(0, ErrorClass.TIMEOUT, 1.0)
                    truth.record(1.0)
            merged = merge_snapshots(w.snapshot() for w in workers)
            recorder.observe(merged, k + (step + 1) * 0.25)
        # A delta's own min/max are unknown; the cumulative ones clamp its quantiles (as the series does).
        wire = merged["histograms"]["http_req_duration"]
        truth._min, truth._max = wire["min"], wire["max"]
        truths.append(truth)
    return truths, merged


def test_points_are_exact_merged_deltas_and_add_up_to_the_totals() -> None:
    recorder = Recorder()
    truths, merged = run(recorder, 6)
    recorder.close(merged, 6.0)
    ts = recorder.series()
    assert len(ts) == 6 and ts.t == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    summary = summarize(merged, 6.0)
    assert sum(ts.requests) == summary.requests == sum(t.count for t in truths)
    assert ts.requests == [t.count for t in truths]
    assert ts.errors == {"timeout": [0, 0, 0, 8, 0, 0]}
    # Each point's percentiles are those of exactly that interval's samples, over both workers.
    for k, truth in enumerate(truths):
        for stat, column in ((Stat.P50, ts.p50), (Stat.P95, ts.p95), (Stat.P99, ts.p99)):
            expected = truth.quantile(QUANTILES[stat])
            assert column[k] == pytest.approx(expected * 1000, rel=1e-9, abs=1e-6), (k, stat)
    assert ts.p99[3] == pytest.approx(1000.0, rel=0.01)  # the timeouts show where they happened
    assert ts.virtual_users == [1 + 2 * k for k in range(6)]  # the gauge at each point's end


def test_close_adds_what_the_last_poll_brought_and_nothing_when_nothing_changed() -> None:
    recorder = Recorder()
    _, merged = run(recorder, 2)
    w = Stats(SCENARIOS)
    w.http(0, 200, 0.01, 1, 1)
    later = merge_snapshots([merged, w.snapshot()])
    recorder.close(later, 2.1)
    assert recorder.series().requests[-1] == 1 and recorder.series().t[-1] == 2.1
    recorder.close(later, 2.1)
    assert len(recorder.series()) == 3
    # A last poll with no load time since the previous point folds into it: every point has a length.
    later = merge_snapshots([later, w.snapshot()])
    recorder.close(later, 2.1)
    ts = recorder.series()
    assert ts.t == [1.0, 2.0, 2.1] and ts.requests[-1] == 2


def test_a_full_book_halves_exactly_and_stays_bounded() -> None:
    recorder = Recorder(max_points=4)
    truths, merged = run(recorder, 11)
    recorder.close(merged, 11.0)
    ts = recorder.series()
    assert len(ts) <= 4 and ts.interval == 4.0
    assert sum(ts.requests) == sum(t.count for t in truths)
    # The first point is now intervals 0..3 merged: its p95 is the p95 of their union.
    union = Histogram()
    for truth in truths[:4]:
        union.merge(truth)
    assert ts.t[0] == 4.0
    assert ts.p95[0] == pytest.approx(union.quantile(0.95) * 1000, abs=1e-6)
    assert ts.virtual_users[0] == 1 + 2 * 3  # the later gauge


def test_series_lists_align_and_survive_json() -> None:
    recorder = Recorder()
    run(recorder, 3)
    wire = recorder.series().wire()
    lengths = {k: len(v) for k, v in wire.items() if isinstance(v, list)}
    assert set(lengths.values()) == {3}, lengths
    assert TimeSeries.model_validate(wire) == recorder.series()


def test_per_request_rows_are_kept_for_the_top_names() -> None:
    recorder = Recorder(top=2)

    def row(name: str, requests: int, errors: int = 0, protocol: str = "http") -> dict:
        ws = protocol == "ws"
        counts = {"counters": {"ws_sessions": requests}} if ws else {"http_reqs": {"2xx": requests}}
        return {"scenario": "s", "name": name, "protocol": protocol, **counts,
                "errors": {"timeout": errors} if errors else {}}

    snaps = [{"rows": [row("a", 5, 1), row("b", 1), row("c", 9, protocol="ws")]},
             {"rows": [row("a", 8, 1), row("b", 2), row("c", 9, protocol="ws")]}]
    assert by_request_totals(snaps[0]) == {"s/a": (5, 1), "s/b": (1, 0), "s/c": (9, 0)}
    recorder.observe(snaps[0], 1.0)
    recorder.observe(snaps[1], 2.0)
    rows = recorder.series().by_request
    assert list(rows) == ["s/c", "s/a"]  # by requests, b (2) dropped
    assert rows["s/a"].requests == [5, 3] and rows["s/a"].errors == [1, 0] and rows["s/c"].requests == [9, 0]


def worst_case(points: int = MAX_POINTS, names: int = 10, seed: int = 3) -> TimeSeries:
    """A full series of noisy values: every error class, ``names`` request series."""
    rng = random.Random(seed)

    def ints(scale: int) -> list[int]:
        return [rng.randrange(scale) for _ in range(points)]

    def ms() -> list[float | None]:
        return [round(rng.lognormvariate(3, 1), 6) for _ in range(points)]

    return TimeSeries(
        interval=4.0, t=[round(4 * k + rng.random(), 3) for k in range(1, points + 1)],
        requests=ints(10**6), errors={c.value: ints(10**4) for c in ErrorClass},
        p50=ms(), p95=ms(), p99=ms(), virtual_users=ints(10**5), ws_connections=ints(10**5),
        ws_sessions=ints(10**4), ws_msgs_sent=ints(10**6), ws_msgs_received=ints(10**6),
        dropped_iterations=ints(10**3),
        by_request={f"scenario-{k}/GET /api/items/{k}": RequestSeries(requests=ints(10**5), errors=ints(100))
                    for k in range(names)})


def test_a_packed_series_round_trips_within_its_documented_bound() -> None:
    ts = worst_case()
    data = pack(ts)
    assert len(data) <= 72 * 1024 < PACKED_LIMIT  # the docstring's "about 64 KiB"
    assert unpack(data) == ts
    with pytest.raises(ValueError, match="not a packed time series"):
        unpack(b"{}")


def test_past_the_limit_the_least_busy_request_series_go_first() -> None:
    ts = worst_case(points=50, names=3)
    ts.by_request["scenario-1/GET /api/items/1"].requests = [10**6] * 50
    full = len(pack(ts))
    least = min(ts.by_request, key=lambda k: sum(ts.by_request[k].requests))
    kept = unpack(pack(ts, limit=full - 1))
    assert set(kept.by_request) == set(ts.by_request) - {least}
    assert kept.requests == ts.requests and kept.p95 == ts.p95


def test_a_run_that_never_started_has_no_points() -> None:
    recorder = Recorder()
    recorder.close(merge_snapshots([Stats(SCENARIOS).snapshot()]), 0.0)
    assert len(recorder.series()) == 0
