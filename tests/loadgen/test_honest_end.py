"""Honest results at the edges (issue 12, section A), against real servers on 127.0.0.1.

A request or WebSocket handshake the target never answers is a failed result,
not a missing one; failed connects back off instead of spinning; and a
latency is never negative, however early a think-time timer fires.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mothership.api.loadtest import LoadTestSpec
from mothership.api.vocabulary import ErrorClass
from mothership.loadgen import engine
from mothership.loadgen.http import CONNECT_BACKOFF_MAX, HttpClient, PreparedRequest, parse_target
from mothership.loadgen.plan import worker_share
from mothership.loadgen.stats import Stats, by_request

from .conftest import SilentServer, TargetServer, serve


def spec_of(url: str, **fields: Any) -> LoadTestSpec:
    base: dict[str, Any] = {
        "target": {"url": url},
        "scenarios": [{"name": "browse", "requests": [{"path": "/ok"}]}],
        "virtualUsers": 2,
        "duration": "300ms",
        "gracefulStop": "100ms",
    }
    base.update(fields)
    return LoadTestSpec.model_validate(base)


async def run(spec: LoadTestSpec) -> Stats:
    stats = Stats([s.name for s in spec.scenarios])
    url = spec.target.url
    assert url is not None
    await asyncio.wait_for(engine.run(spec, worker_share(spec, 0, 1), stats, base_url=url,
                                     stop=asyncio.Event()), 10)
    return stats


async def test_requests_to_a_target_that_never_answers_are_interrupted(silent_server: SilentServer) -> None:
    stats = await run(spec_of(silent_server.url, virtualUsers=3))
    assert silent_server.connections == 3
    assert stats.http_reqs_total() == stats.errors_total() == 3
    assert stats.snapshot()["errors"] == {"browse": {"interrupted": 3}}


async def test_slow_responses_cut_off_by_the_end_count_like_the_target_counted_them(
    target_server: TargetServer,
) -> None:
    stats = await run(spec_of(target_server.url, virtualUsers=4, duration="1s",
                              scenarios=[{"name": "browse", "requests": [{"path": "/slow?ms=400"}]}]))
    snap = stats.snapshot()
    assert stats.http_reqs_total() == target_server.requests["/slow"] == 12  # 3 waves of 4
    assert snap["errors"] == {"browse": {"interrupted": 4}}
    assert snap["http_reqs"]["browse"] == {"2xx": 8, "none": 4}


async def test_an_interrupted_request_counts_in_its_own_request_row(target_server: TargetServer) -> None:
    """The in-flight request's row gets the ``interrupted`` error, not the scenario's first row."""
    stats = await run(spec_of(target_server.url, virtualUsers=2, duration="500ms", scenarios=[
        {"name": "browse", "requests": [{"name": "fast", "path": "/ok"},
                                        {"name": "stuck", "path": "/slow?ms=5000"}]}]))
    rows = {row.name: row for row in by_request(stats.snapshot(), 0.5)}
    assert rows["stuck"].errors_by_class == {"interrupted": 2}
    assert rows["fast"].errors == 0 and rows["fast"].requests == 2


async def test_a_websocket_handshake_cut_off_by_the_end_is_interrupted(silent_server: SilentServer) -> None:
    stats = await run(spec_of(silent_server.url, scenarios=[{
        "name": "chat", "websocket": {"path": "/ws", "connectTimeout": "5s"}}]))
    snap = stats.snapshot()
    assert snap["counters"]["ws_sessions"] == snap["counters"]["ws_handshake_failures"] == 2
    assert snap["errors"] == {"chat": {"interrupted": 2}}


async def test_a_websocket_handshake_never_answered_times_out(silent_server: SilentServer) -> None:
    stats = await run(spec_of(silent_server.url, duration="500ms", gracefulStop="1s", virtualUsers=1,
                              scenarios=[{"name": "chat",
                                          "websocket": {"path": "/ws", "connectTimeout": "200ms"}}]))
    snap = stats.snapshot()
    # 200 ms each: two timed out before the end, the third was cut off by it (or timed out too)
    errors = snap["errors"]["chat"]
    assert errors.get("timeout", 0) >= 2 and "connect" not in errors
    counters = snap["counters"]
    assert counters["ws_handshake_failures"] == counters["ws_sessions"] == sum(errors.values())
    assert snap["histograms"]["ws_connecting"]["count"] == 0


async def test_the_default_open_pool_rides_out_over_a_second_of_latency_without_dropping(
    target_server: TargetServer,
) -> None:
    # 20 arrivals/s, each 1.5 s long: 30 in flight; a pool of one second's arrivals (20) dropped ~10
    spec = spec_of(target_server.url, virtualUsers=None, arrivalRate=20, duration="2s", gracefulStop="3s",
                   scenarios=[{"name": "browse", "requests": [{"path": "/slow?ms=1500"}]}])
    stats = await run(spec)
    assert stats.dropped_iterations == 0 and stats.virtual_users_peak >= 25
    assert stats.http_reqs_total() == target_server.requests["/slow"] == 40 and stats.errors_total() == 0


async def test_failed_connects_back_off_and_each_attempt_is_an_error(refused_url: str) -> None:
    stats = await run(spec_of(refused_url, virtualUsers=2, duration="1s", gracefulStop="0s"))
    attempts = stats.http_reqs_total()
    # per virtual user, pauses of 5-10, 10-20, 20-40, ... ms up to 250-500 ms fit at most 9 attempts in 1 s
    assert 2 * 3 <= attempts <= 2 * 9
    assert stats.snapshot()["errors"] == {"browse": {ErrorClass.CONNECT.value: attempts}}


async def test_failed_websocket_handshakes_back_off_too(refused_url: str) -> None:
    stats = await run(spec_of(refused_url, virtualUsers=2, duration="1s", gracefulStop="0s",
                              scenarios=[{"name": "chat", "websocket": {"path": "/ws"}}]))
    snap = stats.snapshot()
    sessions = snap["counters"]["ws_sessions"]
    assert 2 * 3 <= sessions <= 2 * 9
    assert snap["counters"]["ws_handshake_failures"] == sessions
    assert snap["errors"] == {"chat": {"connect": sessions}}


async def test_a_successful_connect_resets_the_backoff(target_server: TargetServer) -> None:
    loop = asyncio.get_running_loop()
    stats = Stats(["s"])
    client = HttpClient(parse_target(target_server.url), [_request("/ok")], stats, loop.time, loop)
    client._backoff = CONNECT_BACKOFF_MAX  # as after a run of refused connects
    done = loop.create_future()
    client.iterate(loop.time(), lambda: done.set_result(None))
    await asyncio.wait_for(done, 2)
    assert client._backoff == 0.0


def _request(path: str, think: float = 0.0) -> PreparedRequest:
    data = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    return PreparedRequest(data=data, expect=frozenset({200}), timeout=5.0, think_time=think, head=False,
                           name=path, size=len(data))


class _EarlyTimers:
    """The loop, except that ``call_later`` fires up to ``early`` seconds before it was asked to."""

    def __init__(self, loop: asyncio.AbstractEventLoop, early: float) -> None:
        self._loop = loop
        self._early = early

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)

    def call_later(self, delay: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
        return self._loop.call_later(max(delay - self._early, 0.0), callback, *args)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(think_ms=st.integers(1, 20), early_us=st.integers(0, 3000), requests=st.integers(1, 3))
def test_latency_is_never_negative_even_when_think_time_timers_fire_early(
    think_ms: int, early_us: int, requests: int,
) -> None:
    """The timer's due time is in the future when it fires early: measure from the actual send."""

    async def main() -> Stats:
        loop = asyncio.get_running_loop()
        stats = Stats(["s"])
        async with serve() as server:
            prepared = [_request("/ok", think_ms / 1000) for _ in range(requests)]
            client = HttpClient(parse_target(server.url), prepared, stats, loop.time,
                                _EarlyTimers(loop, early_us / 1e6))  # type: ignore[arg-type]
            rounds = iter(range(3))
            client.repeat = lambda _t: next(rounds, None) is not None
            done = loop.create_future()
            client.iterate(loop.time(), lambda: done.set_result(None))
            await asyncio.wait_for(done, 5)
            client.close()
        return stats

    stats = asyncio.run(main())
    wire = stats.http_req_duration.to_wire()
    assert wire["count"] == 4 * requests and stats.errors_total() == 0
    assert wire["min"] >= 0


async def test_think_time_runs_through_the_engine_never_measure_negative(target_server: TargetServer) -> None:
    stats = await run(spec_of(target_server.url, duration="500ms", virtualUsers=4, scenarios=[
        {"name": "browse", "requests": [{"path": "/ok", "thinkTime": "3ms"}, {"path": "/ok"}]}]))
    wire = stats.http_req_duration.to_wire()
    assert wire["count"] > 100 and wire["min"] >= 0
