"""engine.run: the lifecycle a worker relies on (start now, stop on time or on request), mixed scenarios."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvloop
from prometheus_client import CollectorRegistry, generate_latest

from mothership.api.loadtest import LoadTestSpec
from mothership.api.vocabulary import METRICS
from mothership.loadgen import engine
from mothership.loadgen.exposition import StatsCollector
from mothership.loadgen.plan import worker_share
from mothership.loadgen.stats import Stats, merge_snapshots, summarize

from .conftest import TargetServer, serve


def spec_of(url: str, **fields: Any) -> LoadTestSpec:
    base: dict[str, Any] = {
        "target": {"url": url},
        "scenarios": [{"name": "browse", "requests": [{"path": "/ok"}]}],
        "virtualUsers": 2,
        "duration": "200ms",
        "gracefulStop": "1s",
    }
    base.update(fields)
    return LoadTestSpec.model_validate(base)


async def timed_run(spec: LoadTestSpec, stop: asyncio.Event | None = None,
                    limit: float = 10) -> tuple[Stats, float]:
    loop = asyncio.get_running_loop()
    stats = Stats([s.name for s in spec.scenarios])
    url = spec.target.url
    assert url is not None
    started = loop.time()
    await asyncio.wait_for(engine.run(spec, worker_share(spec, 0, 1), stats, base_url=url,
                                     stop=stop or asyncio.Event()), limit)
    return stats, loop.time() - started


async def test_run_returns_soon_after_the_duration_when_iterations_are_quick(
    target_server: TargetServer,
) -> None:
    stats, took = await timed_run(spec_of(target_server.url))
    assert 0.2 <= took < 0.4
    assert stats.http_reqs_total() > 10 and stats.virtual_users == 0


async def test_in_flight_work_is_cancelled_after_graceful_stop(target_server: TargetServer) -> None:
    spec = spec_of(target_server.url, gracefulStop="100ms",
                   scenarios=[{"name": "browse", "requests": [{"path": "/slow?ms=3000"}]}])
    stats, took = await timed_run(spec)
    assert 0.3 <= took < 0.6
    # each request still in flight at the end is one interrupted error, not forgotten
    assert stats.http_reqs_total() == stats.errors_total() == 2
    assert stats.snapshot()["errors"] == {"browse": {"interrupted": 2}}
    assert stats.http_req_duration.count == 2 and stats.http_req_duration.to_wire()["min"] >= 0.3


async def test_in_flight_work_may_finish_within_graceful_stop(target_server: TargetServer) -> None:
    spec = spec_of(target_server.url, virtualUsers=3, gracefulStop="1s",
                   scenarios=[{"name": "browse", "requests": [{"path": "/slow?ms=150"}]}])
    stats, took = await timed_run(spec)
    assert took < 0.6
    assert stats.http_reqs_total() == 6 and stats.errors_total() == 0


async def test_setting_stop_ends_the_run_early(target_server: TargetServer) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.1, stop.set)
    stats, took = await timed_run(spec_of(target_server.url, duration="30s"), stop)
    assert took < 0.5
    assert stats.http_reqs_total() > 0


async def test_a_scenario_of_requests_then_a_websocket_session_records_both(
    target_server: TargetServer,
) -> None:
    spec = spec_of(target_server.url, virtualUsers=2, duration="300ms", scenarios=[{
        "name": "chat",
        "requests": [{"path": "/ok"}],
        "websocket": {"path": "/ws/echo", "interval": "20ms", "hold": "100ms"},
    }])
    stats, took = await timed_run(spec)
    snap = stats.snapshot()
    assert stats.errors_total() == 0
    assert snap["counters"]["ws_sessions"] >= 2 and stats.http_reqs_total() >= 2
    assert snap["counters"]["ws_msgs_received"] >= 8
    assert snap["gauges"]["ws_connections"] == {"current": 0, "peak": 2}
    assert summarize(merge_snapshots([snap]), took).websocket.message_latency.count >= 8


async def test_held_websocket_sessions_close_normally_when_the_duration_ends(
    target_server: TargetServer,
) -> None:
    spec = spec_of(target_server.url, virtualUsers=3, duration="200ms", scenarios=[{
        "name": "chat", "websocket": {"path": "/ws/echo", "interval": "50ms", "hold": "1m"}}])
    stats, took = await timed_run(spec)
    assert took < 0.6
    assert stats.ws_sessions == 3 and stats.ws_abnormal_closures == 0 and stats.errors_total() == 0
    assert stats.ws_connections == 0


async def test_a_refused_target_is_counted_not_raised(refused_url: str) -> None:
    stats, _ = await timed_run(spec_of(refused_url, duration="100ms"))
    assert stats.http_reqs_total() == stats.errors_total() > 0
    assert set(stats.snapshot()["errors"]["browse"]) == {"connect"}


@pytest.mark.looptime
async def test_a_long_paced_closed_model_runs_on_the_loop_clock(target_server: TargetServer) -> None:
    """Two virtual users, a request per second each, for a minute: on looptime's clock, not the wall's."""
    spec = spec_of(target_server.url, duration="60s",
                   scenarios=[{"name": "browse", "requests": [{"path": "/ok", "thinkTime": "1s"}]}])
    stats, took = await timed_run(spec, limit=120)
    assert 60 <= took < 62
    assert stats.http_reqs_total() == target_server.requests["/ok"] == 120


def test_the_engine_runs_on_uvloop_with_a_fine_grained_clock() -> None:
    async def main() -> Stats:
        async with serve() as server:
            stats, _ = await timed_run(spec_of(server.url, virtualUsers=4))
            assert engine.clock_for(asyncio.get_running_loop()) is not asyncio.get_running_loop().time
            return stats

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        stats = runner.run(main())
    assert stats.errors_total() == 0 and stats.http_reqs_total() > 20
    h = stats.http_req_duration
    assert h.min is not None and 0 < h.min < 0.001  # sub-millisecond resolution, not uvloop's 1 ms


async def test_the_collector_exposes_every_vocabulary_series(target_server: TargetServer) -> None:
    stats, _ = await timed_run(spec_of(target_server.url, duration="100ms"))
    registry = CollectorRegistry()
    registry.register(StatsCollector(stats, "shop-smoke", 3))
    text = generate_latest(registry).decode()
    for metric in METRICS:
        assert f"# HELP {metric.prometheus} " in text, metric.prometheus
    assert 'mothership_loadtest_http_req_duration_seconds_bucket{le="0.0009765625",loadtest="shop-smoke",' \
           'name="GET /ok",scenario="browse",worker="3"}' in text
    assert 'mothership_loadtest_http_reqs_total{loadtest="shop-smoke",name="GET /ok",scenario="browse",' \
           'status_class="2xx",worker="3"}' in text
    assert 'mothership_loadtest_errors_total{class="timeout",loadtest="shop-smoke",name="GET /ok",' \
           'scenario="browse",worker="3"} 0.0' in text


def test_seq_ids_are_striped_by_worker_and_shared_by_its_scenarios() -> None:
    """Worker 1 of 2 hands out 1, 3, 5, ... to every scenario, so no id of the test repeats."""
    ws = {"path": "/ws/chat", "message": "hi {seq}", "expect": "any"}
    spec = spec_of("http://127.0.0.1:9", virtualUsers=4, scenarios=[
        {"name": "a", "websocket": ws}, {"name": "b", "websocket": ws}, {"name": "plain", "websocket": {}}])
    loop = asyncio.new_event_loop()
    try:
        ctx = engine.build_context(spec, worker_share(spec, 1, 2), Stats(["a", "b", "plain"]),
                                   "http://127.0.0.1:9", loop)
    finally:
        loop.close()
    a, b, plain = ctx.sessions
    assert a is not None and b is not None and plain is not None
    assert a.ids is b.ids is not None and plain.ids is None
    assert [a.ids.take(), b.ids.take(), a.ids.take()] == [b"1", b"3", b"5"]
