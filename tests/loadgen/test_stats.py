"""Worker stats: what the hot loop records, and the snapshot algebra the coordinator relies on."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mothership.api.loadtest import Summary, load_spec
from mothership.api.vocabulary import METRICS, STATS_BY_KIND, ErrorClass, Stat
from mothership.loadgen.histogram import LAYOUT, SUB_LEVELS, Histogram, LayoutMismatch, layout_of
from mothership.loadgen.stats import (
    HISTOGRAMS,
    TERMINATION_MESSAGE_LIMIT,
    Stats,
    by_request,
    coarsen_snapshot,
    coarsen_step,
    compact,
    empty_snapshot,
    expand,
    histogram_quantile,
    merge_snapshots,
    scoped_snapshot,
    stat_value,
    summarize,
)
from tests.conftest import LOADTEST_DOC

SCENARIOS = ["browse", "chat"]

def row_histograms(s: Stats, *skip: str) -> list[Histogram]:
    """The histograms a Stats records into (its rows'); its totals are merges of them."""
    out = [h for h in s.durations if "http_req_duration" not in skip]
    for ws in s.ws_rows.values():
        out += [getattr(ws, n) for n in ("ws_connecting", "ws_msg_latency") if n not in skip]
    return out



def busy_stats(seed: int, n: int = 200) -> Stats:
    rng = random.Random(seed)
    s = Stats(SCENARIOS)
    for k in range(n):
        scenario = k % 2
        status = rng.choice([200, 200, 200, 201, 302, 404, 503])
        s.http(scenario, status, rng.lognormvariate(-4, 1), 80, 400)
        if status >= 400:
            s.error(scenario, ErrorClass.STATUS)
    s.error(0, ErrorClass.TIMEOUT, 10.0)
    s.error(1, ErrorClass.CONNECT, 0.0001)
    s.virtual_users = 7
    s.virtual_users = 5
    for _ in range(3):
        s.ws_session_started(1)
        s.ws_connected(rng.uniform(0.001, 0.01))
    for _ in range(20):
        s.ws_sent(5)
        s.ws_received(5, rng.uniform(0.0005, 0.002))
    s.ws_closed(1, abnormal=True)
    s.ws_closed(1, abnormal=False)
    s.ws_handshake_failed(1, ErrorClass.STATUS)
    s.dropped_iterations += seed % 3
    return s


def test_a_snapshot_is_json_ready_and_carries_the_layout() -> None:
    snap = busy_stats(1).snapshot()
    assert json.loads(json.dumps(snap)) == snap
    assert snap["layout"] == LAYOUT
    assert snap["scenarios"] == SCENARIOS
    assert set(snap["histograms"]) == {"http_req_duration", "ws_connecting", "ws_msg_latency"}


def test_http_requests_are_counted_by_scenario_and_status_class() -> None:
    s = Stats(SCENARIOS)
    s.http(0, 200, 0.01, 10, 20)
    s.http(0, 204, 0.01, 10, 20)
    s.http(1, 503, 0.02, 10, 20)
    s.error(1, ErrorClass.STATUS)
    s.error(1, ErrorClass.TIMEOUT, 5.0)
    snap = s.snapshot()
    assert snap["http_reqs"] == {"browse": {"2xx": 2}, "chat": {"5xx": 1, "none": 1}}
    assert snap["errors"] == {"chat": {"timeout": 1, "status": 1}}
    assert snap["counters"]["data_sent"] == 30 and snap["counters"]["data_received"] == 60
    assert snap["histograms"]["http_req_duration"]["count"] == 4
    assert snap["histograms"]["http_req_duration"]["max"] == 5.0


def test_gauges_keep_their_peak() -> None:
    snap = busy_stats(1).snapshot()
    assert snap["gauges"]["virtual_users"] == {"current": 5, "peak": 7}
    assert snap["gauges"]["ws_connections"] == {"current": 1, "peak": 3}


def test_websocket_recorders_fill_the_vocabulary_counters() -> None:
    counters = busy_stats(1).snapshot()["counters"]
    assert counters["ws_sessions"] == 3
    assert counters["ws_msgs_sent"] == counters["ws_msgs_received"] == 20
    assert counters["ws_bytes_sent"] == 100
    assert counters["ws_abnormal_closures"] == 1
    assert counters["ws_handshake_failures"] == 1


@given(st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=6))
def test_merging_snapshots_equals_recording_everything_in_one_stats(seeds: list[int]) -> None:
    parts = [busy_stats(seed, n=30).snapshot() for seed in seeds]
    merged = merge_snapshots(parts)
    assert merged["layout"] == LAYOUT
    total = sum(sum(row.values()) for p in parts for row in p["http_reqs"].values())
    assert stat_value(merged, "http_reqs", Stat.COUNT, 1.0) == total
    whole = Histogram()
    for p in parts:
        whole.merge(Histogram.from_wire(p["histograms"]["http_req_duration"]))
    assert Histogram.from_wire(merged["histograms"]["http_req_duration"]) == whole
    assert merged["counters"]["dropped_iterations"] == sum(p["counters"]["dropped_iterations"] for p in parts)


