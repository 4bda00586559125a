"""Closed and open load models, run for real (short and bounded) against the local target."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from mothership.api.loadtest import LoadTestSpec
from mothership.loadgen import engine
from mothership.loadgen.plan import worker_share
from mothership.loadgen.stats import Stats

from .conftest import TargetServer


def spec_of(url: str, **fields: Any) -> LoadTestSpec:
    base: dict[str, Any] = {
        "target": {"url": url},
        "scenarios": [{"name": "browse", "requests": [{"path": "/ok"}]}],
        "duration": "300ms",
        "gracefulStop": "1s",
    }
    base.update(fields)
    return LoadTestSpec.model_validate(base)


async def run(spec: LoadTestSpec, index: int = 0, count: int = 1) -> Stats:
    stats = Stats([s.name for s in spec.scenarios])
    url = spec.target.url
    assert url is not None
    await asyncio.wait_for(
        engine.run(spec, worker_share(spec, index, count), stats, base_url=url, stop=asyncio.Event()), 5)
    return stats


async def test_closed_model_virtual_users_loop_on_their_own_connections(target_server: TargetServer) -> None:
    stats = await run(spec_of(target_server.url, virtualUsers=5))
    snap = stats.snapshot()
    assert stats.errors_total() == 0
    assert stats.http_reqs_total() == target_server.requests["/ok"] > 50
    assert len(target_server.peers) == 5
    assert snap["gauges"]["virtual_users"] == {"current": 0, "peak": 5}


async def test_closed_model_think_time_paces_each_virtual_user(target_server: TargetServer) -> None:
    spec = spec_of(target_server.url, virtualUsers=2, duration="500ms",
                   scenarios=[{"name": "browse", "requests": [{"path": "/ok", "thinkTime": "100ms"}]}])
    stats = await run(spec)
    # each virtual user: a request at 0, 100, 200, 300, 400 ms
    assert 9 <= stats.http_reqs_total() <= 11


async def test_closed_model_scenarios_share_virtual_users_by_weight(target_server: TargetServer) -> None:
    spec = spec_of(target_server.url, virtualUsers=4, scenarios=[
        {"name": "a", "weight": 3, "requests": [{"path": "/ok", "thinkTime": "50ms"}]},
        {"name": "b", "weight": 1, "requests": [{"path": "/status/201", "expectStatus": [201],
                                                 "thinkTime": "50ms"}]},
    ])
    stats = await run(spec)
    assert stats.errors_total() == 0
    a, b = target_server.requests["/ok"], target_server.requests["/status/201"]
    assert 2.0 <= a / b <= 4.5


async def test_a_closed_model_ramp_reaches_its_target_and_comes_back_down(
    target_server: TargetServer,
) -> None:
    spec = spec_of(target_server.url, duration=None, stages=[
        {"duration": "300ms", "target": 8}, {"duration": "300ms", "target": 0}],
        scenarios=[{"name": "browse", "requests": [{"path": "/ok", "thinkTime": "20ms"}]}])
    seen: list[int] = []
    stats = Stats(["browse"])
    loop = asyncio.get_running_loop()
    task = loop.create_task(engine.run(spec, worker_share(spec, 0, 1), stats,
                                       base_url=target_server.url, stop=asyncio.Event()))
    while not task.done():
        seen.append(stats.virtual_users)
        await asyncio.sleep(0.02)
    await task
    assert stats.virtual_users_peak in (7, 8)
    assert max(seen) >= 6 and seen[-1] <= 2
    assert stats.errors_total() == 0


async def test_open_model_makes_exactly_its_share_of_arrivals(target_server: TargetServer) -> None:
    spec = spec_of(target_server.url, arrivalRate=200, duration="400ms", maxVirtualUsers=50)
    shares = [await run(spec, index=i, count=3) for i in range(3)]
    assert [s.http_reqs_total() for s in shares] == [27, 27, 26]
    assert target_server.requests["/ok"] == 80
    assert all(s.dropped_iterations == 0 for s in shares)


async def test_open_model_drops_arrivals_when_the_pool_is_busy(target_server: TargetServer) -> None:
    spec = spec_of(target_server.url, arrivalRate=50, duration="400ms", maxVirtualUsers=2,
                   scenarios=[{"name": "browse", "requests": [{"path": "/slow?ms=250"}]}])
    stats = await run(spec)
    # 20 arrivals; two virtual users, each busy 250 ms: 4 iterations run, the rest are dropped
    assert stats.http_reqs_total() + stats.dropped_iterations == 20
    assert 3 <= stats.http_reqs_total() <= 5
    assert stats.virtual_users_peak == 2


async def test_open_model_latency_counts_from_the_scheduled_time(target_server: TargetServer) -> None:
    """Block the loop for 200 ms: arrivals due meanwhile go out late, and their latency shows it."""
    spec = spec_of(target_server.url, arrivalRate=100, duration="400ms", maxVirtualUsers=100)
    loop = asyncio.get_running_loop()
    loop.call_later(0.1, time.sleep, 0.2)  # a stall the target never sees
    stats = await run(spec)
    h = stats.http_req_duration
    assert stats.http_reqs_total() == 40 and stats.dropped_iterations == 0
    assert h.max is not None and h.max >= 0.18
    assert (h.quantile(0.25) or 0) < 0.05  # the arrivals before the stall were fast


async def test_open_model_ramps_its_arrival_rate(target_server: TargetServer) -> None:
    spec = spec_of(target_server.url, arrivalRate=0, duration=None, maxVirtualUsers=50,
                   stages=[{"duration": "500ms", "target": 200}])
    stats = await run(spec)
    assert stats.http_reqs_total() == 50  # the integral of a 0 -> 200/s ramp over 0.5 s
