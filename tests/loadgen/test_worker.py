"""The worker's control contract, over real sockets: auth, the start barrier, stop, snapshots,
metrics, the summary file and the exit codes.

The engine here is a scripted stand-in that records into the real Stats
(conftest.scripted_engine), so these tests pin the contract, not the load.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mothership.api.loadtest import load_spec
from mothership.api.vocabulary import ErrorClass
from mothership.loadgen.coordinator import result_from_summaries
from mothership.loadgen.histogram import (
    LAYOUT,
    SUB_LEVELS,
    Histogram,
    bucket_index,
    bucket_lower,
    bucket_upper,
)
from mothership.loadgen.stats import TERMINATION_MESSAGE_LIMIT, Stats, compact, expand, merge_snapshots
from mothership.loadgen.worker import (
    EXIT_ENGINE_FAILED,
    EXIT_NEVER_STARTED,
    EXIT_OK,
    PlanError,
    envelope,
    parse_listen,
    read_plan,
)
from tests.conftest import LOADTEST_DOC, TOKEN, RunningWorker, scripted_engine

AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def call(w: RunningWorker, method: str, path: str, headers: dict[str, str] | None = None
               ) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.request(
        method, w.url + path, headers=AUTH if headers is None else headers
    ) as r:
        body = await r.json(content_type=None) if r.content_type == "application/json" else await r.text()
        return r.status, body


async def test_healthz_is_open_and_reports_ready(serve_worker) -> None:
    w = await serve_worker(index=1, count=3)
    assert await call(w, "GET", "/healthz", headers={}) == (200, {"state": "ready", "index": 1, "count": 3})

def row_histograms(s: Stats, *skip: str) -> list[Histogram]:
    """The histograms a Stats records into (its rows'); its totals are merges of them."""
    out = [h for h in s.durations if "http_req_duration" not in skip]
    for ws in s.ws_rows.values():
        out += [getattr(ws, n) for n in ("ws_connecting", "ws_msg_latency") if n not in skip]
    return out



@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"},
                                     {"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN}])
@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/snapshot"), ("POST", "/start?at=1"), ("POST", "/stop")]
)
async def test_snapshot_and_control_refuse_a_missing_or_wrong_token(
    serve_worker, headers: dict[str, str], method: str, path: str
) -> None:
    w = await serve_worker()
    status, _ = await call(w, method, path, headers=headers)
    assert status == 401
    assert w.worker.state == "ready"


async def test_the_token_is_never_logged(serve_worker, caplog) -> None:
    caplog.set_level("DEBUG")
    w = await serve_worker(engine_run=scripted_engine(requests=1, seconds=0.01))
    await call(w, "POST", f"/start?at={time.time()}")
    await call(w, "POST", "/stop", headers={"Authorization": "Bearer wrong-one"})
    assert TOKEN not in caplog.text and "wrong-one" not in caplog.text


async def test_start_runs_the_engine_at_the_barrier_and_is_idempotent(serve_worker, until) -> None:
    engine = scripted_engine(requests=2, seconds=0.05)
    w = await serve_worker(engine_run=engine)
    at = time.time() + 0.3
    assert (await call(w, "POST", f"/start?at={at!r}"))[0] == 200
    assert w.worker.state == "scheduled"
    assert (await call(w, "POST", f"/start?at={at!r}"))[0] == 200
    status, body = await call(w, "POST", f"/start?at={at + 1!r}")
    assert status == 409 and body["startAt"] == at
    await until(lambda: engine.calls, timeout=2)
    assert abs(engine.calls[0] - at) < 0.01, f"started {engine.calls[0] - at:+.4f}s off the barrier"
    await until(lambda: w.worker.state == "done", timeout=2)
    assert (await call(w, "POST", f"/start?at={at!r}"))[0] == 200  # still idempotent after the run


@pytest.mark.parametrize("query", ["", "?at=", "?at=soon", "?at=nan", "?at=inf"])
async def test_start_without_a_finite_time_is_a_bad_request(serve_worker, query: str) -> None:
    w = await serve_worker()
    assert (await call(w, "POST", "/start" + query))[0] == 400
    assert w.worker.state == "ready"


async def test_stop_ends_a_running_engine_and_a_second_stop_releases_the_worker(
    serve_worker, until, tmp_path: Path
) -> None:
    summary = tmp_path / "termination-log"
    w = await serve_worker(engine_run=scripted_engine(requests=1000, seconds=100), summary_file=summary)
    await call(w, "POST", f"/start?at={time.time()!r}")
    await until(lambda: w.worker.state == "running")
    assert (await call(w, "POST", "/stop"))[0] == 200
    await until(lambda: w.worker.state == "stopped")
    assert json.loads(summary.read_text())["state"] == "stopped"
    _, snap = await call(w, "GET", "/snapshot")  # still served while lingering
    assert snap["state"] == "stopped"
    assert not w.lifetime.done()
    assert (await call(w, "POST", "/stop"))[0] == 200
    assert await until(lambda: w.lifetime.done() and w.lifetime.result() == EXIT_OK, timeout=2)


async def test_stop_before_start_cancels_the_schedule_and_exits_without_lingering(
    serve_worker, until
) -> None:
    engine = scripted_engine()
    w = await serve_worker(engine_run=engine, linger=60)
    await call(w, "POST", f"/start?at={time.time() + 5!r}")
    await call(w, "POST", "/stop")
    assert w.worker.state == "stopped"
    assert await until(lambda: w.lifetime.done(), timeout=2)
    assert w.lifetime.result() == EXIT_OK and engine.calls == []


async def test_snapshots_are_cumulative_and_elapsed_freezes_when_the_run_ends(serve_worker, until) -> None:
    w = await serve_worker(engine_run=scripted_engine(requests=20, seconds=0.2))
    await call(w, "POST", f"/start?at={time.time()!r}")
    seen: list[tuple[int, float]] = []

    async def poll() -> bool:
        _, body = await call(w, "GET", "/snapshot")
        seen.append((sum(body["snapshot"]["http_reqs"].get("browse", {}).values()), body["elapsed"]))
        return body["state"] == "done"

    await until(poll, timeout=3)
    counts = [n for n, _ in seen]
    assert counts == sorted(counts) and counts[-1] == 20
    _, later = await call(w, "GET", "/snapshot")
    assert later["elapsed"] == seen[-1][1] and 0.15 < later["elapsed"] < 1.0
    assert later["startedAt"] >= later["startAt"]
    assert later["snapshot"]["layout"].startswith("loglin")


async def test_metrics_are_open_and_carry_the_vocabulary_names_and_labels(serve_worker, until) -> None:
    w = await serve_worker(engine_run=scripted_engine(requests=3, seconds=0.03), loadtest="shop")
    await call(w, "POST", f"/start?at={time.time()!r}")
    await until(lambda: w.worker.state == "done")
    async with aiohttp.ClientSession() as http, http.get(w.url + "/metrics") as r:
        assert r.status == 200 and r.content_type == "text/plain"
        text = await r.text()
    line = next(x for x in text.splitlines() if x.startswith("mothership_loadtest_http_reqs_total{"))
    assert 'loadtest="shop"' in line and 'worker="0"' in line and line.endswith(" 3.0")
    assert "mothership_loadtest_http_req_duration_seconds_bucket" in text


async def test_the_summary_file_fits_a_termination_message_and_rebuilds_the_result(
    serve_worker, until, tmp_path: Path
) -> None:
    summary = tmp_path / "termination-log"
    w = await serve_worker(engine_run=scripted_engine(requests=50, seconds=0.05), summary_file=summary)
    await call(w, "POST", f"/start?at={time.time()!r}")
    await until(lambda: summary.exists())
    text = summary.read_text()
    assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
    body = json.loads(text)
    assert body["state"] == "done" and body["index"] == 0 and body["count"] == 1
    assert expand(body["snapshot"])["http_reqs"] == {"browse": {"2xx": 50}}
    result = result_from_summaries([text], w.worker.spec)
    assert result.verdict == "passed" and result.summary.requests == 50


def pathological_snapshot() -> dict[str, Any]:
    """Latencies in every bucket from 1 µs to 60 s, in all three histograms, with noisy counts.

    Each bucket gets a few real recordings (so count, sum, min and max are
    true), then every count is scaled by a random factor, which makes
    neighbouring buckets as unalike, and the text as incompressible, as a
    run can plausibly be.
    """
    rng = random.Random(11)
    s = Stats(["home", "search", "cart", "checkout", "chat"])
    for i in range(bucket_index(1e-6), bucket_index(60.0) + 1):
        lo, hi = bucket_lower(i), bucket_upper(i)
        for _ in range(rng.randrange(1, 4)):
            s.http(i % 5, 200 if i % 7 else 503, rng.uniform(lo, hi), 200, 1800)
            s.ws_received(64, rng.uniform(lo, hi))
        s.ws_session_started(4)
        s.ws_connected(rng.uniform(lo, hi))
        s.ws_sent(64)
    for h in row_histograms(s):
        h.counts = [c * rng.randrange(1, 20_000) for c in h.counts]
        h.count = sum(h.counts) + h.underflow + h.overflow
    for c in ErrorClass:
        s.error(rng.randrange(5), c, 10.0 if c is ErrorClass.TIMEOUT else None)
    s.virtual_users = 5000
    return s.snapshot()


def test_a_pathological_summary_is_coarsened_to_fit_and_expands_with_exact_counts() -> None:
    snap = pathological_snapshot()
    assert len(compact(snap)) > 2 * TERMINATION_MESSAGE_LIMIT  # far too big at the fine layout
    text = envelope("done", 3, 4, 61.5, 1.0e9, snap, error="x" * 1000)
    assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
    back = expand(json.loads(text)["snapshot"])
    assert back["by_request_missing"] is True and back["rows"] == []  # too many busy rows: totals first
    skip = ("layout", "histograms", "rows", "by_request_missing")
    assert {k: v for k, v in back.items() if k not in skip} == {
        k: v for k, v in snap.items() if k not in skip}
    assert back["layout"] != LAYOUT
    for name, wire in snap["histograms"].items():
        fine, coarse = Histogram.from_wire(wire), Histogram.from_wire(back["histograms"][name])
        assert coarse.sub in SUB_LEVELS[1:]
        assert coarse == fine.coarsened(coarse.sub)  # every coarse bucket exact, count/sum/min/max too
        assert (coarse.count, coarse.sum, coarse.min, coarse.max) == (
            fine.count, fine.sum, fine.min, fine.max)
    result = result_from_summaries([text], load_spec(LOADTEST_DOC))
    assert result.summary.requests == sum(n for row in snap["http_reqs"].values() for n in row.values())
    assert result.summary.http_req_duration.count == snap["histograms"]["http_req_duration"]["count"]


def test_a_coarse_summary_merges_with_fine_live_snapshots() -> None:
    coarse = expand(json.loads(envelope("done", 0, 2, 60.0, None, pathological_snapshot()))["snapshot"])
    fine = pathological_snapshot()
    merged = merge_snapshots([coarse, fine])
    for name, wire in merged["histograms"].items():
        summary_part = Histogram.from_wire(coarse["histograms"][name])
        expected = Histogram.from_wire(fine["histograms"][name]).coarsened(summary_part.sub)
        expected.merge(summary_part)
        assert Histogram.from_wire(wire) == expected
        assert wire["count"] == 2 * fine["histograms"][name]["count"]


def test_a_normal_summary_stays_at_the_fine_layout_and_round_trips_exactly() -> None:
    rng = random.Random(5)
    s = Stats(["browse", "chat"])
    for k in range(20_000):
        s.http(k % 2, 200, rng.lognormvariate(-4, 1.2), 200, 1800)
        s.ws_received(64, rng.lognormvariate(-7, 1.0))
    snap = s.snapshot()
    text = envelope("done", 0, 1, 10.0, None, snap)
    assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
    back = expand(json.loads(text)["snapshot"])
    assert back == snap and back["layout"] == LAYOUT
    assert all(w["layout"] == LAYOUT for w in back["histograms"].values())


def test_a_summary_that_cannot_fit_ends_at_the_coarsest_layout_and_is_still_returned() -> None:
    snap = pathological_snapshot()
    text = envelope("done", 0, 1, 10.0, None, snap, limit=500)
    assert len(text.encode()) > 500
    back = expand(json.loads(text)["snapshot"])
    assert all(Histogram.from_wire(w).sub == SUB_LEVELS[-1] for w in back["histograms"].values())


async def test_a_worker_never_started_exits_non_zero_after_the_ready_timeout(serve_worker, until) -> None:
    w = await serve_worker(ready_timeout=0.1)
    assert await until(lambda: w.lifetime.done(), timeout=2)
    assert w.lifetime.result() == EXIT_NEVER_STARTED


async def test_an_engine_failure_is_reported_and_exits_one(serve_worker, until, tmp_path: Path) -> None:
    summary = tmp_path / "termination-log"
    w = await serve_worker(engine_run=scripted_engine(requests=1, seconds=0.01, fail=RuntimeError("boom")),
                           summary_file=summary, linger=0.05)
    await call(w, "POST", f"/start?at={time.time()!r}")
    assert await until(lambda: w.lifetime.done(), timeout=2)
    assert w.lifetime.result() == EXIT_ENGINE_FAILED
    assert json.loads(summary.read_text())["error"] == "RuntimeError: boom"


def test_read_plan_takes_a_whole_document_or_a_bare_spec_and_names_bad_fields(tmp_path: Path) -> None:
    doc = tmp_path / "lt.yaml"
    doc.write_text("kind: LoadTest\nmetadata: {name: shop}\nspec:\n  target: {url: 'http://127.0.0.1:1'}\n"
                   "  virtualUsers: 1\n  duration: 1s\n  scenarios: [{name: a, requests: [{}]}]\n")
    spec, name = read_plan(doc)
    assert name == "shop" and spec.virtual_users == 1
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(spec.wire()))
    assert read_plan(bare) == (spec, None)
    bad = tmp_path / "bad.yaml"
    bad.write_text(doc.read_text().replace("virtualUsers: 1", "virtualUsers: 0"))
    with pytest.raises(PlanError) as info:
        read_plan(bad)
    assert info.value.lines == ["spec.virtualUsers: Input should be greater than or equal to 1"]


def test_parse_listen_accepts_host_port_and_refuses_the_rest() -> None:
    assert parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_listen("[::1]:8080") == ("::1", 8080)
    assert parse_listen(":9090") == ("0.0.0.0", 9090)
    for bad in ("127.0.0.1", "host:port", "h:70000"):
        with pytest.raises(ValueError):
            parse_listen(bad)