@given(st.permutations([1, 2, 3, 4]))
def test_merge_order_does_not_matter(order: list[int]) -> None:
    snaps = {seed: busy_stats(seed, n=40).snapshot() for seed in (1, 2, 3, 4)}
    reference = merge_snapshots(snaps[k] for k in (1, 2, 3, 4))
    again = merge_snapshots(snaps[k] for k in order)
    for name in reference["histograms"]:
        assert Histogram.from_wire(again["histograms"][name]) == Histogram.from_wire(
            reference["histograms"][name])
    assert again["counters"] == reference["counters"]
    assert again["errors"] == reference["errors"]


def test_merging_a_merge_again_changes_nothing_beyond_adding() -> None:
    a, b = busy_stats(1).snapshot(), busy_stats(2).snapshot()
    nested = merge_snapshots([merge_snapshots([a]), merge_snapshots([b, empty_snapshot()])])
    flat = merge_snapshots([a, b])
    assert nested["http_reqs"] == flat["http_reqs"]
    key = "http_req_duration"
    assert nested["histograms"][key]["counts"] == flat["histograms"][key]["counts"]


def test_a_snapshot_with_another_layout_is_refused() -> None:
    other = busy_stats(1).snapshot()
    other["layout"] = "loglin-v1:base=2:sub=128:lo=2^-20s:hi=2^8s"
    with pytest.raises(LayoutMismatch):
        merge_snapshots([busy_stats(2).snapshot(), other])


def histograms_of(snap: dict[str, object]) -> dict[str, Histogram]:
    return {name: Histogram.from_wire(wire) for name, wire in snap["histograms"].items()}  # type: ignore[attr-defined]


def same_snapshot(a: dict[str, object], b: dict[str, object]) -> bool:
    """Equal snapshots, histogram sums compared as Histogram.__eq__ does (float sums depend on order)."""
    rest = ("histograms", "rows")
    rows_a, rows_b = a.get("rows", []), b.get("rows", [])
    return histograms_of(a) == histograms_of(b) and (
        {k: v for k, v in a.items() if k not in rest} == {k: v for k, v in b.items() if k not in rest}) and (
        len(rows_a) == len(rows_b)) and all(  # type: ignore[arg-type]
        same_snapshot(x, y) for x, y in zip(rows_a, rows_b, strict=True))  # type: ignore[call-overload]


COARSER = st.sampled_from(SUB_LEVELS[1:])


@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=0, max_value=10_000), COARSER)
def test_merging_a_fine_and_a_coarse_snapshot_equals_merging_both_coarsened(
    seed_a: int, seed_b: int, sub: int
) -> None:
    fine = busy_stats(seed_a, n=30).snapshot()
    coarse = coarsen_snapshot(busy_stats(seed_b, n=30).snapshot(), sub)
    mixed = merge_snapshots([fine, coarse])
    both = merge_snapshots([coarsen_snapshot(fine, sub), coarse])
    assert same_snapshot(mixed, both)
    assert same_snapshot(mixed, merge_snapshots([coarse, fine]))
    assert mixed["layout"] == layout_of(sub)
    assert all(w["layout"] == layout_of(sub) for w in mixed["histograms"].values())


@given(st.lists(st.tuples(st.integers(min_value=0, max_value=10_000), st.sampled_from(SUB_LEVELS)),
                min_size=1, max_size=5))
def test_downsampling_a_merge_equals_merging_the_downsampled_parts(parts: list[tuple[int, int]]) -> None:
    snaps = [coarsen_snapshot(busy_stats(seed, n=20).snapshot(), sub) for seed, sub in parts]
    coarsest = min(sub for _, sub in parts)
    merged = merge_snapshots(snaps)
    fine = merge_snapshots(busy_stats(seed, n=20).snapshot() for seed, _ in parts)
    assert same_snapshot(merged, coarsen_snapshot(fine, coarsest))
    assert same_snapshot(merge_snapshots([merge_snapshots(snaps[:1]), merge_snapshots(snaps[1:])]), merged)


def test_each_histogram_merges_at_the_coarsest_layout_present_for_it_and_counts_stay_exact() -> None:
    a, b = busy_stats(1).snapshot(), busy_stats(2).snapshot()
    b["histograms"]["ws_msg_latency"] = coarsen_snapshot(b, 16)["histograms"]["ws_msg_latency"]
    merged = merge_snapshots([a, b])
    assert merged["histograms"]["http_req_duration"]["layout"] == LAYOUT
    assert merged["histograms"]["ws_msg_latency"]["layout"] == layout_of(16)
    assert merged["layout"] == layout_of(16)  # a snapshot's layout is its coarsest histogram's
    fine = merge_snapshots([a, busy_stats(2).snapshot()])
    for name in HISTOGRAMS:
        got, want = merged["histograms"][name], fine["histograms"][name]
        for key in ("count", "min", "max", "underflow", "overflow"):
            assert got[key] == want[key]
        assert sum(got["counts"]) == sum(want["counts"])


def test_merging_with_an_empty_snapshot_keeps_a_coarse_snapshot_as_it_is() -> None:
    coarse = coarsen_snapshot(busy_stats(3).snapshot(), 8)
    assert merge_snapshots([coarse, empty_snapshot(SCENARIOS)]) == merge_snapshots([coarse])
    assert histograms_of(merge_snapshots([coarse])) == histograms_of(coarse)


@pytest.mark.parametrize("layout", ["loglin-v2:base=2:sub=32:lo=2^-20s:hi=2^8s",
                                    "loglin-v1:base=2:sub=32:lo=2^-24s:hi=2^8s",
                                    "loglin-v1:base=4:sub=32:lo=2^-20s:hi=2^8s"])
def test_a_histogram_of_another_family_is_still_refused_in_a_merge(layout: str) -> None:
    other = busy_stats(1).snapshot()
    other["histograms"]["ws_connecting"]["layout"] = layout
    with pytest.raises(LayoutMismatch):
        merge_snapshots([busy_stats(2).snapshot(), other])
    other = busy_stats(1).snapshot()
    other["layout"] = layout
    with pytest.raises(LayoutMismatch):
        merge_snapshots([coarsen_snapshot(busy_stats(2).snapshot(), 32), other])


@pytest.mark.parametrize("sub", SUB_LEVELS[1:])
def test_quantiles_read_from_a_coarse_snapshot_use_its_layout(sub: int) -> None:
    snap = coarsen_snapshot(busy_stats(4).snapshot(), sub)
    for name, h in histograms_of(snap).items():
        for q in (0.5, 0.9, 0.99):
            assert histogram_quantile(snap["histograms"][name], q) == h.quantile(q)
    assert summarize(snap, 1.0) == summarize(coarsen_snapshot(snap, sub), 1.0)
    assert summarize(snap, 1.0).requests == summarize(busy_stats(4).snapshot(), 1.0).requests


def test_coarsen_step_coarsens_the_longest_run_first_until_all_are_coarsest(heavy: dict[str, object]) -> None:
    runs = {name: len(w["counts"]) for name, w in heavy["histograms"].items()}  # type: ignore[attr-defined]
    longest = max(runs, key=runs.__getitem__)
    snap: dict[str, object] | None = heavy
    steps = []
    while snap is not None:
        steps.append(snap)
        snap = coarsen_step(snap)
    first = steps[1]["histograms"]  # type: ignore[index]
    assert first[longest]["layout"] == layout_of(32)
    assert all(first[n]["layout"] == LAYOUT for n in runs if n != longest)
    totals_done = 1 + len(HISTOGRAMS) * (len(SUB_LEVELS) - 1)
    assert len(steps) == totals_done + len(SUB_LEVELS) - 1  # then the rows, a level at a time
    assert steps[totals_done - 1]["rows"] == heavy["rows"]
    last = steps[-1]
    assert last["layout"] == layout_of(8)
    assert histograms_of(last) == {n: h.coarsened(8) for n, h in histograms_of(heavy).items()}
    assert last["rows"] == coarsen_snapshot(heavy, 8)["rows"]
    assert {k: v for k, v in last.items() if k not in ("histograms", "layout", "rows")} == {
        k: v for k, v in heavy.items() if k not in ("histograms", "layout", "rows")}


def test_a_coarse_snapshot_compacts_smaller_and_round_trips_exactly(heavy: dict[str, object]) -> None:
    sizes = []
    for sub in SUB_LEVELS:
        snap = coarsen_snapshot(heavy, sub)
        text = compact(snap)
        assert expand(text) == snap
        sizes.append(len(text))
    assert sizes == sorted(sizes, reverse=True)


def test_stat_value_is_defined_for_every_metric_and_applicable_stat() -> None:
    snap = busy_stats(3).snapshot()
    for metric in METRICS:
        for stat in STATS_BY_KIND[metric.kind]:
            value = stat_value(snap, metric.name, stat, 10.0)
            assert value is None or value >= 0, (metric.name, stat)


def test_stat_value_speaks_base_units() -> None:
    s = Stats(["a"])
    for ms in range(1, 101):
        s.http(0, 200, ms / 1000, 1, 1)
    s.error(0, ErrorClass.CONNECT, 0.001)
    snap = s.snapshot()
    assert stat_value(snap, "http_reqs", Stat.COUNT, 10.0) == 101
    assert stat_value(snap, "http_reqs", Stat.RATE, 10.0) == pytest.approx(10.1)
    assert stat_value(snap, "errors", Stat.RATE, 10.0) == pytest.approx(1 / 101)
    assert stat_value(snap, "http_req_duration", Stat.P50, 10.0) == pytest.approx(0.050, rel=0.01)
    assert stat_value(snap, "http_req_duration", Stat.MAX, 10.0) == 0.1
    assert stat_value(snap, "virtual_users", Stat.MAX, 10.0) == 0


def test_stat_value_is_none_while_there_is_no_data() -> None:
    snap = Stats(["a"]).snapshot()
    assert stat_value(snap, "http_req_duration", Stat.P95, 1.0) is None
    assert stat_value(snap, "errors", Stat.RATE, 1.0) is None
    assert stat_value(snap, "http_reqs", Stat.RATE, 0.0) is None


def test_stat_value_refuses_a_stat_that_does_not_apply() -> None:
    with pytest.raises(ValueError):
        stat_value(Stats(["a"]).snapshot(), "http_reqs", Stat.P95, 1.0)
    with pytest.raises(ValueError):
        stat_value(Stats(["a"]).snapshot(), "http_req_latency", Stat.P95, 1.0)


def test_the_summary_has_exact_counts_and_millisecond_percentiles() -> None:
    snap = merge_snapshots([busy_stats(1).snapshot(), busy_stats(2).snapshot()])
    summary = summarize(snap, 2.0)
    assert isinstance(summary, Summary)
    assert summary.requests == 404
    assert summary.rps == 202.0
    assert summary.errors == sum(summary.errors_by_class.values())
    assert set(summary.errors_by_class) <= {c.value for c in ErrorClass}
    p = summary.http_req_duration
    assert p.count == 404 and p.min is not None and p.max == 10000.0
    assert p.min <= p.p50 <= p.p90 <= p.p95 <= p.p99 <= p.p999 <= p.max  # type: ignore[operator]
    assert summary.websocket.sessions == 6 and summary.websocket.abnormal_closures == 2
    assert summary.virtual_users == 14


def heavy_snapshot() -> dict[str, object]:
    """A long, busy run: a million requests and messages, latencies from 50 µs to a minute.

    To stay fast it records 250k samples per histogram and then scales every
    count by 4, which makes the counts noisier (harder to compress) than a
    real million-sample run.
    """
    rng = random.Random(7)
    s = Stats(["home", "search", "cart", "checkout", "chat"])
    lognorm = rng.lognormvariate
    for k in range(250_000):
        s.http(k % 5, 200 if k % 97 else 503, lognorm(-3, 1.5), 180, 2400)
        s.ws_received(64, lognorm(-6, 1.2))
    for _ in range(20_000):
        s.ws_session_started(4)
        s.ws_connected(lognorm(-5, 0.8))
        s.ws_sent(64)
    for h in row_histograms(s, "ws_connecting"):
        h.counts = [4 * c for c in h.counts]
        h.count *= 4
    for c in ErrorClass:
        for scenario in range(5):
            s.error(scenario, c, 10.0 if c is ErrorClass.TIMEOUT else None)
    s.virtual_users = 2000
    s.dropped_iterations = 12345
    return s.snapshot()


@pytest.fixture(scope="module")
def heavy() -> dict[str, object]:
    return heavy_snapshot()


def test_a_heavy_snapshot_fits_in_a_termination_message(heavy: dict[str, object]) -> None:
    text = compact({**heavy, "rows": []})  # the totals; worker.envelope drops rows that do not fit
    assert text.isascii()
    assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
    assert len(heavy["histograms"]["http_req_duration"]["counts"]) > 1000  # type: ignore[index]


def test_compact_round_trips_exactly(heavy: dict[str, object]) -> None:
    assert expand(compact(heavy)) == heavy
    small = busy_stats(5).snapshot()
    assert expand(compact(small)) == small
    empty = Stats([]).snapshot()
    assert expand(compact(empty)) == empty


def test_expand_refuses_text_that_is_not_a_compact_snapshot() -> None:
    with pytest.raises(ValueError):
        expand('{"requests": 1}')


def rowed_stats(seed: int, n: int = 300) -> Stats:
    """A Stats with rows, as the engine makes it: two named HTTP rows (one shared by two requests)
    in one scenario, a WebSocket row in another."""
    spec = load_spec({**LOADTEST_DOC, "spec": {**LOADTEST_DOC["spec"], "scenarios": [
        {"name": "shop", "requests": [{"path": "/a", "name": "list"}, {"path": "/b"},
                                      {"path": "/c", "name": "list"}]},
        {"name": "chat", "websocket": {"path": "/ws"}}]}})
    s = Stats.for_scenarios(spec.scenarios)
    rng = random.Random(seed)
    assert [r[1] for r in s.rows] == ["list", "GET /b", "WS /ws"]  # requests of one name share a row
    for k in range(n):
        row = rng.randrange(2)
        s.http(row, rng.choice([200, 200, 503]), rng.lognormvariate(-4, 1), 80, 400)
        if k % 17 == 0:
            s.error(row, ErrorClass.TIMEOUT, 10.0)
    ws = s.ws_for(1)
    for _ in range(rng.randrange(1, 5)):
        ws.ws_session_started()
        ws.ws_connected(rng.uniform(0.001, 0.01))
        ws.ws_received(5, rng.uniform(0.0005, 0.002))
    ws.ws_handshake_failed(ErrorClass.CONNECT)
    return s


def test_rows_add_up_to_the_totals_and_merge_exactly_across_workers() -> None:
    workers = [rowed_stats(seed) for seed in range(4)]
    merged = merge_snapshots(w.snapshot() for w in workers)
    rows = {(r["scenario"], r["name"]): r for r in merged["rows"]}
    assert list(rows) == [("shop", "list"), ("shop", "GET /b"), ("chat", "WS /ws")]
    for i, key in enumerate(rows):  # each merged row equals the merge of that row's histograms
        expected = Histogram()
        for w in workers:
            expected.merge(w.ws_rows[i].ws_msg_latency if i in w.ws_rows else w.durations[i])
        wire = rows[key]["histograms"]["ws_msg_latency" if key[0] == "chat" else "http_req_duration"]
        assert Histogram.from_wire(wire) == expected
    # totals: exactly the sums and merges of the rows
    assert merged["http_reqs"]["shop"] == {
        k: rows["shop", "list"]["http_reqs"].get(k, 0) + rows["shop", "GET /b"]["http_reqs"].get(k, 0)
        for k in merged["http_reqs"]["shop"]}
    assert sum(n for r in rows.values() for n in r["errors"].values()) == sum(
        n for e in merged["errors"].values() for n in e.values())
    total = Histogram.from_wire(rows["shop", "list"]["histograms"]["http_req_duration"])
    total.merge(Histogram.from_wire(rows["shop", "GET /b"]["histograms"]["http_req_duration"]))
    assert Histogram.from_wire(merged["histograms"]["http_req_duration"]) == total
    assert rows["chat", "WS /ws"]["counters"]["ws_sessions"] == merged["counters"]["ws_sessions"]
    # and the per-request table reads them
    table = by_request(merged, 10.0)
    assert [r.requests for r in table[:2]] == [sum(rows[k]["http_reqs"].values()) for k in list(rows)[:2]]
    assert table[2].protocol == "ws" and table[2].errors == 4 and table[2].requests == merged[
        "counters"]["ws_sessions"]


def test_a_scoped_snapshot_sees_only_its_rows() -> None:
    snap = merge_snapshots(rowed_stats(seed).snapshot() for seed in range(2))
    rows = {r["name"]: r for r in snap["rows"]}
    listed = scoped_snapshot(snap, request="list")
    assert stat_value(listed, "http_reqs", Stat.COUNT, 1.0) == sum(rows["list"]["http_reqs"].values())
    assert listed["histograms"]["http_req_duration"] == rows["list"]["histograms"]["http_req_duration"]
    chat = scoped_snapshot(snap, scenario="chat")
    assert stat_value(chat, "http_reqs", Stat.COUNT, 1.0) == 0
    sessions = rows["WS /ws"]["counters"]["ws_sessions"]
    assert stat_value(chat, "errors", Stat.RATE, 1.0) == 2 / sessions  # its handshake failures only
    assert chat["histograms"]["ws_msg_latency"] == rows["WS /ws"]["histograms"]["ws_msg_latency"]
    assert scoped_snapshot(snap, scenario="shop", request="WS /ws")["rows"] == []
